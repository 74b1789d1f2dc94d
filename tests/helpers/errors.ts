// TEST-ONLY: the error a call throws or a promise rejects with, for tests that go on to check its code, offset,
// section or message. Throwing something else, or nothing, fails the test.
import { expect } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";

type ErrorClass<E extends Error> = abstract new (...args: never[]) => E;

/** The VmstreamError (or the `type` given) that `f` throws. */
export function thrownBy(f: () => unknown): VmstreamError;
export function thrownBy<E extends Error>(f: () => unknown, type: ErrorClass<E>): E;
export function thrownBy(f: () => unknown, type: ErrorClass<Error> = VmstreamError): Error {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(type);
    return e as Error;
  }
  throw new Error(`expected a ${type.name}; nothing was thrown`);
}

/** The VmstreamError (or the `type` given) that `p` (or the promise `p()` returns) rejects with. */
export async function thrownByAsync(p: Promise<unknown> | (() => Promise<unknown>)): Promise<VmstreamError>;
export async function thrownByAsync<E extends Error>(p: Promise<unknown> | (() => Promise<unknown>), type: ErrorClass<E>): Promise<E>;
export async function thrownByAsync(p: Promise<unknown> | (() => Promise<unknown>), type: ErrorClass<Error> = VmstreamError): Promise<Error> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(type);
    return e as Error;
  }
  throw new Error(`expected a rejection with a ${type.name}; the promise resolved`);
}
