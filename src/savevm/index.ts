// vmstream/savevm: stream framing (header, configuration, sections, footers, commands, EOF, vmdesc) and the
// SectionHandler contract. Browser-safe.
export * from "./constants.js";
export * from "./types.js";
export * from "./vmdesc.js";
export * from "./configuration.js";
export * from "./commands.js";
export * from "./decoder.js";
export * from "./verdict.js";
export * from "./encoder.js";
