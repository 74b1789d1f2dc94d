// STUB — replaced by the real kernels.
export function xbzrleEncode(u8: Uint8Array, oldPtr: number, newPtr: number, outPtr: number, limit: number, pageSize: number): number { return -1; }
export function xbzrleDecode(u8: Uint8Array, srcPtr: number, len: number, pagePtr: number, pageSize: number): number { return -1; }
