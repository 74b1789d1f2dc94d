// vmstream/convert: QEMU -> QEMU through the model, QEMU <-> BER, and new streams from a decoded model.
// Browser-safe.
export * from "./qemu.js";
export * from "./to-ber.js";
export * from "./from-ber.js";
export * from "./model.js";
export { isBerStream } from "./ber-items.js";
export { deviceSpec, type VmdescChoice } from "./devices.js";
