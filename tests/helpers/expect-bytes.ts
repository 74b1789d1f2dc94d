// TEST-ONLY: assertions shared by the converter tests.
import { expect } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";

/** Byte equality without a deep-equality diff of megabytes on failure. */
export function expectSame(a: Uint8Array, b: Uint8Array): void {
  expect(a.length).toBe(b.length);
  expect(Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length))).toBe(0);
}

/** The VmstreamError `f` throws (anything else, or nothing, fails the test). */
export function errorOf(f: () => unknown): VmstreamError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(VmstreamError);
    return e as VmstreamError;
  }
  throw new Error("no error");
}
