// The writer of "spapr/htab" section payloads (wire-format §8): the header, chunks of HPTEs, the end marker,
// a whole table, and any item exactly as given (replay). Browser-safe.
import { VmstreamError } from "../../io/errors.js";
import type { ByteWriter } from "../../io/writer.js";
import type { HtabChunk, HtabItem } from "./format.js";

export class HtabWriter {
  constructor(readonly w: ByteWriter) {}

  /** The be32 payload header: htab_shift (START), 0 (chunks follow), 0xFFFFFFFF (no HPT). */
  header(value: number): void {
    this.w.be32(value >>> 0);
  }

  chunk(c: HtabChunk): void {
    if (c.hptes.length !== 16 * c.nValid) throw new VmstreamError("RANGE", "HPTE bytes differ from 16 * n_valid");
    if (c.index === 0 && c.nValid === 0 && c.nInvalid === 0) throw new VmstreamError("RANGE", "an empty chunk at index 0 is the end marker");
    this.w.be32(c.index >>> 0);
    this.w.be16(c.nValid);
    this.w.be16(c.nInvalid);
    this.w.borrow(c.hptes);
  }

  endMarker(): void {
    this.w.be32(0);
    this.w.be32(0);
  }

  /** Write an item exactly as given (replay). */
  record(x: HtabItem): void {
    if (x.kind === "header") this.header(x.value);
    else if (x.kind === "end") this.endMarker();
    else this.chunk(x);
  }

  /** A whole HPT (2^shift bytes): runs of valid entries (first word's bit 0 = V), at most 65535 per chunk, then the end marker. */
  table(hpt: Uint8Array): void {
    const n = hpt.length / 16;
    const valid = (i: number) => (hpt[i * 16 + 7]! & 1) !== 0;
    let i = 0;
    while (i < n) {
      if (!valid(i)) {
        i++;
        continue;
      }
      let j = i;
      while (j < n && j - i < 65535 && valid(j)) j++;
      this.chunk({ index: i, nValid: j - i, nInvalid: 0, hptes: hpt.subarray(i * 16, j * 16) });
      i = j;
    }
    this.endMarker();
  }
}
