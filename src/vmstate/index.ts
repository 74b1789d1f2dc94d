// vmstream/vmstate: the VMState description language, the engine, the vmdesc JSON writer, and the
// symmetry / coverage / inspection utilities.
export * from "./types.js";
export * from "./fields.js";
export * from "./engine.js";
export * from "./json-writer.js";
export * from "./symmetry.js";
export * from "./legacy.js";
export * from "./vmdesc.js";
export * from "./from-vmdesc.js";
