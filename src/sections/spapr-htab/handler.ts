// The loader of "spapr/htab" sections (wire-format §8): the header, then chunks of HPTEs, bounds checked in
// 64 bits; the table kept with `materialize.htab` (docs/decoder.md, "Live section handlers"). Browser-safe.
import { VmstreamError } from "../../io/errors.js";
import { inputError, materializes } from "../../savevm/live-sections.js";
import type { FeedResult, HandlerContext, SectionHandler, SectionHeader, SectionInput } from "../../savevm/types.js";
import { HPTE_BYTES as HPTE, HTAB_SHIFT_MAX, HTAB_SHIFT_MIN, type HtabItem, NO_HPT } from "./format.js";

export interface HtabResult {
  /** The HPT size as log2 bytes, or undefined (never set / freed with 0xFFFFFFFF). */
  readonly shift: number | undefined;
  /** Section headers in order (shifts, 0 for chunk sections, 0xFFFFFFFF). The first 1024. */
  readonly headers: readonly number[];
  readonly chunks: number;
  /** HPTEs written. */
  readonly valid: number;
  /** HPTEs cleared. */
  readonly invalidated: number;
  readonly sections: number;
  /** The HPT (materialised only). */
  readonly hpt?: Uint8Array;
}

export class HtabHandler implements SectionHandler<HtabResult> {
  readonly idstr = "spapr/htab";
  readonly maxVersion = 1;
  readonly emitsRecords = true;
  private readonly emit: ((item: HtabItem) => void) | undefined;
  private readonly materialize: boolean;
  private shift: number | undefined;
  private hpt: Uint8Array | undefined;
  private inChunks = false;
  private readonly headers: number[] = [];
  private chunks = 0;
  private valid = 0;
  private invalidated = 0;
  private sections = 0;

  constructor(private readonly ctx: HandlerContext) {
    this.emit = ctx.record;
    this.materialize = materializes(ctx.options, "htab");
  }

  begin(h: SectionHeader): void {
    if (h.version !== 1)
      throw new VmstreamError("BAD_VERSION", "unsupported spapr/htab section version", { offset: h.offset, detail: `${h.version}, expected 1` });
    this.sections++;
    this.inChunks = false;
  }

  feed(input: SectionInput, h: SectionHeader): FeedResult {
    const u8 = input.kernels.u8;
    const dv = input.kernels.view;
    const end = input.ptr + input.len;
    let p = input.ptr;
    const err = inputError(input, h);
    if (!this.inChunks) {
      if (end - p < 4) return { consumed: 0, done: false };
      const v = dv.getUint32(p);
      if (this.headers.length < 1024) this.headers.push(v);
      if (v === NO_HPT) {
        this.emit?.({ kind: "header", value: v });
        this.shift = undefined;
        this.hpt = undefined;
        return { consumed: 4, done: true };
      }
      if (v !== 0) {
        if (v < HTAB_SHIFT_MIN || v > HTAB_SHIFT_MAX)
          throw err("RANGE", "hash page table size out of range", p, `shift ${v}, expected ${HTAB_SHIFT_MIN}..${HTAB_SHIFT_MAX}`);
        if (this.materialize) {
          if (2 ** v > this.ctx.limits.htabBytes)
            throw err("LIMIT", "hash page table too large to materialise", p, `2^${v} bytes (limits.htabBytes ${this.ctx.limits.htabBytes})`);
          this.hpt = new Uint8Array(2 ** v);
        }
        this.shift = v;
        this.emit?.({ kind: "header", value: v });
        return { consumed: 4, done: true };
      }
      this.emit?.({ kind: "header", value: v });
      this.inChunks = true;
      p += 4;
    }
    for (;;) {
      if (end - p < 8) return { consumed: p - input.ptr, done: false };
      const index = dv.getUint32(p);
      const nValid = dv.getUint16(p + 4);
      const nInvalid = dv.getUint16(p + 6);
      if (index === 0 && nValid === 0 && nInvalid === 0) {
        this.inChunks = false;
        this.emit?.({ kind: "end" });
        return { consumed: p + 8 - input.ptr, done: true };
      }
      if (this.shift === undefined) throw err("BAD_VALUE", "hash page table chunk, but there is no hash page table", p);
      const entries = 2 ** this.shift / HPTE;
      if (index + nValid + nInvalid > entries) {
        throw err("RANGE", "hash page table chunk out of bounds", p, `entries ${index}..${index + nValid + nInvalid}, the table has ${entries}`);
      }
      const need = 8 + HPTE * nValid;
      if (end - p < need) return { consumed: p - input.ptr, done: false };
      if (this.hpt) {
        this.hpt.set(u8.subarray(p + 8, p + need), index * HPTE);
        this.hpt.fill(0, (index + nValid) * HPTE, (index + nValid + nInvalid) * HPTE);
      }
      this.emit?.({ kind: "chunk", index, nValid, nInvalid, hptes: u8.subarray(p + 8, p + need) });
      this.chunks++;
      this.valid += nValid;
      this.invalidated += nInvalid;
      p += need;
    }
  }

  result(): HtabResult {
    return {
      shift: this.shift,
      headers: [...this.headers],
      chunks: this.chunks,
      valid: this.valid,
      invalidated: this.invalidated,
      sections: this.sections,
      ...(this.hpt ? { hpt: this.hpt } : {}),
    };
  }
}
