// Live migration: the RAM source engine on a virtual clock and the guest workload simulator. Browser-safe.
export * from "./source.js";
export * from "./simulate.js";
