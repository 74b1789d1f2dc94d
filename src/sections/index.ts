// vmstream/sections: the section handlers (ram, block, spapr/htab, dirty-bitmap), device registries, the
// legacy/opaque vmdesc fallback, and the fully wired StreamDecoder. Browser-safe.
export * from "./ram/index.js";
export * from "./block/index.js";
export * from "./spapr-htab/index.js";
export * from "./dirty-bitmap/index.js";
export * from "./device.js";
export * from "./legacy.js";
export * from "./stream.js";
export * from "./encode/index.js";
