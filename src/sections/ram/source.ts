// The "ram" iterative section of the source engine (wire-format §5): START = MEM_SIZE, PARTs of dirty pages from
// a cursor (the first pass: every page), dirty pages from a host log or a scan against a shadow copy, XBZRLE
// after the first pass with a cache or the shadow as cache; in multifd mode (§5.6) zero pages as ZERO records
// and the others on the channels, a sync point before every EOS. docs/live-migration.md, "ram". Browser-safe.
import { VmstreamError } from "../../io/errors.js";
import type { ByteWriter } from "../../io/writer.js";
import type { Kernels } from "../../kernels/types.js";
import { type DirtySource, type IterativeSection, type PageCounts, popcount8, type SectionPass, type SectionSync } from "../iterative.js";
import type { RamBlockData } from "./format.js";
import { type ChannelOutput, MultifdPageSender, type MultifdSourceOptions } from "./multifd-source.js";
import { type PageCache, type RamPassStats, RamWriter, XbzrleCache } from "./writer.js";

export interface RamSectionOptions {
  readonly kernels: Kernels;
  /** Blocks in the kernels' memory, in RAM-list order. */
  readonly blocks: readonly RamBlockData[];
  readonly pageSize: number;
  readonly sectionId: number;
  readonly xbzrleCacheBytes?: number;
  /**
   * Scan mode (no dirtyLog): XBZRLE against the shadow copy, which then always holds what the destination has
   * (the scan leaves it alone; pages are copied in as they are sent). Not with xbzrleCacheBytes.
   */
  readonly xbzrleShadow?: boolean;
  /** Host dirty log (bit i = page i of the block) of the pages written since the previous call; undefined = none. */
  readonly dirtyLog?: (block: RamBlockData) => Uint8Array | undefined;
  /** Pending-bytes estimate: dirty pages × page size (default) or × the record bytes per page measured so far. */
  readonly estimate?: "page" | "measured";
  /**
   * multifd mode: zero pages as ZERO records, every other page on a channel (`channelSink`); not with XBZRLE,
   * which QEMU 7.2 never reaches for a multifd page.
   */
  readonly multifd?: MultifdSourceOptions;
  readonly channelSink?: ChannelOutput;
}

interface BlockState {
  readonly block: RamBlockData;
  readonly pages: number;
  /** Dirty bitmap in the kernels' memory. */
  readonly bitmap: number;
  readonly bitmapBytes: number;
  /** Shadow copy (scan mode): for every clean page, what the destination holds. */
  readonly shadow: number;
  /** Scratch bitmap for the scan. */
  readonly scratch: number;
  readonly recordMax: number;
  /** The block name's bytes (one object: multifd packets and CONTINUE compare it by identity first). */
  readonly name: Uint8Array;
}

const EOS_BYTES = 8;
/** Pages the zero test of multifd mode classifies per kernel call (its bitmap's bits). */
const ZERO_RUN = 8192;

export class RamSection implements IterativeSection {
  readonly kind = "ram";
  readonly idstr = "ram";
  readonly instanceId = 0;
  readonly version = 4;
  readonly sectionId: number;
  readonly unitBytes: number;
  readonly partOverhead: number;
  readonly maxRecordBytes: number;
  private readonly k: Kernels;
  private readonly ram: RamWriter;
  private readonly cache: XbzrleCache | ShadowSlots | undefined;
  private readonly st: BlockState[] = [];
  private cursorBlock = 0;
  private cursorPage = 0;
  private passCount = 0;
  private sentSinceWrap = false;
  private sentPages = 0;
  private sentRecordBytes = 0;
  /** multifd mode: the channels, and the zero test's bitmap in the kernels' memory. */
  private readonly mfd: MultifdPageSender | undefined;
  private zeroMap = 0;
  /** Set bits of the dirty bitmaps, kept as bits are set and cleared (a popcount per PART cost a few % of a pass). */
  private dirtyCount = 0;

  constructor(
    readonly options: RamSectionOptions,
    w: ByteWriter,
  ) {
    const o = options;
    this.k = o.kernels;
    this.sectionId = o.sectionId;
    const ps = (this.unitBytes = o.pageSize);
    if (o.blocks.length === 0) throw new VmstreamError("RANGE", "no RAM blocks");
    if (o.multifd) {
      if (o.xbzrleShadow || o.xbzrleCacheBytes)
        throw new VmstreamError("RANGE", "XBZRLE is not used with multifd", {
          detail: "QEMU 7.2 sends every non-zero page over the channels before its XBZRLE path",
        });
      if (!o.channelSink) throw new VmstreamError("RANGE", "multifd needs a channel sink");
      this.mfd = new MultifdPageSender(this.k, ps, o.multifd, o.channelSink);
    }
    this.ram = new RamWriter(w, ps, {}, this.k);
    let recordMax = 0;
    for (const block of o.blocks) {
      if (block.length % ps !== 0 || block.length <= 0)
        throw new VmstreamError("RANGE", "a RAM block's length must be a positive multiple of the page size", { detail: block.name });
      const pages = block.length / ps;
      const bitmapBytes = Math.ceil(pages / 8);
      const bitmap = this.k.alloc(bitmapBytes + 8, 8);
      this.k.u8.fill(0, bitmap, bitmap + bitmapBytes + 8);
      const name = new TextEncoder().encode(block.name);
      const r = 8 + 1 + name.length + ps;
      recordMax = Math.max(recordMax, r);
      this.st.push({ block, pages, bitmap, bitmapBytes, shadow: 0, scratch: 0, recordMax: r, name });
    }
    this.maxRecordBytes = recordMax;
    this.partOverhead = EOS_BYTES;
    if (!o.dirtyLog) {
      for (let i = 0; i < this.st.length; i++) {
        const s = this.st[i]!;
        const shadow = this.k.alloc(s.block.length, 4096);
        const scratch = this.k.alloc(s.bitmapBytes + 8, 8);
        this.k.u8.copyWithin(shadow, s.block.ptr, s.block.ptr + s.block.length);
        this.st[i] = { ...s, shadow, scratch };
      }
    }
    if (o.xbzrleShadow && (o.dirtyLog || o.xbzrleCacheBytes)) {
      throw new VmstreamError("RANGE", "xbzrleShadow needs scan mode (no dirtyLog) and no xbzrleCacheBytes");
    }
    if (this.mfd) {
      this.zeroMap = this.k.alloc(ZERO_RUN / 8, 8);
      // a page on a channel costs its bytes and, opening a packet, a header; a PART's sync point a header per channel
      this.maxRecordBytes = Math.max(recordMax, ps + this.mfd.headerSize);
      this.partOverhead = EOS_BYTES + this.mfd.channels * this.mfd.headerSize;
    }
    this.cache = o.xbzrleShadow
      ? new ShadowSlots(this.k, Math.max(...this.st.map((s) => s.pages)))
      : o.xbzrleCacheBytes
        ? new XbzrleCache(this.k, o.xbzrleCacheBytes, ps)
        : undefined;
  }

  /** The cache `sendBlock` uses for block `s`. */
  private cacheFor(s: BlockState): PageCache | undefined {
    return this.cache instanceof ShadowSlots ? this.cache.over(s.shadow) : this.cache;
  }

  get passes(): number {
    return this.passCount;
  }

  dirtyUnits(): number {
    return this.dirtyCount;
  }

  /** Dirty pages × page size, or × the record bytes per page sent so far ("measured"). */
  pendingBytes(dirty = this.dirtyUnits()): number {
    const perPage = this.options.estimate === "measured" && this.sentPages > 0 ? this.sentRecordBytes / this.sentPages : this.unitBytes;
    return dirty * perPage;
  }

  /** multifd mode: the channels' bytes so far as QEMU counts them (pages uncompressed); 0 otherwise. */
  get channelBytes(): number {
    return this.mfd?.counted ?? 0;
  }

  /** multifd mode: the channels' bytes handed to the channel sink so far. */
  get channelWireBytes(): number {
    return this.mfd?.wire ?? 0;
  }

  /** MEM_SIZE, EOS (in multifd mode: the channels' init messages first, a sync point before the EOS); every page dirty. */
  setup(): void {
    this.mfd?.init();
    this.ram.memSize(this.st.map((s) => ({ name: s.block.name, length: BigInt(s.block.length) })));
    this.mfd?.sync();
    this.ram.eos();
    const u8 = this.k.u8;
    for (const s of this.st) {
      u8.fill(0xff, s.bitmap, s.bitmap + s.bitmapBytes);
      const rest = s.pages & 7;
      if (rest) u8[s.bitmap + s.bitmapBytes - 1] = (1 << rest) - 1;
      this.dirtyCount += s.pages;
    }
  }

  /**
   * Send dirty pages from the cursor on, in block then page order, until `budget` record bytes are used (at most
   * one page record more) or no dirty page is left.
   */
  private sendDirty(budget: number): PageCounts & { bytes: number } {
    const total: PageCounts & { bytes: number } = { zero: 0, normal: 0, xbzrle: 0, unchanged: 0, bytes: 0 };
    let remaining = budget;
    let idle = 0; // blocks visited in a row with nothing to send
    while (remaining > 0 && idle <= this.st.length) {
      const s = this.st[this.cursorBlock]!;
      const u8 = this.k.u8;
      // pages [cursorPage, end) hold at most m dirty pages
      const m = Math.max(1, Math.floor(remaining / s.recordMax));
      const dirty: number[] = [];
      let p = this.cursorPage;
      while (p < s.pages && dirty.length < m) {
        const byte = u8[s.bitmap + (p >> 3)]!;
        if (byte === 0 && (p & 7) === 0) {
          p += 8;
          continue;
        }
        if (byte & (1 << (p & 7))) dirty.push(p);
        p++;
      }
      const end = Math.min(p, s.pages);
      if (dirty.length > 0) {
        idle = 0;
        this.sentSinceWrap = true;
        const st: RamPassStats = this.mfd
          ? this.sendMultifd(s, dirty)
          : this.ram.sendBlock(s.block, {
              firstPage: this.cursorPage,
              endPage: end,
              sendMapPtr: s.bitmap,
              ...(this.cache ? { cache: this.cacheFor(s)! } : {}),
            });
        if (s.shadow) {
          const ps = this.unitBytes;
          const u = this.k.u8;
          for (const d of dirty) u.copyWithin(s.shadow + d * ps, s.block.ptr + d * ps, s.block.ptr + (d + 1) * ps);
        }
        total.zero += st.zero;
        total.normal += st.normal;
        total.xbzrle += st.xbzrle;
        total.unchanged += st.unchanged;
        total.bytes += st.bytes;
        this.sentPages += dirty.length;
        this.dirtyCount -= dirty.length; // the bits of exactly these pages were cleared
        this.sentRecordBytes += st.bytes;
        remaining -= st.bytes;
      }
      this.cursorPage = end;
      if (this.cursorPage >= s.pages) {
        if (dirty.length === 0) idle++;
        this.cursorPage = 0;
        this.cursorBlock++;
        if (this.cursorBlock >= this.st.length) {
          this.cursorBlock = 0;
          if (this.sentSinceWrap) {
            this.passCount++;
            this.sentSinceWrap = false;
            // QEMU: XBZRLE starts after the first complete pass over RAM.
            if (this.passCount === 1 && this.cache) this.cache.activate();
          }
        }
      }
    }
    return total;
  }

  /**
   * multifd mode: the dirty pages `dirty` (ascending) of block `s`, classified in runs by the kernels' zero test:
   * zero pages as ZERO records on the main stream, the others queued on the channels; their dirty bits cleared.
   * `bytes` counts both as QEMU does (channel pages uncompressed, packet headers as packets open).
   */
  private sendMultifd(s: BlockState, dirty: readonly number[]): RamPassStats {
    const k = this.k;
    const mfd = this.mfd!;
    const ps = this.unitBytes;
    const w = this.ram.w;
    const mainBefore = w.pos;
    const stats: RamPassStats = { zero: 0, normal: 0, xbzrle: 0, unchanged: 0, overflow: 0, bytes: 0 };
    const zmap = this.zeroMap;
    let channel = 0;
    for (let i = 0; i < dirty.length; ) {
      // a run of consecutive dirty pages, at most ZERO_RUN
      const first = dirty[i]!;
      let n = 1;
      while (i + n < dirty.length && n < ZERO_RUN && dirty[i + n] === first + n) n++;
      k.zeroPages(s.block.ptr + first * ps, n, zmap, ps);
      const u8 = k.u8;
      // zero pages one record each; the pages between them one queue() call per run
      for (let j = 0; j < n; ) {
        if (u8[zmap + (j >> 3)]! & (1 << (j & 7))) {
          this.ram.zeroAt(s.name, (first + j) * ps);
          stats.zero++;
          j++;
          continue;
        }
        let e = j + 1;
        while (e < n) {
          const byte = u8[zmap + (e >> 3)]!;
          if (byte === 0 && (e & 7) === 0) e = Math.min(n, e + 8);
          else if (byte & (1 << (e & 7))) break;
          else e++;
        }
        channel += mfd.queue(s.name, (first + j) * ps, s.block.ptr + (first + j) * ps, e - j);
        stats.normal += e - j;
        j = e;
      }
      clearBits(u8, s.bitmap, first, first + n);
      i += n;
    }
    stats.bytes = w.pos - mainBefore + channel;
    return stats;
  }

  private pass(r: PageCounts): SectionPass {
    return { done: this.dirtyUnits() === 0, counts: { kind: "ram", pages: { zero: r.zero, normal: r.normal, xbzrle: r.xbzrle, unchanged: r.unchanged } } };
  }

  iterate(budget: number): SectionPass {
    const r = this.sendDirty(Math.max(1, budget - this.partOverhead));
    this.mfd?.sync();
    this.ram.eos();
    return this.pass(r);
  }

  /** Merge the pages written since the last sync into the dirty bitmap. */
  sync(): SectionSync {
    const log = this.options.dirtyLog;
    let found = 0;
    for (const s of this.st) {
      if (log) {
        const b = log(s.block);
        if (!b) continue;
        const u8 = this.k.u8;
        const n = Math.min(b.length, s.bitmapBytes);
        for (let i = 0; i < n; i++) {
          let v = b[i]!;
          if (i === s.bitmapBytes - 1 && s.pages & 7) v &= (1 << (s.pages & 7)) - 1;
          found += popcount8(v);
          const had = u8[s.bitmap + i]!;
          this.dirtyCount += popcount8(v & ~had);
          u8[s.bitmap + i] = had | v;
        }
      } else {
        // With the shadow as XBZRLE cache the scan must not refresh it: it holds what the destination has, and
        // pages still waiting to be sent keep showing as changed (counted once: only bits not yet set).
        const refresh = !(this.cache instanceof ShadowSlots);
        this.k.changedPages(s.block.ptr, s.shadow, s.pages, s.scratch, refresh, this.unitBytes);
        const u8 = this.k.u8;
        for (let i = 0; i < s.bitmapBytes; i++) {
          const had = u8[s.bitmap + i]!;
          const now = u8[s.scratch + i]!;
          const added = popcount8(now & ~had);
          found += added;
          this.dirtyCount += added;
          u8[s.bitmap + i] = had | now;
        }
      }
    }
    const source: DirtySource = log ? "log" : "scan";
    return { dirtied: found, source };
  }

  /** The rest of the dirty pages (QEMU's last stage: XBZRLE misses are not cached). */
  complete(): SectionPass {
    if (this.cache instanceof XbzrleCache) this.cache.lastStage = true;
    const r = this.sendDirty(Infinity);
    this.mfd?.sync();
    this.ram.eos();
    return this.pass(r);
  }

  dispose(): void {
    const k = this.k;
    for (const s of this.st) {
      k.free(s.bitmap);
      if (s.shadow) k.free(s.shadow);
      if (s.scratch) k.free(s.scratch);
    }
    this.st.length = 0;
    this.cache?.dispose();
    this.mfd?.dispose();
    if (this.zeroMap) k.free(this.zeroMap);
    this.zeroMap = 0;
    this.ram.dispose();
  }
}

/** Clear bits [from, to) of the bitmap at `map` in `u8` (whole bytes at once). */
function clearBits(u8: Uint8Array, map: number, from: number, to: number): void {
  while (from < to && from & 7) {
    u8[map + (from >> 3)] = u8[map + (from >> 3)]! & ~(1 << (from & 7));
    from++;
  }
  const whole = (to - from) >> 3;
  if (whole > 0) {
    u8.fill(0, map + (from >> 3), map + (from >> 3) + whole);
    from += whole << 3;
  }
  for (; from < to; from++) u8[map + (from >> 3)] = u8[map + (from >> 3)]! & ~(1 << (from & 7));
}

/**
 * The scan's shadow copies as XBZRLE cache: slot k of a block = its page k (the cache pointer is the block's
 * shadow), so every dirty page is a hit and is sent as a delta against what the destination holds. Inactive
 * until the first complete pass, as QEMU's cache.
 */
class ShadowSlots {
  active = false;
  private readonly map: number;

  constructor(
    private readonly k: Kernels,
    private readonly maxPages: number,
  ) {
    this.map = k.alloc(maxPages * 4, 8);
  }

  activate(): void {
    this.active = true;
  }

  over(shadow: number): PageCache {
    return { ptr: shadow, prepare: (_name, _length, first, end, wanted) => this.prepare(first, end, wanted) };
  }

  private prepare(first: number, end: number, wanted: (page: number) => boolean): number {
    if (!this.active) return 0;
    const map = new Uint32Array(this.k.memory.buffer, this.map, this.maxPages);
    for (let p = first; p < end; p++) map[p] = wanted(p) ? p + 1 : 0;
    return this.map;
  }

  dispose(): void {
    this.k.free(this.map);
  }
}
