// vmstream/sections: the section handlers (ram, block, spapr/htab, dirty-bitmap), device registries, the
// legacy/opaque vmdesc fallback, and the fully wired StreamDecoder. Browser-safe.
export * from "./ram/handler.js";
export * from "./block/handler.js";
export * from "./spapr-htab/handler.js";
export * from "./dirty-bitmap/handler.js";
export * from "./device/registry.js";
export * from "./device/fallback.js";
export * from "./stream.js";
export * from "../convert/index.js";
