// vmstream/sections/encode: writers of iterative section payloads (ram, block, spapr/htab) and the
// QEMU -> QEMU re-encoder (in memory, and streaming: StreamConverter), and the QEMU <-> BER stream converter. Browser-safe.
export * from "./ram.js";
export * from "./block.js";
export * from "./convert.js";
export * from "./stream-convert.js";
export * from "./ber-stream.js";
