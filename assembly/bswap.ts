// STUB — replaced by the real kernels.
export function bswap16(ptr: usize, count: u32): void {}
export function bswap32(ptr: usize, count: u32): void {}
export function bswap64(ptr: usize, count: u32): void {}
