// The stream level of the BER form (docs/vmstate.asn1: Stream, Header, Item): identifiers of the items a BER
// stream holds. Section bodies are their kinds' (src/sections/*/ber.ts) or device states. Browser-safe.
import { applicationTag, type Tag } from "../ber/writer.js";
import type { SectionType } from "../savevm/types.js";

const app = (n: number, constructed: boolean): number => applicationTag(n, constructed) as number;

/** [APPLICATION 16] Stream, constructed: the first octet of every BER stream (QEMU streams start with 0x51 'Q'). */
export const TAG_STREAM = app(16, true);
export const TAG_HEADER = app(17, true);
export const TAG_CONFIGURATION = app(7, true);
export const TAG_COMMAND = app(8, true);
export const TAG_EOF = app(0, false);
export const TAG_VMDESC = app(6, false);
/** A section payload as sent (a kind without a schema form, or records the schema cannot write back). */
export const TAG_OPAQUE = app(19, false);
export const TAG_FOOTER: Tag = applicationTag(126, false);

export const SECTION_TAGS: Readonly<Record<SectionType, number>> = { start: app(1, true), part: app(2, true), end: app(3, true), full: app(4, true) };

/** The section type of an item identifier, if it is a section. */
export function sectionTypeOf(id: number): SectionType | undefined {
  for (const [t, tag] of Object.entries(SECTION_TAGS)) if (tag === id) return t as SectionType;
  return undefined;
}

/** Whether `bytes` start like a BER stream ([APPLICATION 16], constructed). */
export function isBerStream(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === TAG_STREAM;
}
