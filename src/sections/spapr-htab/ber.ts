// The BER form of a "spapr/htab" section body (docs/vmstate.asn1: HtabSection): the header, then (when it is
// 0) the chunks with their HPTEs. Browser-safe.
import { applicationTag, T_OCTET_STRING, T_SEQUENCE } from "../../ber/writer.js";
import type { BerForm } from "../kinds.js";
import type { HtabItem } from "./format.js";

const app = applicationTag;
const TAG_HTAB = app(22, true);
const TAG_HTAB_CHUNK = app(48, true);

export const htabBer: BerForm<HtabItem> = {
  tag: TAG_HTAB,

  fits(items, payloadSize) {
    let n = 0;
    for (const x of items) n += x.kind === "header" ? 4 : x.kind === "end" ? 8 : 8 + x.hptes.length;
    const head = items[0];
    if (head?.kind !== "header") return false;
    if (head.value === 0 && items.at(-1)?.kind !== "end") return false;
    return n === payloadSize;
  },

  write(out, items) {
    const w = out.w;
    w.fork(TAG_HTAB, true);
    const head = items[0] as { kind: "header"; value: number };
    w.int(head.value >>> 0);
    if (head.value === 0) {
      w.fork(T_SEQUENCE, true);
      for (const x of items) {
        if (x.kind !== "chunk") continue;
        w.fork(TAG_HTAB_CHUNK, true);
        w.int(x.index >>> 0);
        out.octets(x.hptes);
        w.int(x.nInvalid);
        w.join();
      }
      w.join();
    }
    w.join();
  },

  read(i, end, emit) {
    const r = i.r;
    emit({ kind: "header", value: i.u32("htab header") });
    if (!r.atEnd(end)) {
      i.expect(T_SEQUENCE, "the HTAB chunk list");
      const le = r.enter();
      while (!r.atEnd(le)) {
        i.expect(TAG_HTAB_CHUNK, "HtabChunk ([APPLICATION 48])");
        const e = r.enter();
        const index = i.u32("index");
        const hptes = i.octets(T_OCTET_STRING, "HPTEs");
        const nInvalid = i.u32("nInvalid");
        r.leave(e);
        if (hptes.length % 16 !== 0) r.raise("HPTE bytes not a multiple of 16", String(hptes.length));
        emit({ kind: "chunk", index, nValid: hptes.length / 16, nInvalid, hptes });
      }
      r.leave(le);
      emit({ kind: "end" });
    }
    r.leave(end);
  },
};
