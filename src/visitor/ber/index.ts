// The BER visitors of device state (docs/ber.md, docs/vmstate.asn1): the public names.

export { type BerInputOptions, BerInputVisitor } from "./input.js";
export { type BerLengths, type BerOutputOptions, BerOutputVisitor } from "./output.js";
export { TAG_SUBSECTION, TAG_VMSTATE } from "./tags.js";
