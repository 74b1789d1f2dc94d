// Pure-TypeScript twins of assembly/copy.ts: copyWithin (memmove), pages from a list of (dst, src) u32 pairs.

export function copyBytes(u8: Uint8Array, dst: number, src: number, length: number): void {
  u8.copyWithin(dst, src, src + length);
}

export function copyPages(u8: Uint8Array, list: number, count: number, pageSize: number): void {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  for (let i = 0; i < count; i++) {
    const src = dv.getUint32(list + i * 8 + 4, true);
    u8.copyWithin(dv.getUint32(list + i * 8, true), src, src + pageSize);
  }
}
