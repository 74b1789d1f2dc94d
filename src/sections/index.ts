// vmstream/sections: the section kinds (ram, block, spapr/htab, dirty-bitmap: handlers, writers, live
// sources), device registries, the legacy/opaque vmdesc fallback, and the fully wired StreamDecoder. Browser-safe.
export * from "./ram/format.js";
export * from "./ram/handler.js";
export * from "./ram/writer.js";
export * from "./block/format.js";
export * from "./block/handler.js";
export * from "./block/writer.js";
export * from "./spapr-htab/format.js";
export * from "./spapr-htab/handler.js";
export * from "./spapr-htab/writer.js";
export * from "./dirty-bitmap/format.js";
export * from "./dirty-bitmap/handler.js";
export * from "./dirty-bitmap/writer.js";
export * from "./device/registry.js";
export * from "./device/fallback.js";
export * from "./kinds.js";
export * from "./stream.js";
