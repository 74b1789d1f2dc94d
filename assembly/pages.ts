// STUB — replaced by the real kernels.
export function zeroPages(ptr: usize, pageCount: u32, bitmapPtr: usize, pageSize: u32): u32 { return 0; }
export function changedPages(ptr: usize, shadowPtr: usize, pageCount: u32, bitmapPtr: usize, refresh: u32, pageSize: u32): u32 { return 0; }
// @ts-ignore: decorator
@inline export function isZeroPage(ptr: usize, pageSize: u32): bool { return false; }
