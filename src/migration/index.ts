// Live migration: the RAM source engine on a virtual clock and the guest workload simulator. Browser-safe.
export * from "./source.js";
export * from "./section.js";
export * from "./ram-source.js";
export * from "./block-source.js";
export * from "./htab-source.js";
export * from "./simulate.js";
export * from "./live.js";
