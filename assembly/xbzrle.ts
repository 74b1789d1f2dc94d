// STUB — replaced by the real kernels.
export function xbzrleEncode(oldPtr: usize, newPtr: usize, outPtr: usize, limit: i32, pageSize: u32): i32 { return -1; }
export function xbzrleDecode(srcPtr: usize, len: u32, pagePtr: usize, pageSize: u32): i32 { return -1; }
