// vmstream/visitor: the Visitor interface and every visitor (QEMU wire, pretty, JSON, trace).
export * from "./visitor.js";
export * from "./base.js";
export * from "./wire.js";
export * from "./pretty.js";
export * from "./json.js";
export * from "./trace.js";
export * from "./ber/index.js";
export * from "./analyze.js";
