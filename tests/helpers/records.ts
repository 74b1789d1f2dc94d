// The records the decoder's live-section handlers report (DecoderOptions.records), by section offset: how tests
// look inside a ram / block / spapr/htab payload.
import { RecordCopier } from "../../src/convert/replay.js";
import type { BlockRecord } from "../../src/sections/block/format.js";
import type { RamRecord } from "../../src/sections/ram/format.js";
import type { HtabItem } from "../../src/sections/spapr-htab/format.js";
import { decodeBytes, type StreamDecoderOptions } from "../../src/sections/stream.js";

/** Every live section's records (copies), keyed by the offset of the section's type byte. */
export function liveRecords(bytes: Uint8Array, options: StreamDecoderOptions = {}): Map<number, unknown[]> {
  const bySection = new Map<number, unknown[]>();
  let current: unknown[] = [];
  const copier = new RecordCopier();
  const r = decodeBytes(bytes, {
    ...options,
    records: true,
    onEvent: (e) => {
      if (e.type === "begin") bySection.set(e.header.offset, (current = []));
      else if (e.type === "record") current.push(copier.copy(e.record));
    },
  });
  r.dispose();
  return bySection;
}

/** The records of the live section at `offset` (a SectionRecord's `offset`). */
export function recordsAt<R = RamRecord | BlockRecord | HtabItem>(all: Map<number, unknown[]>, offset: number): R[] {
  const recs = all.get(offset);
  if (!recs) throw new Error(`no live section at offset ${offset}`);
  return recs as R[];
}
