// The pure-TypeScript twin of every kernel: same arguments, same memory, same bytes out.
import type { LinearMemory } from "../arena.js";
import type { RawKernelExports } from "../wasm.js";
import { bswap16, bswap32, bswap64 } from "./bswap.js";
import { copyBytes, copyPages } from "./copy.js";
import { changedPages, zeroPages } from "./pages.js";
import { ramDecode, ramEncode } from "./ram.js";
import { xbzrleDecode, xbzrleEncode } from "./xbzrle.js";

export function jsKernelFunctions(m: LinearMemory): RawKernelExports {
  return {
    zeroPages: (ptr, n, bm, pageSize) => zeroPages(m.u8, ptr, n, bm, pageSize),
    changedPages: (ptr, shadow, n, bm, refresh, pageSize) => changedPages(m.u8, ptr, shadow, n, bm, refresh !== 0, pageSize),
    xbzrleEncode: (o, n, out, limit, pageSize) => xbzrleEncode(m.u8, o, n, out, limit, pageSize),
    xbzrleDecode: (src, len, page, pageSize) => xbzrleDecode(m.u8, src, len, page, pageSize),
    ramEncode: (...a) => ramEncode(m.u8, ...a),
    ramDecode: (...a) => ramDecode(m.u8, ...a),
    bswap16: (ptr, count) => bswap16(m.u8, ptr, count),
    bswap32: (ptr, count) => bswap32(m.u8, ptr, count),
    bswap64: (ptr, count) => bswap64(m.u8, ptr, count),
    copyBytes: (dst, src, length) => copyBytes(m.u8, dst, src, length),
    copyPages: (list, count, pageSize) => copyPages(m.u8, list, count, pageSize),
  };
}
