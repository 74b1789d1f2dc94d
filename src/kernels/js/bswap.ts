// Pure-TypeScript twins of assembly/bswap.ts: swap `count` u16/u32/u64 values at `ptr` in place, through
// Buffer#swap*, a DataView or a byte loop by length and platform (measurements: docs/kernels.md, "Byte swaps").

type NodeBufferCtor = typeof import("node:buffer").Buffer;

const NodeBuffer: NodeBufferCtor | undefined = (() => {
  const b = (globalThis as { Buffer?: NodeBufferCtor }).Buffer;
  return typeof b === "function" && typeof b.from === "function" && typeof b.prototype.swap64 === "function" ? b : undefined;
})();

/** Below this many bytes the plain byte loop beats making a view. */
const VIEW_MIN_BYTES = 128;

export function bswap16(u8: Uint8Array, ptr: number, count: number): void {
  const bytes = count * 2;
  if (NodeBuffer && bytes >= VIEW_MIN_BYTES) {
    NodeBuffer.from(u8.buffer, u8.byteOffset + ptr, bytes).swap16();
    return;
  }
  for (let p = ptr, end = ptr + bytes; p < end; p += 2) {
    const t = u8[p]!;
    u8[p] = u8[p + 1]!;
    u8[p + 1] = t;
  }
}

export function bswap32(u8: Uint8Array, ptr: number, count: number): void {
  const bytes = count * 4;
  if (bytes >= VIEW_MIN_BYTES) {
    if (NodeBuffer) {
      NodeBuffer.from(u8.buffer, u8.byteOffset + ptr, bytes).swap32();
    } else {
      const dv = new DataView(u8.buffer, u8.byteOffset + ptr, bytes);
      for (let p = 0; p < bytes; p += 4) dv.setUint32(p, dv.getUint32(p, true), false);
    }
    return;
  }
  for (let p = ptr, end = ptr + bytes; p < end; p += 4) {
    let t = u8[p]!;
    u8[p] = u8[p + 3]!;
    u8[p + 3] = t;
    t = u8[p + 1]!;
    u8[p + 1] = u8[p + 2]!;
    u8[p + 2] = t;
  }
}

export function bswap64(u8: Uint8Array, ptr: number, count: number): void {
  const bytes = count * 8;
  if (bytes >= VIEW_MIN_BYTES) {
    if (NodeBuffer) {
      NodeBuffer.from(u8.buffer, u8.byteOffset + ptr, bytes).swap64();
    } else {
      const dv = new DataView(u8.buffer, u8.byteOffset + ptr, bytes);
      for (let p = 0; p < bytes; p += 8) {
        const lo = dv.getUint32(p, true);
        const hi = dv.getUint32(p + 4, true);
        dv.setUint32(p, hi, false);
        dv.setUint32(p + 4, lo, false);
      }
    }
    return;
  }
  for (let p = ptr, end = ptr + bytes; p < end; p += 8) {
    let t = u8[p]!;
    u8[p] = u8[p + 7]!;
    u8[p + 7] = t;
    t = u8[p + 1]!;
    u8[p + 1] = u8[p + 6]!;
    u8[p + 6] = t;
    t = u8[p + 2]!;
    u8[p + 2] = u8[p + 5]!;
    u8[p + 5] = t;
    t = u8[p + 3]!;
    u8[p + 3] = u8[p + 4]!;
    u8[p + 4] = t;
  }
}
