// Entry of the kernel module: number-only exports (pointers, lengths), no allocation.
// One source, built twice: with SIMD (ASC_FEATURE_SIMD) and without.
export { zeroPages, changedPages } from "./pages";
export { xbzrleEncode, xbzrleDecode } from "./xbzrle";
export { ramEncode, ramDecode } from "./ram";
export { bswap16, bswap32, bswap64 } from "./bswap";
export { copyBytes, copyPages } from "./copy";
