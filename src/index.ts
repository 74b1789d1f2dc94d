// vmstream: the browser-safe core.
export * from "./kernels/index.js";
export * from "./io/index.js";
export * from "./visitor/index.js";
export * from "./vmstate/index.js";
export { x86Devices, x86DeviceList, x86DeviceForIdstr } from "./vmstate/devices/index.js";
export * from "./analyze/index.js";
export * from "./savevm/index.js";
export * from "./sections/index.js";
export * from "./migration/index.js";
export * from "./migration/destination.js";
