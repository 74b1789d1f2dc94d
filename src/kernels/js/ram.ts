// STUB — replaced by the real kernels.
export function ramEncode(u8: Uint8Array, blockPtr: number, pageSize: number, firstPage: number, endPage: number, sendMapPtr: number, slotMapPtr: number,
  cachePtr: number, namePtr: number, nameLen: number, outPtr: number, outCap: number, options: number, statePtr: number): number { return 0; }
export function ramDecode(u8: Uint8Array, inPtr: number, inLen: number, tablePtr: number, blockCount: number, pageSize: number, statePtr: number): number { return 0; }
