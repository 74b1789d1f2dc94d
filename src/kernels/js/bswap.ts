// STUB — replaced by the real kernels.
export function bswap16(u8: Uint8Array, ptr: number, count: number): void {}
export function bswap32(u8: Uint8Array, ptr: number, count: number): void {}
export function bswap64(u8: Uint8Array, ptr: number, count: number): void {}
