// TEST-ONLY: assertions shared by the converter tests.
import { expect } from "vitest";

/** Byte equality without a deep-equality diff of megabytes on failure. */
export function expectSame(a: Uint8Array, b: Uint8Array): void {
  expect(a.length).toBe(b.length);
  expect(Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length))).toBe(0);
}
