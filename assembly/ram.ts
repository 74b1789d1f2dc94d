// STUB — replaced by the real kernels.
export function ramEncode(blockPtr: usize, pageSize: u32, firstPage: u32, endPage: u32, sendMapPtr: usize, slotMapPtr: usize,
  cachePtr: usize, namePtr: usize, nameLen: u32, outPtr: usize, outCap: u32, options: u32, statePtr: usize): u32 { return 0; }
export function ramDecode(inPtr: usize, inLen: u32, tablePtr: usize, blockCount: u32, pageSize: u32, statePtr: usize): i32 { return 0; }
