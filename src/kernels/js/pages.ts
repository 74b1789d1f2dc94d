// STUB — replaced by the real kernels.
export function zeroPages(u8: Uint8Array, ptr: number, n: number, bm: number, pageSize: number): number { return 0; }
export function changedPages(u8: Uint8Array, ptr: number, shadow: number, n: number, bm: number, refresh: boolean, pageSize: number): number { return 0; }
export function isZeroPage(u8: Uint8Array, ptr: number, pageSize: number): boolean { return false; }
