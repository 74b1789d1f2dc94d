// The BER visitors of device state (docs/ber.md, docs/vmstate.asn1): the public names.
export { TAG_SUBSECTION, TAG_VMSTATE } from "./tags.js";
export { BerOutputVisitor, type BerLengths, type BerOutputOptions } from "./output.js";
export { BerInputVisitor, type BerInputOptions } from "./input.js";
