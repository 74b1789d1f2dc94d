// Live migration: the RAM source engine on a virtual clock and the guest workload simulator. Browser-safe.
export * from "./source.js";
export * from "../sections/iterative.js";
export * from "../sections/ram/source.js";
export * from "../sections/block/source.js";
export * from "../sections/spapr-htab/source.js";
export * from "./simulate.js";
export * from "./live.js";
