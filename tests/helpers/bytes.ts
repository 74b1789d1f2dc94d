// TEST-ONLY: bytes written as hex text and read back from it, concatenation, and sha256 digests.
import { createHash } from "node:crypto";

/** Lower-case hex, two digits a byte, nothing between: `0a1bff`. */
export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

/** Upper-case hex, one space between bytes, as BER encodings are written out: `0A 1B FF`. */
export function toSpacedHex(b: Uint8Array): string {
  return toHex(b)
    .toUpperCase()
    .replace(/(..)(?!$)/g, "$1 ");
}

/** The bytes of hex text (white space between digits is ignored): `fromHex("0a1b ff")`. */
export function fromHex(text: string): Uint8Array {
  const digits = text.replace(/\s+/g, "");
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(digits)) throw new Error(`not hex bytes: ${JSON.stringify(text)}`);
  return new Uint8Array(Buffer.from(digits, "hex"));
}

/** The parts (chunks, byte arrays, number lists) one after another in one new array. */
export function concat(parts: readonly ArrayLike<number>[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** sha256 of `b` as lower-case hex. */
export function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}
