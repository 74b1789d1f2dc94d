// The source side of a live (precopy) migration on a virtual clock: header, configuration and the START of every
// iterative section, rounds of PARTs under a byte budget with a sync after each, the switch-over when the pending
// bytes fit the downtime target, then END, device FULL sections, EOF and the vmdesc. Nothing here reads a real
// clock: the same inputs give the same stream. How it works: docs/live-migration.md, "The source engine".
import { VmstreamError } from "../io/errors.js";
import type { Kernels } from "../kernels/types.js";
import { type FramingOptions, StreamEncoder } from "../savevm/encoder.js";
import { type BlockDeviceSource, BlockSection } from "../sections/block/source.js";
import {
  addCounts,
  type DirtySource,
  type IterativeSection,
  noCounts,
  type PageCounts,
  type SectionCounts,
  type SectionProgress,
  type SectionSync,
} from "../sections/iterative.js";
import type { RamBlockData } from "../sections/ram/format.js";
import type { ChannelOutput, MultifdSourceOptions } from "../sections/ram/multifd-source.js";
import { RamSection } from "../sections/ram/source.js";
import { HtabSection, type HtabSource } from "../sections/spapr-htab/source.js";
import type { State, VMStateDescription } from "../vmstate/types.js";

export type { PageCounts } from "../sections/iterative.js";

/** A device written as a FULL section after the END sections. */
export interface MigrationDevice {
  readonly idstr: string;
  readonly instanceId?: number;
  readonly description: VMStateDescription;
  readonly state: State;
  /** Section id (default: numbered on from the last iterative section). */
  readonly sectionId?: number;
  /** Version in the section header (default: the description's). */
  readonly version?: number;
  /** How the device appears in the vmdesc (see DeviceSpec.vmdesc; default "vmstate"). */
  readonly vmdesc?: "vmstate" | "legacy" | "omit" | { readonly text: string };
}

export interface RoundProgress {
  /** 1-based round number; the final (END) round is `phase: "complete"`. */
  readonly round: number;
  readonly phase: "iterate" | "complete";
  /** Stream bytes of this round (section framing included). */
  readonly bytes: number;
  /** Byte budget of the round (Infinity for the complete phase). */
  readonly budget: number;
  /** RAM pages by record kind. */
  readonly pages: PageCounts;
  /** Virtual seconds the round took (bytes / bandwidth). */
  readonly duration: number;
  /** Virtual time at the end of the round (seconds since setup). */
  readonly time: number;
  /** Complete passes over RAM so far. */
  readonly passes: number;
  /** RAM pages newly dirtied during this round (from the sync after it). */
  readonly dirtied: number;
  /** Dirty RAM pages pending after the sync. */
  readonly dirtyPages: number;
  /** RAM pages dirtied per second during this round. */
  readonly dirtyRate: number;
  /** Bytes dirtied per second during this round, all sections (RAM pages, disk chunks, HPTEs). */
  readonly dirtyBytesRate: number;
  /** Estimated bytes still to send, all sections. */
  readonly pendingBytes: number;
  /** pendingBytes / bandwidth (seconds). */
  readonly expectedDowntime: number;
  /** Where the dirty RAM pages came from. */
  readonly dirtySource: DirtySource;
  /** Every iterative section's share, in stream order. */
  readonly sections: readonly SectionProgress[];
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
  /** XBZRLE cache bytes; XBZRLE is off without it (and without xbzrleShadow). */
  readonly xbzrleCacheBytes?: number;
  /** Scan mode only: XBZRLE against the shadow copy the scan keeps (one slot per page, no cache memory). */
  readonly xbzrleShadow?: boolean;
  /**
   * Host-supplied dirty log: a bitmap (bit i = page i of the block) of the pages written since the previous
   * call, or undefined for "no pages". When given, no shadow copy is kept and no scan runs.
   */
  readonly dirtyLog?: (block: RamBlockData) => Uint8Array | undefined;
  /** Pending-bytes estimate: dirty units × unit size (default) or × the record bytes per unit measured so far. */
  readonly estimate?: "page" | "measured";
  readonly onProgress?: (p: RoundProgress) => void;
  /** Called once, when the source decides to switch over (the guest stops). */
  readonly pause?: () => void;
  readonly devices?: readonly MigrationDevice[];
  /** Machine type in the configuration section (default "pc-i440fx-7.2"). */
  readonly machine?: string;
  readonly framing?: FramingOptions;
  /** Section id of ram (default 2, as in an x86 pc stream); devices follow the last iterative section. */
  readonly ramSectionId?: number;
  /** Disks for block migration (the "block" section; QEMU's `block` capability). */
  readonly blockDevices?: readonly BlockDeviceSource[];
  /** All-zero disk chunks as ZERO_BLOCK records (QEMU's zero-blocks capability). */
  readonly zeroBlocks?: boolean;
  /** Section id of block (default 1, as in an x86 pc stream: registered before ram). */
  readonly blockSectionId?: number;
  /** The sPAPR hash page table (the "spapr/htab" section; pseries machines). */
  readonly htab?: HtabSource;
  /**
   * QEMU's multifd mode (wire-format §5.6): RAM pages that are not zero go over `channels` extra connections
   * (the constructor's `channelSink`), in packets, with a sync point before every RAM EOS. Not with XBZRLE.
   */
  readonly multifd?: MultifdSourceOptions;
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

/** PART header (type + be32 id) and footer (0x7E + be32 id). */
const SECTION_FRAMING = 5 + 5;
const MAX_ID = 0xffffffff;

interface SectionShare {
  bytes: number;
  sections: number;
  counts: SectionCounts;
}

/**
 * The source engine. Use `run(advance)` for a whole migration, or `setup()`, `iterate()` (then let the guest run
 * and call `sync(seconds)`), `shouldSwitch()`, `complete()` step by step. The sink gets each finished item's
 * bytes; a chunk may be a view of guest memory (RAM window, disk, HPT): copy it before the guest runs again.
 */
export class MigrationSource {
  readonly pageSize: number;
  readonly rounds: RoundProgress[] = [];
  /** The iterative sections in stream order. */
  readonly sections: readonly IterativeSection[];
  private readonly enc: StreamEncoder;
  private readonly ram: RamSection;
  private readonly deviceIds: number[];
  private readonly lastCounts: SectionCounts[];
  private time = 0;
  /** Bytes handed to the main sink. */
  private mainBytes = 0;
  private forced = false;
  private phase: "new" | "iterate" | "done" = "new";
  private lastRound: { bytes: number; budget: number; duration: number; shares: SectionShare[] } | undefined;

  /**
   * `sink` gets the main stream's bytes; with `multifd`, `channelSink` each channel's (its init message first).
   * Either may get views of guest memory (see the class comment).
   */
  constructor(
    readonly options: MigrationSourceOptions,
    sink: (chunk: Uint8Array) => void,
    channelSink?: ChannelOutput,
  ) {
    const o = options;
    const k = o.kernels;
    this.pageSize = o.pageSize ?? 4096;
    if (!(o.bandwidth > 0)) throw new VmstreamError("RANGE", "bandwidth must be > 0 bytes/s", { detail: String(o.bandwidth) });
    if (!(o.downtimeTarget >= 0)) throw new VmstreamError("RANGE", "downtimeTarget must be >= 0 s", { detail: String(o.downtimeTarget) });
    if (!Number.isInteger(o.maxRounds) || o.maxRounds < 1)
      throw new VmstreamError("RANGE", "maxRounds must be an integer >= 1", { detail: String(o.maxRounds) });
    if (o.blocks.length === 0) throw new VmstreamError("RANGE", "no RAM blocks");
    if (o.multifd && !channelSink) throw new VmstreamError("RANGE", "multifd needs a channel sink (the constructor's third argument)");
    const ids = this.sectionIds();
    this.enc = new StreamEncoder(
      (c) => {
        this.mainBytes += c.length;
        sink(c);
      },
      { ...(o.framing ?? {}), pageSize: this.pageSize },
    );
    const w = this.enc.writer;
    const list: IterativeSection[] = [];
    try {
      this.ram = new RamSection(
        {
          kernels: k,
          blocks: o.blocks,
          pageSize: this.pageSize,
          sectionId: ids.ram,
          ...(o.xbzrleCacheBytes ? { xbzrleCacheBytes: o.xbzrleCacheBytes } : {}),
          ...(o.xbzrleShadow ? { xbzrleShadow: true } : {}),
          ...(o.dirtyLog ? { dirtyLog: o.dirtyLog } : {}),
          ...(o.estimate ? { estimate: o.estimate } : {}),
          ...(o.multifd ? { multifd: o.multifd, channelSink: channelSink! } : {}),
        },
        w,
      );
      list.push(this.ram);
      if (o.blockDevices && o.blockDevices.length > 0) {
        list.push(
          new BlockSection(
            {
              kernels: k,
              devices: o.blockDevices,
              sectionId: ids.block!,
              ...(o.zeroBlocks ? { zeroBlocks: true } : {}),
              ...(o.estimate ? { estimate: o.estimate } : {}),
            },
            w,
          ),
        );
      }
      if (o.htab) list.push(new HtabSection({ ...o.htab, kernels: k, sectionId: ids.htab! }, w));
    } catch (e) {
      for (const s of list) s.dispose();
      throw e;
    }
    list.sort((a, b) => a.sectionId - b.sectionId);
    this.sections = list;
    this.deviceIds = ids.devices;
    this.lastCounts = list.map((s) => noCounts(s.kind));
  }

  /** Section ids: the given ones, else QEMU's x86 numbering (block 1, ram 2), htab after ram, devices after all. */
  private sectionIds(): { ram: number; block: number | undefined; htab: number | undefined; devices: number[] } {
    const o = this.options;
    const check = (what: string, id: number, min: number) => {
      if (!Number.isInteger(id) || id < min || id > MAX_ID)
        throw new VmstreamError("RANGE", `${what} section id must be an integer ${min}..${MAX_ID}`, { detail: String(id) });
    };
    const used = new Set<number>();
    const take = (what: string, id: number) => {
      if (used.has(id)) throw new VmstreamError("RANGE", "two sections with the same section id", { detail: `${what}: ${id}` });
      used.add(id);
      return id;
    };
    // id 0 is never used for a section with PART/END: QEMU resolves PART/END of id 0 to its first handler (§2.12)
    const ram = o.ramSectionId ?? 2;
    check("ram", ram, 1);
    take("ram", ram);
    const hasBlock = (o.blockDevices?.length ?? 0) > 0;
    if (o.blockSectionId !== undefined) check("block", o.blockSectionId, 1);
    if (o.htab?.sectionId !== undefined) check("spapr/htab", o.htab.sectionId, 1);
    const next = (from: number) => {
      let id = from;
      while (used.has(id) || (hasBlock && id === o.blockSectionId) || id === o.htab?.sectionId) id++;
      return id;
    };
    const block = hasBlock ? take("block", o.blockSectionId ?? (used.has(1) || o.htab?.sectionId === 1 ? next(ram + 1) : 1)) : undefined;
    const htab = o.htab ? take("spapr/htab", o.htab.sectionId ?? next(ram + 1)) : undefined;
    const devices: number[] = [];
    let id = Math.max(...used) + 1;
    for (const d of o.devices ?? []) {
      if (d.sectionId !== undefined) {
        check(d.idstr, d.sectionId, 0);
        devices.push(take(d.idstr, d.sectionId));
      } else {
        while (used.has(id) || (o.devices ?? []).some((x) => x.sectionId === id)) id++;
        devices.push(take(d.idstr, id));
      }
    }
    return { ram, block, htab, devices };
  }

  /**
   * Bytes so far as the budget and the virtual clock count them: the main stream's and, with multifd, the
   * channels' as QEMU counts them (pages uncompressed, so with compression more than went out: `wireBytes`).
   */
  get bytesWritten(): number {
    return this.written;
  }

  /** Bytes handed to the sinks so far, main stream and channels. */
  get wireBytes(): number {
    return this.mainBytes + this.ram.channelWireBytes;
  }

  private get written(): number {
    return this.mainBytes + this.ram.channelBytes;
  }

  /** Virtual seconds since setup. */
  get clock(): number {
    return this.time;
  }

  /** Switch over after the current round whatever the estimate says. */
  forceSwitch(): void {
    this.forced = true;
  }

  /** Dirty RAM pages pending. */
  dirtyPages(): number {
    return this.ram.dirtyUnits();
  }

  /** Estimated bytes still to send, all sections (`dirty` overrides the count of dirty RAM pages). */
  pendingBytes(dirty = this.dirtyPages()): number {
    let n = this.ram.pendingBytes(dirty);
    for (const s of this.sections) if (s !== this.ram) n += s.pendingBytes();
    return n;
  }

  /** Header, configuration, the START of every section (everything pending). */
  setup(): void {
    if (this.phase !== "new") throw new VmstreamError("STATE", "setup() runs once");
    const e = this.enc;
    e.header();
    e.configuration({ machine: this.options.machine ?? "pc-i440fx-7.2" });
    for (const s of this.sections) {
      e.begin("start", s.sectionId, s.idstr, s.instanceId, s.version);
      s.setup();
      e.end();
    }
    this.phase = "iterate";
  }

  private emptyShares(): SectionShare[] {
    return this.sections.map((_, i) => ({ bytes: 0, sections: 0, counts: noCounts(this.sections[i]!.kind, this.lastCounts[i]) }));
  }

  /**
   * One iteration step: PARTs under `budgetBytes` (default bandwidth × roundTime), at most one record over it.
   * May be called several times before sync() (the round is their sum). Returns the virtual seconds it took.
   */
  iterate(budgetBytes?: number): number {
    if (this.phase !== "iterate") throw new VmstreamError("STATE", "iterate() after setup() and before complete()");
    const budget = budgetBytes ?? this.options.bandwidth * (this.options.roundTime ?? 0.1);
    if (!(budget > 0)) throw new VmstreamError("RANGE", "a round's budget must be > 0 bytes", { detail: String(budgetBytes) });
    const before = this.written;
    const last = this.lastRound ?? { bytes: 0, budget: 0, duration: 0, shares: this.emptyShares() };
    for (let i = 0; i < this.sections.length; i++) {
      const s = this.sections[i]!;
      const remaining = budget - (this.written - before);
      // QEMU checks the rate limit before each section's PART
      if (i > 0 && remaining <= SECTION_FRAMING + s.partOverhead) break;
      const at = this.written;
      this.enc.begin("part", s.sectionId);
      const r = s.iterate(i === 0 ? Math.max(1, remaining - SECTION_FRAMING) : remaining - SECTION_FRAMING);
      this.enc.end();
      const sh = last.shares[i]!;
      sh.bytes += this.written - at;
      sh.sections++;
      sh.counts = addCounts(sh.counts, r.counts);
      this.lastCounts[i] = r.counts;
      // ... and does not go on to the next section before this one finished its stage
      if (!r.done) break;
    }
    const bytes = this.written - before;
    const duration = bytes / this.options.bandwidth;
    this.time += duration;
    this.lastRound = { bytes: last.bytes + bytes, budget: last.budget + budget, duration: last.duration + duration, shares: last.shares };
    return duration;
  }

  private report(
    phase: "iterate" | "complete",
    last: { bytes: number; budget: number; duration: number; shares: SectionShare[] },
    syncs: readonly SectionSync[],
    elapsed: number,
    dirty: number,
  ): RoundProgress {
    const sections: SectionProgress[] = this.sections.map((s, i) => {
      const sh = last.shares[i]!;
      const sy = syncs[i]!;
      return {
        ...sh.counts,
        idstr: s.idstr,
        sectionId: s.sectionId,
        bytes: sh.bytes,
        sections: sh.sections,
        passes: s.passes,
        dirtied: sy.dirtied,
        dirtyUnits: s.dirtyUnits(),
        unitBytes: s.unitBytes,
        dirtyRate: phase === "iterate" && elapsed > 0 ? sy.dirtied / elapsed : 0,
        pendingBytes: s === this.ram ? this.ram.pendingBytes(dirty) : s.pendingBytes(),
        dirtySource: sy.source,
      };
    });
    const ri = this.sections.indexOf(this.ram);
    const ramCounts = last.shares[ri]!.counts;
    const pending = sections.reduce((a, p) => a + p.pendingBytes, 0);
    const dirtiedBytes = sections.reduce((a, p) => a + p.dirtied * p.unitBytes, 0);
    return {
      round: this.rounds.length + 1,
      phase,
      bytes: last.bytes,
      budget: last.budget,
      pages: ramCounts.kind === "ram" ? ramCounts.pages : { zero: 0, normal: 0, xbzrle: 0, unchanged: 0 },
      duration: last.duration,
      time: this.time,
      passes: this.ram.passes,
      dirtied: syncs[ri]!.dirtied,
      dirtyPages: dirty,
      dirtyRate: phase === "iterate" && elapsed > 0 ? syncs[ri]!.dirtied / elapsed : 0,
      dirtyBytesRate: phase === "iterate" && elapsed > 0 ? dirtiedBytes / elapsed : 0,
      pendingBytes: pending,
      expectedDowntime: pending / this.options.bandwidth,
      dirtySource: syncs[ri]!.source,
      sections,
    };
  }

  /**
   * After the guest ran for the round: every section folds in what changed; report the round. `elapsedSeconds`
   * (when driven in real time: the round's wall time) is the dirty rates' time base; default the virtual duration.
   */
  sync(elapsedSeconds?: number): RoundProgress {
    const last = this.lastRound;
    if (!last) throw new VmstreamError("STATE", "sync() follows iterate()");
    if (elapsedSeconds !== undefined && !(elapsedSeconds >= 0 && Number.isFinite(elapsedSeconds))) {
      throw new VmstreamError("RANGE", "elapsed seconds must be finite and >= 0", { detail: String(elapsedSeconds) });
    }
    const syncs = this.sections.map((s) => s.sync());
    const p = this.report("iterate", last, syncs, elapsedSeconds ?? last.duration, this.dirtyPages());
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

  /** Pause the guest, send every section's rest in its END, the devices, EOF and the vmdesc. */
  complete(): RoundProgress {
    if (this.phase !== "iterate") throw new VmstreamError("STATE", "complete() after setup(), once");
    this.options.pause?.();
    const syncs = this.sections.map((s) => s.sync());
    const dirty = this.dirtyPages();
    // the estimate at the pause, before anything goes out
    const pendingBySection = this.sections.map((s) => (s === this.ram ? this.ram.pendingBytes(dirty) : s.pendingBytes()));
    const dirtyBySection = this.sections.map((s) => s.dirtyUnits());
    const before = this.written;
    const shares = this.emptyShares();
    for (let i = 0; i < this.sections.length; i++) {
      const s = this.sections[i]!;
      const at = this.written;
      this.enc.begin("end", s.sectionId);
      const r = s.complete();
      this.enc.end();
      shares[i] = { bytes: this.written - at, sections: 1, counts: r.counts };
      this.lastCounts[i] = r.counts;
    }
    const devices = this.options.devices ?? [];
    for (let i = 0; i < devices.length; i++) {
      const d = devices[i]!;
      this.enc.device({
        id: this.deviceIds[i]!,
        idstr: d.idstr,
        instanceId: d.instanceId ?? 0,
        description: d.description,
        state: d.state,
        ...(d.version !== undefined ? { version: d.version } : {}),
        ...(d.vmdesc !== undefined ? { vmdesc: d.vmdesc } : {}),
      });
    }
    this.enc.finishStream();
    const bytes = this.written - before;
    const duration = bytes / this.options.bandwidth;
    this.time += duration;
    this.phase = "done";
    const p = this.report("complete", { bytes, budget: Infinity, duration, shares }, syncs, 0, dirty);
    // what was pending at the pause (the sections are empty now)
    const sections = p.sections.map((x, i) => ({ ...x, dirtyUnits: dirtyBySection[i]!, pendingBytes: pendingBySection[i]! }));
    const pending = pendingBySection.reduce((a, b) => a + b, 0);
    const final: RoundProgress = { ...p, sections, pendingBytes: pending, expectedDowntime: pending / this.options.bandwidth };
    this.options.onProgress?.(final);
    return final;
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
    for (const s of this.sections) s.dispose();
  }
}
