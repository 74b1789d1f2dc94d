// vmstream/sections/encode: writers of iterative section payloads (ram, block, spapr/htab) and the
// QEMU -> QEMU re-encoder (in memory, and streaming: StreamConverter), and the QEMU <-> BER stream converter. Browser-safe.
export * from "../sections/ram/writer.js";
export * from "../sections/block/writer.js";
export * from "./replay.js";
export * from "./stream.js";
export * from "./ber.js";
