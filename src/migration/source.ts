// The source side of a live (precopy) migration of RAM on a virtual clock (wire-format §2.7, §5.4): setup writes
// the header, the configuration and the ram START (MEM_SIZE); each round writes one ram PART holding dirty pages
// (the first pass: every page) up to the round's byte budget (bandwidth × time slice), continuing where the
// previous round stopped, as QEMU's iterate does; after each round the guest runs for the round's virtual
// duration (a host callback), then the dirty bitmap is synced from a host dirty log or from a scan of the RAM
// against a shadow copy (kernels.changedPages). When the pending bytes would go out within the downtime target
// (or after maxRounds, or on forceSwitch()), the guest is paused, the rest goes out in the ram END, then device
// FULL sections, EOF and the vmdesc. XBZRLE (with a cache size) activates after the first complete pass.
//
// Nothing here reads a real clock: the same inputs give the same stream. Browser-safe.
import { VmstreamError } from "../io/errors.js";
import type { Kernels } from "../kernels/types.js";
import { StreamEncoder, type FramingOptions } from "../savevm/encoder.js";
import { RamWriter, XbzrleCache, type RamBlockData, type RamPassStats } from "../sections/encode/ram.js";
import type { State, VMStateDescription } from "../vmstate/types.js";

/** A device written as a FULL section after the ram END. */
export interface MigrationDevice {
  readonly idstr: string;
  readonly instanceId?: number;
  readonly description: VMStateDescription;
  readonly state: State;
}

/** Pages by record kind. */
export interface PageCounts {
  zero: number;
  normal: number;
  xbzrle: number;
  /** XBZRLE cache hits with nothing to send (no record). */
  unchanged: number;
}

export interface RoundProgress {
  /** 1-based round number; the final (END) round is `phase: "complete"`. */
  readonly round: number;
  readonly phase: "iterate" | "complete";
  /** Stream bytes of this round (section framing included). */
  readonly bytes: number;
  /** Byte budget of the round (Infinity for the complete phase). */
  readonly budget: number;
  readonly pages: PageCounts;
  /** Virtual seconds the round took (bytes / bandwidth). */
  readonly duration: number;
  /** Virtual time at the end of the round (seconds since setup). */
  readonly time: number;
  /** Complete passes over RAM so far. */
  readonly passes: number;
  /** Pages newly dirtied during this round (from the sync after it). */
  readonly dirtied: number;
  /** Dirty pages pending after the sync. */
  readonly dirtyPages: number;
  /** Pages dirtied per virtual second during this round. */
  readonly dirtyRate: number;
  /** Estimated bytes still to send. */
  readonly pendingBytes: number;
  /** pendingBytes / bandwidth (seconds). */
  readonly expectedDowntime: number;
  /** Where the dirty pages came from. */
  readonly dirtySource: "log" | "scan" | "none";
}

export interface MigrationSourceOptions {
  readonly kernels: Kernels;
  /** Blocks in the kernels' memory, in RAM-list order. */
  readonly blocks: readonly RamBlockData[];
  readonly pageSize?: number;
  /** Bytes per virtual second. */
  readonly bandwidth: number;
  /** Seconds the guest may stay paused. */
  readonly downtimeTarget: number;
  /** Iteration rounds before the switch-over is forced. */
  readonly maxRounds: number;
  /** Virtual seconds of one iteration round (its budget is bandwidth × slice). Default 0.1. */
  readonly roundTime?: number;
  /** XBZRLE cache bytes; XBZRLE is off without it. */
  readonly xbzrleCacheBytes?: number;
  /**
   * Host-supplied dirty log: a bitmap (bit i = page i of the block) of the pages written since the previous
   * call, or undefined for "no pages". When given, no shadow copy is kept and no scan runs.
   */
  readonly dirtyLog?: (block: RamBlockData) => Uint8Array | undefined;
  /** Pending-bytes estimate: dirty pages × page size (default) or × the bytes per page measured so far. */
  readonly estimate?: "page" | "measured";
  readonly onProgress?: (p: RoundProgress) => void;
  /** Called once, when the source decides to switch over (the guest stops). */
  readonly pause?: () => void;
  readonly devices?: readonly MigrationDevice[];
  /** Machine type in the configuration section (default "pc-i440fx-7.2"). */
  readonly machine?: string;
  readonly framing?: FramingOptions;
  /** Section id of ram (default 2, as in an x86 pc stream); devices follow. */
  readonly ramSectionId?: number;
}

export type SwitchReason = "converged" | "max-rounds" | "forced";

export interface MigrationOutcome {
  readonly reason: SwitchReason;
  readonly converged: boolean;
  readonly rounds: readonly RoundProgress[];
  /** The complete phase (END + devices + EOF + vmdesc). */
  readonly final: RoundProgress;
  readonly totalBytes: number;
  /** The estimate at the switch-over (seconds). */
  readonly expectedDowntime: number;
  /** Bytes after the pause / bandwidth (seconds). */
  readonly downtime: number;
  /** Virtual time at the end (seconds). */
  readonly totalTime: number;
}

const FRAMING_RESERVE = 5 + 8 + 5; // PART header, EOS, footer

function popcount8(b: number): number {
  b = b - ((b >> 1) & 0x55);
  b = (b & 0x33) + ((b >> 2) & 0x33);
  return (b + (b >> 4)) & 0x0f;
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
}

/**
 * The RAM source engine. Use `run(advance)` for a whole migration, or `setup()`, `iterate()` (then let the guest
 * run and call `sync(seconds)`), `shouldSwitch()`, `complete()` step by step.
 */
export class MigrationSource {
  readonly pageSize: number;
  readonly rounds: RoundProgress[] = [];
  private readonly k: Kernels;
  private readonly enc: StreamEncoder;
  private readonly ram: RamWriter;
  private readonly cache: XbzrleCache | undefined;
  private readonly st: BlockState[] = [];
  private readonly ramId: number;
  private cursorBlock = 0;
  private cursorPage = 0;
  private passes = 0;
  private sentSinceWrap = false;
  private time = 0;
  private written = 0;
  private sentPages = 0;
  private sentRecordBytes = 0;
  private forced = false;
  private phase: "new" | "iterate" | "done" = "new";
  private lastRound: { bytes: number; budget: number; pages: PageCounts; duration: number } | undefined;

  constructor(readonly options: MigrationSourceOptions, sink: (chunk: Uint8Array) => void) {
    const o = options;
    this.k = o.kernels;
    this.pageSize = o.pageSize ?? 4096;
    if (!(o.bandwidth > 0)) throw new VmstreamError("RANGE", "bandwidth must be > 0 bytes/s", { detail: String(o.bandwidth) });
    if (!(o.downtimeTarget >= 0)) throw new VmstreamError("RANGE", "downtimeTarget must be >= 0 s", { detail: String(o.downtimeTarget) });
    if (!Number.isInteger(o.maxRounds) || o.maxRounds < 1) throw new VmstreamError("RANGE", "maxRounds must be an integer >= 1", { detail: String(o.maxRounds) });
    if (o.blocks.length === 0) throw new VmstreamError("RANGE", "no RAM blocks");
    this.ramId = o.ramSectionId ?? 2;
    this.enc = new StreamEncoder(
      (c) => {
        this.written += c.length;
        sink(c);
      },
      { ...(o.framing ?? {}), pageSize: this.pageSize },
    );
    this.ram = new RamWriter(this.enc.writer, this.pageSize, {}, this.k);
    const ps = this.pageSize;
    for (const block of o.blocks) {
      if (block.length % ps !== 0 || block.length <= 0) throw new VmstreamError("RANGE", "a RAM block's length must be a positive multiple of the page size", { detail: block.name });
      const pages = block.length / ps;
      const bitmapBytes = Math.ceil(pages / 8);
      const bitmap = this.k.alloc(bitmapBytes + 8, 8);
      this.k.u8.fill(0, bitmap, bitmap + bitmapBytes + 8);
      this.st.push({ block, pages, bitmap, bitmapBytes, shadow: 0, scratch: 0, recordMax: 8 + 1 + new TextEncoder().encode(block.name).length + ps });
    }
    if (!o.dirtyLog) {
      for (let i = 0; i < this.st.length; i++) {
        const s = this.st[i]!;
        const shadow = this.k.alloc(s.block.length, 4096);
        const scratch = this.k.alloc(s.bitmapBytes + 8, 8);
        this.k.u8.copyWithin(shadow, s.block.ptr, s.block.ptr + s.block.length);
        this.st[i] = { ...s, shadow, scratch };
      }
    }
    this.cache = o.xbzrleCacheBytes ? new XbzrleCache(this.k, o.xbzrleCacheBytes, ps) : undefined;
  }

  /** Total stream bytes so far. */
  get bytesWritten(): number {
    return this.written;
  }

  /** Virtual seconds since setup. */
  get clock(): number {
    return this.time;
  }

  /** Switch over after the current round whatever the estimate says. */
  forceSwitch(): void {
    this.forced = true;
  }

  /** Dirty pages pending. */
  dirtyPages(): number {
    let n = 0;
    const u8 = this.k.u8;
    for (const s of this.st) for (let i = 0; i < s.bitmapBytes; i++) n += popcount8(u8[s.bitmap + i]!);
    return n;
  }

  /** Estimated bytes still to send. */
  pendingBytes(dirty = this.dirtyPages()): number {
    const perPage = this.options.estimate === "measured" && this.sentPages > 0 ? this.sentRecordBytes / this.sentPages : this.pageSize;
    return dirty * perPage;
  }

  /** Header, configuration, ram START (MEM_SIZE, EOS); every page dirty. */
  setup(): void {
    if (this.phase !== "new") throw new VmstreamError("STATE", "setup() runs once");
    const e = this.enc;
    e.header();
    e.configuration({ machine: this.options.machine ?? "pc-i440fx-7.2" });
    e.begin("start", this.ramId, "ram", 0, 4);
    this.ram.memSize(this.st.map((s) => ({ name: s.block.name, length: BigInt(s.block.length) })));
    this.ram.eos();
    e.end();
    const u8 = this.k.u8;
    for (const s of this.st) {
      u8.fill(0xff, s.bitmap, s.bitmap + s.bitmapBytes);
      const rest = s.pages & 7;
      if (rest) u8[s.bitmap + s.bitmapBytes - 1] = (1 << rest) - 1;
    }
    this.phase = "iterate";
  }

  /**
   * Send dirty pages from the cursor on, in block then page order, until `budget` record bytes are used (at most
   * one page record more) or no dirty page is left. Returns the stats.
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
        const st: RamPassStats = this.ram.sendBlock(s.block, {
          firstPage: this.cursorPage,
          endPage: end,
          sendMapPtr: s.bitmap,
          ...(this.cache ? { cache: this.cache } : {}),
        });
        if (s.shadow) {
          const ps = this.pageSize;
          const u = this.k.u8;
          for (const d of dirty) u.copyWithin(s.shadow + d * ps, s.block.ptr + d * ps, s.block.ptr + (d + 1) * ps);
        }
        total.zero += st.zero;
        total.normal += st.normal;
        total.xbzrle += st.xbzrle;
        total.unchanged += st.unchanged;
        total.bytes += st.bytes;
        this.sentPages += dirty.length;
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
            this.passes++;
            this.sentSinceWrap = false;
            // QEMU: XBZRLE starts after the first complete pass over RAM.
            if (this.passes === 1 && this.cache) this.cache.activate();
          }
        }
      }
    }
    return total;
  }

  /** One iteration round: a ram PART with at most the round's budget of records. Returns the virtual seconds it took. */
  iterate(): number {
    if (this.phase !== "iterate") throw new VmstreamError("STATE", "iterate() after setup() and before complete()");
    const budget = this.options.bandwidth * (this.options.roundTime ?? 0.1);
    const before = this.written;
    this.enc.begin("part", this.ramId);
    const r = this.sendDirty(Math.max(1, budget - FRAMING_RESERVE));
    this.ram.eos();
    this.enc.end();
    const bytes = this.written - before;
    const duration = bytes / this.options.bandwidth;
    this.time += duration;
    this.lastRound = { bytes, budget, pages: { zero: r.zero, normal: r.normal, xbzrle: r.xbzrle, unchanged: r.unchanged }, duration };
    return duration;
  }

  /** Merge the pages written since the last sync into the dirty bitmap; returns how many were newly found. */
  private syncBitmap(): { found: number; source: "log" | "scan" } {
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
          u8[s.bitmap + i] = u8[s.bitmap + i]! | v;
        }
      } else {
        found += this.k.changedPages(s.block.ptr, s.shadow, s.pages, s.scratch, true, this.pageSize);
        const u8 = this.k.u8;
        for (let i = 0; i < s.bitmapBytes; i++) u8[s.bitmap + i] = u8[s.bitmap + i]! | u8[s.scratch + i]!;
      }
    }
    return { found, source: log ? "log" : "scan" };
  }

  /** After the guest ran for the round: sync the dirty bitmap, report the round. */
  sync(): RoundProgress {
    const last = this.lastRound;
    if (!last) throw new VmstreamError("STATE", "sync() follows iterate()");
    const { found, source } = this.syncBitmap();
    const dirty = this.dirtyPages();
    const pending = this.pendingBytes(dirty);
    const p: RoundProgress = {
      round: this.rounds.length + 1,
      phase: "iterate",
      bytes: last.bytes,
      budget: last.budget,
      pages: last.pages,
      duration: last.duration,
      time: this.time,
      passes: this.passes,
      dirtied: found,
      dirtyPages: dirty,
      dirtyRate: last.duration > 0 ? found / last.duration : 0,
      pendingBytes: pending,
      expectedDowntime: pending / this.options.bandwidth,
      dirtySource: source,
    };
    this.lastRound = undefined;
    this.rounds.push(p);
    this.options.onProgress?.(p);
    return p;
  }

  /** Why to switch over now, or undefined to go on iterating. */
  shouldSwitch(): SwitchReason | undefined {
    const last = this.rounds[this.rounds.length - 1];
    if (this.forced) return "forced";
    if (last && last.expectedDowntime <= this.options.downtimeTarget) return "converged";
    if (this.rounds.length >= this.options.maxRounds) return "max-rounds";
    return undefined;
  }

  /** Pause the guest, send the remaining dirty pages in the ram END, the devices, EOF and the vmdesc. */
  complete(): RoundProgress {
    if (this.phase !== "iterate") throw new VmstreamError("STATE", "complete() after setup(), once");
    this.options.pause?.();
    const { found, source } = this.syncBitmap();
    const dirty = this.dirtyPages();
    const pending = this.pendingBytes(dirty);
    const before = this.written;
    if (this.cache) this.cache.lastStage = true;
    this.enc.begin("end", this.ramId);
    const r = this.sendDirty(Infinity);
    this.ram.eos();
    this.enc.end();
    let id = this.ramId + 1;
    for (const d of this.options.devices ?? []) {
      this.enc.device({ id: id++, idstr: d.idstr, instanceId: d.instanceId ?? 0, description: d.description, state: d.state });
    }
    this.enc.finishStream();
    const bytes = this.written - before;
    const duration = bytes / this.options.bandwidth;
    this.time += duration;
    this.phase = "done";
    const p: RoundProgress = {
      round: this.rounds.length + 1,
      phase: "complete",
      bytes,
      budget: Infinity,
      pages: { zero: r.zero, normal: r.normal, xbzrle: r.xbzrle, unchanged: r.unchanged },
      duration,
      time: this.time,
      passes: this.passes,
      dirtied: found,
      dirtyPages: dirty,
      dirtyRate: 0,
      pendingBytes: pending,
      expectedDowntime: pending / this.options.bandwidth,
      dirtySource: source,
    };
    this.options.onProgress?.(p);
    return p;
  }

  /**
   * The whole migration: setup, rounds (after each, `advance(seconds)` lets the guest run for the round's virtual
   * time), the switch-over, the complete phase.
   */
  run(advance: (seconds: number) => void = () => {}): MigrationOutcome {
    this.setup();
    let reason: SwitchReason | undefined;
    for (;;) {
      const dt = this.iterate();
      advance(dt);
      this.sync();
      reason = this.shouldSwitch();
      if (reason) break;
    }
    const last = this.rounds[this.rounds.length - 1]!;
    const final = this.complete();
    return {
      reason,
      converged: reason === "converged",
      rounds: this.rounds,
      final,
      totalBytes: this.written,
      expectedDowntime: last.expectedDowntime,
      downtime: final.duration,
      totalTime: this.time,
    };
  }

  /** Give back the kernels' memory (bitmaps, shadows, cache, encode window). */
  dispose(): void {
    const k = this.k;
    for (const s of this.st) {
      k.free(s.bitmap);
      if (s.shadow) k.free(s.shadow);
      if (s.scratch) k.free(s.scratch);
    }
    this.st.length = 0;
    this.cache?.dispose();
    this.ram.dispose();
  }
}
