// vmstream: the browser-safe core.
export * from "./kernels/index.js";
