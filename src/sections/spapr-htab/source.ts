// The "spapr/htab" iterative section of the source engine (sPAPR hash page table, wire-format §8): a first pass
// of valid entries, then changed entries as [valid run][invalid run] chunks (host log or scan against a shadow
// copy); no table (a radix guest) = 0xFFFFFFFF. docs/live-migration.md, "spapr/htab". Browser-safe.
import { VmstreamError } from "../../io/errors.js";
import type { ByteWriter } from "../../io/writer.js";
import type { Kernels } from "../../kernels/types.js";
import { type DirtySource, type HostBytes, type IterativeSection, type SectionPass, type SectionSync, viewOf } from "../iterative.js";
import { HTAB_SHIFT_MAX, HTAB_SHIFT_MIN } from "./format.js";
import { HtabWriter } from "./writer.js";

const HPTE = 16;
const RUN_MAX = 65535;
const CHUNK_HEADER = 8;
const GROUP = 64; // bytes per changedPages "page" in the scan (4 HPTEs)

/** The guest's hash page table, migrated by the spapr/htab section. */
export interface HtabSource {
  /** 2^shift bytes (shift 18..46) of 16-byte HPTEs in the guest's big-endian format; absent = no HPT (radix guest). */
  readonly hpt?: HostBytes;
  /** Host log: a bitmap (bit i = HPTE i) of the entries changed since the previous call, or undefined for none. */
  readonly dirtyLog?: () => Uint8Array | undefined;
  /** Section id (default: right after ram's, QEMU registers it later than ram). */
  readonly sectionId?: number;
}

export interface HtabSectionOptions extends HtabSource {
  readonly kernels: Kernels;
  readonly sectionId: number;
}

/** HPTE `i` of `t` is valid (V bit). */
function valid(t: Uint8Array, i: number): boolean {
  return (t[i * HPTE + 7]! & 1) !== 0;
}

export class HtabSection implements IterativeSection {
  readonly kind = "htab";
  readonly idstr = "spapr/htab";
  readonly instanceId = 0;
  readonly version = 1;
  readonly sectionId: number;
  readonly unitBytes = HPTE;
  readonly partOverhead = 4 + CHUNK_HEADER;
  readonly maxRecordBytes = CHUNK_HEADER + HPTE;
  /** log2 of the table's bytes (undefined: no HPT). */
  readonly shift: number | undefined;
  readonly entries: number;
  private readonly k: Kernels;
  private readonly hw: HtabWriter;
  private readonly pending: Uint8Array;
  private pendingCount = 0;
  private cursor = 0;
  private wraps = 0;
  private shadowPtr = 0;
  private scratch = 0;
  private shadow: Uint8Array | undefined;
  private cachedPending = -1;

  constructor(
    readonly options: HtabSectionOptions,
    w: ByteWriter,
  ) {
    const k = (this.k = options.kernels);
    this.sectionId = options.sectionId;
    this.hw = new HtabWriter(w);
    const hpt = options.hpt;
    if (!hpt) {
      this.shift = undefined;
      this.entries = 0;
      this.pending = new Uint8Array(0);
      return;
    }
    const shift = Math.log2(hpt.length);
    if (!Number.isInteger(shift) || shift < HTAB_SHIFT_MIN || shift > HTAB_SHIFT_MAX) {
      throw new VmstreamError("RANGE", "the hash page table must be 2^18..2^46 bytes", { detail: `${hpt.length} bytes` });
    }
    this.shift = shift;
    this.entries = hpt.length / HPTE;
    this.pending = new Uint8Array(Math.ceil(this.entries / 8));
    if (!(hpt instanceof Uint8Array) && (hpt.ptr < 0 || hpt.ptr + hpt.length > k.u8.length)) {
      throw new VmstreamError("RANGE", "the hash page table is outside the kernels' memory");
    }
    if (!options.dirtyLog) {
      if (hpt instanceof Uint8Array) this.shadow = hpt.slice();
      else {
        this.shadowPtr = k.alloc(hpt.length, 4096);
        this.scratch = k.alloc(hpt.length / GROUP / 8 + 8, 8);
        k.u8.copyWithin(this.shadowPtr, hpt.ptr, hpt.ptr + hpt.length);
      }
    }
  }

  /** Times the cursor went over the whole table (the first: QEMU's first pass). */
  get passes(): number {
    return this.wraps;
  }

  dirtyUnits(): number {
    return this.pendingCount;
  }

  private table(): Uint8Array {
    return viewOf(this.k, this.options.hpt!);
  }

  private mark(i: number): boolean {
    const b = this.pending[i >> 3]!;
    const m = 1 << (i & 7);
    if (b & m) return false;
    this.pending[i >> 3] = b | m;
    this.pendingCount++;
    return true;
  }

  private clear(i: number): void {
    this.pending[i >> 3]! &= ~(1 << (i & 7));
    this.pendingCount--;
  }

  private isPending(i: number): boolean {
    return (this.pending[i >> 3]! & (1 << (i & 7))) !== 0;
  }

  /** The next pending index at or after `i` (entries when none). */
  private nextPending(i: number): number {
    const n = this.entries;
    while (i < n) {
      if ((i & 7) === 0 && this.pending[i >> 3] === 0) {
        i += 8;
        continue;
      }
      if (this.isPending(i)) return i;
      i++;
    }
    return n;
  }

  /** Bytes of the chunks the pending entries need (runs as the walk would cut them, without the budget). */
  pendingBytes(): number {
    if (this.shift === undefined || this.pendingCount === 0) return 0;
    if (this.cachedPending >= 0) return this.cachedPending;
    const t = this.table();
    let bytes = 0;
    let prev = -2; // last pending index that is part of a chunk
    let prevValid = false;
    let run = 0;
    for (let i = this.nextPending(0); i < this.entries; i = this.nextPending(i + 1)) {
      const v = valid(t, i);
      const first = this.wraps === 0 && i >= this.cursor;
      if (first && !v) continue; // the first pass skips invalid entries
      const joins = i === prev + 1 && run < RUN_MAX && (v ? prevValid : true);
      if (!joins) {
        bytes += CHUNK_HEADER;
        run = 0;
      }
      if (v) bytes += HPTE;
      run++;
      prev = i;
      prevValid = v;
    }
    this.cachedPending = bytes;
    return bytes;
  }

  /** The table size (or 0xFFFFFFFF); everything pending. */
  setup(): void {
    if (this.shift === undefined) {
      this.hw.header(0xffffffff);
      return;
    }
    this.hw.header(this.shift);
    this.pending.fill(0xff);
    if (this.entries & 7) this.pending[this.pending.length - 1] = (1 << (this.entries & 7)) - 1;
    this.pendingCount = this.entries;
    this.cachedPending = -1;
  }

  /** Chunks from the cursor on until `budget` bytes are used or nothing is pending. */
  private walk(budget: number, counts: { valid: number; invalid: number; chunks: number }): void {
    const t = this.table();
    let remaining = budget;
    const n = this.entries;
    // the cursor wraps as soon as it reaches the end: the next visit to an entry follows the later passes' rules
    const advance = (j: number) => {
      this.cursor = j;
      if (j >= n) {
        this.cursor = 0;
        this.wraps++;
      }
    };
    while (this.pendingCount > 0 && remaining > 0) {
      const i = this.nextPending(this.cursor);
      if (i >= n) {
        advance(n);
        continue;
      }
      if (this.wraps === 0 && !valid(t, i)) {
        // first pass: the destination's entry is still zero
        this.clear(i);
        advance(i + 1);
        continue;
      }
      const cap = Math.min(RUN_MAX, Math.max(1, Math.floor((remaining - CHUNK_HEADER) / HPTE)));
      let j = i;
      while (j < n && j - i < cap && this.isPending(j) && valid(t, j)) this.clear(j++);
      let nInvalid = 0;
      if (this.wraps > 0 && j - i < cap) {
        while (j < n && nInvalid < RUN_MAX && this.isPending(j) && !valid(t, j)) {
          this.clear(j++);
          nInvalid++;
        }
      }
      const nValid = j - i - nInvalid;
      this.hw.chunk({ index: i, nValid, nInvalid, hptes: t.subarray(i * HPTE, (i + nValid) * HPTE) });
      if (this.shadow) this.shadow.set(t.subarray(i * HPTE, j * HPTE), i * HPTE);
      else if (this.shadowPtr) this.k.u8.set(t.subarray(i * HPTE, j * HPTE), this.shadowPtr + i * HPTE);
      counts.valid += nValid;
      counts.invalid += nInvalid;
      counts.chunks++;
      remaining -= CHUNK_HEADER + nValid * HPTE;
      advance(j);
    }
    this.cachedPending = -1;
  }

  private body(budget: number): SectionPass {
    const counts = { valid: 0, invalid: 0, chunks: 0 };
    if (this.shift === undefined) {
      this.hw.header(0xffffffff);
    } else {
      this.hw.header(0);
      this.walk(budget, counts);
      this.hw.endMarker();
    }
    return { done: this.pendingCount === 0, counts: { kind: "htab", ...counts } };
  }

  iterate(budget: number): SectionPass {
    return this.body(budget - this.partOverhead);
  }

  sync(): SectionSync {
    if (this.shift === undefined) return { dirtied: 0, source: "none" };
    this.cachedPending = -1;
    const log = this.options.dirtyLog;
    let found = 0;
    if (log) {
      const l = log();
      if (l) {
        const n = Math.min(l.length, this.pending.length);
        for (let i = 0; i < n; i++) {
          let v = l[i]!;
          if (!v) continue;
          if (i === this.entries >> 3 && this.entries & 7) v &= (1 << (this.entries & 7)) - 1;
          for (let b = 0; b < 8; b++) {
            if (v & (1 << b)) {
              this.mark(i * 8 + b);
              found++;
            }
          }
        }
      }
      return { dirtied: found, source: "log" };
    }
    const t = this.table();
    const shadow = this.shadow ?? this.k.u8.subarray(this.shadowPtr, this.shadowPtr + t.length);
    const check = (i: number) => {
      const o = i * HPTE;
      for (let b = 0; b < HPTE; b++) {
        if (t[o + b] !== shadow[o + b]) {
          shadow.set(t.subarray(o, o + HPTE), o);
          this.mark(i);
          found++;
          return;
        }
      }
    };
    if (this.shadowPtr) {
      // the kernel finds the changed 64-byte groups; entries are compared only inside them
      const groups = t.length / GROUP;
      const changed = this.k.changedPages((this.options.hpt as { ptr: number }).ptr, this.shadowPtr, groups, this.scratch, false, GROUP);
      if (changed > 0) {
        const u8 = this.k.u8;
        for (let g = 0; g < groups; g++) {
          if ((g & 7) === 0 && u8[this.scratch + (g >> 3)] === 0) {
            g += 7;
            continue;
          }
          if (u8[this.scratch + (g >> 3)]! & (1 << (g & 7))) for (let e = g * 4; e < g * 4 + 4; e++) check(e);
        }
      }
    } else {
      const aligned = t.byteOffset % 4 === 0 && shadow.byteOffset % 4 === 0;
      if (aligned) {
        const a = new Uint32Array(t.buffer, t.byteOffset, t.length >> 2);
        const s = new Uint32Array(shadow.buffer, shadow.byteOffset, shadow.length >> 2);
        for (let i = 0; i < this.entries; i++) {
          const w = i * 4;
          if (a[w] !== s[w] || a[w + 1] !== s[w + 1] || a[w + 2] !== s[w + 2] || a[w + 3] !== s[w + 3]) {
            s[w] = a[w]!;
            s[w + 1] = a[w + 1]!;
            s[w + 2] = a[w + 2]!;
            s[w + 3] = a[w + 3]!;
            this.mark(i);
            found++;
          }
        }
      } else {
        for (let i = 0; i < this.entries; i++) check(i);
      }
    }
    const source: DirtySource = "scan";
    return { dirtied: found, source };
  }

  complete(): SectionPass {
    return this.body(Infinity);
  }

  dispose(): void {
    if (this.shadowPtr) this.k.free(this.shadowPtr);
    if (this.scratch) this.k.free(this.scratch);
    this.shadowPtr = 0;
    this.scratch = 0;
    this.shadow = undefined;
  }
}
