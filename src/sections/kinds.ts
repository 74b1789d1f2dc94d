// The built-in live section kinds, described once: each kind's idstr, its decode handler, the writer that
// writes its records again, and its BER form. The decoder, the converters and BER -> QEMU all read this table.
// Browser-safe.

import type { ChunkedBerWriter } from "../ber/chunked.js";
import type { BerExpect } from "../ber/expect.js";
import type { Tag } from "../ber/writer.js";
import type { ByteWriter } from "../io/writer.js";
import type { HandlerFactory } from "../savevm/types.js";
import { blockBer } from "./block/ber.js";
import { BlockHandler } from "./block/handler.js";
import { BlockWriter } from "./block/writer.js";
import { DirtyBitmapHandler } from "./dirty-bitmap/handler.js";
import { DirtyBitmapWriter } from "./dirty-bitmap/writer.js";
import { ramBer } from "./ram/ber.js";
import { RamHandler } from "./ram/handler.js";
import { RamWriter } from "./ram/writer.js";
import { htabBer } from "./spapr-htab/ber.js";
import { HtabHandler } from "./spapr-htab/handler.js";
import { HtabWriter } from "./spapr-htab/writer.js";

/** The schema's form of a kind's section body (docs/vmstate.asn1). */
export interface BerForm<R> {
  /** Identifier of the body. */
  readonly tag: Tag;
  /** The records cover `payloadSize` bytes exactly, each in a form the schema writes back as sent (else: OpaqueState). */
  fits(records: readonly R[], payloadSize: number): boolean;
  write(out: ChunkedBerWriter, records: readonly R[]): void;
  /** Read a body's contents (entered; they end at `end`), reporting each record. */
  read(input: BerExpect, end: number, emit: (record: R) => void, pageSize: number): void;
}

export interface SectionKind<R = unknown> {
  readonly idstr: string;
  readonly handler: HandlerFactory;
  /** A writer of this kind's records on `w`, exactly as they travelled. */
  writer(w: ByteWriter, pageSize: number): { record(r: R): void; dispose?(): void };
  readonly ber?: BerForm<R>;
}

function kind<R>(k: SectionKind<R>): SectionKind {
  return k as SectionKind;
}

export const sectionKinds: readonly SectionKind[] = [
  kind({ idstr: "ram", handler: (ctx) => new RamHandler(ctx), writer: (w, pageSize) => new RamWriter(w, pageSize), ber: ramBer }),
  kind({ idstr: "block", handler: (ctx) => new BlockHandler(ctx), writer: (w) => new BlockWriter(w), ber: blockBer }),
  kind({ idstr: "spapr/htab", handler: (ctx) => new HtabHandler(ctx), writer: (w) => new HtabWriter(w), ber: htabBer }),
  kind({ idstr: "dirty-bitmap", handler: (ctx) => new DirtyBitmapHandler(ctx), writer: (w) => new DirtyBitmapWriter(w) }),
];

/** The kind of a live section idstr. */
export function sectionKind(idstr: string): SectionKind | undefined {
  return sectionKinds.find((k) => k.idstr === idstr);
}

/** The built-in live section handlers by idstr. */
export const builtinHandlers: Readonly<Record<string, HandlerFactory>> = Object.freeze(Object.fromEntries(sectionKinds.map((k) => [k.idstr, k.handler])));
