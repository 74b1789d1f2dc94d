// A guest workload on the virtual clock, deterministic from a seed (RAM writes, and disk writes when it has a
// disk), and `simulate()`: a MigrationSource run against it, with (option `verify`) the produced stream decoded
// with materialised RAM (and disk) and compared with the source's at the pause. Browser-safe (byte comparison, no node: imports).
import { VmstreamError } from "../io/errors.js";
import { createKernels } from "../kernels/index.js";
import type { BackendChoice, Kernels } from "../kernels/types.js";
import { BLOCK_CHUNK } from "../sections/block/format.js";
import type { BlockResult } from "../sections/block/handler.js";
import type { RamBlockData } from "../sections/ram/format.js";
import { decodeBytes, ramOf } from "../sections/stream.js";
import { type MigrationOutcome, MigrationSource, type RoundProgress } from "./source.js";

export interface WorkloadOptions {
  /** Guest RAM bytes (a multiple of the page size). */
  readonly ramBytes: number;
  readonly pageSize?: number;
  /** Pages the guest writes to at all (default: all of RAM). */
  readonly workingSetPages?: number;
  /** Pages of the hot set inside the working set (default: a tenth of it, at least 1). */
  readonly hotPages?: number;
  /** Page writes per virtual second. */
  readonly dirtyRate: number;
  /** Fraction of writes that land in the hot set (the rest: anywhere in the working set). Default 0.9. */
  readonly locality?: number;
  /** Bytes each write changes: a few words (XBZRLE-friendly, default 16) up to a whole page. */
  readonly writeBytes?: number;
  /** Fraction of pages that start all zero (default 0.5). */
  readonly zeroFraction?: number;
  readonly seed?: number;
}

/** sfc32: a small deterministic generator (uint32 outputs). */
function sfc32(seed: number): () => number {
  let a = 0x9e3779b9,
    b = 0x243f6a88,
    c = 0xb7e15162,
    d = seed >>> 0;
  const next = () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  for (let i = 0; i < 16; i++) next();
  return next;
}

/**
 * What the RAM and disk workloads share: a seeded generator, writes due at a rate over virtual time (the fraction
 * carried to the next run) and a dirty log of `units` bits.
 */
abstract class Workload {
  private carry = 0;
  private log: Uint8Array;
  /** Writes done so far. */
  writes = 0;
  paused = false;

  protected constructor(
    protected readonly rnd: () => number,
    units: number,
  ) {
    this.log = new Uint8Array(Math.ceil(units / 8));
  }

  /** Whole writes due after `seconds` at `rate` per second; none while paused. */
  protected due(rate: number, seconds: number): number {
    if (this.paused || seconds <= 0) return 0;
    this.carry += rate * seconds;
    const n = Math.floor(this.carry);
    this.carry -= n;
    return n;
  }

  protected markDirty(unit: number): void {
    this.log[unit >> 3]! |= 1 << (unit & 7);
  }

  /** Units written since the previous call (bit i = unit i). */
  takeDirtyLog(): Uint8Array {
    const l = this.log;
    this.log = new Uint8Array(l.length);
    return l;
  }
}

/**
 * The guest: RAM at `ptr` in the kernels' memory, written at `dirtyRate` pages per virtual second inside a working
 * set (a contiguous run of pages at a seeded place) with a hot set at its start. Keeps its own dirty log.
 */
export class GuestWorkload extends Workload {
  readonly pageSize: number;
  readonly pages: number;
  readonly workingSetStart: number;
  readonly workingSetPages: number;
  readonly hotPages: number;
  readonly writeBytes: number;
  readonly locality: number;

  constructor(
    readonly kernels: Kernels,
    readonly ptr: number,
    readonly options: WorkloadOptions,
  ) {
    const ps = options.pageSize ?? 4096;
    if (options.ramBytes <= 0 || options.ramBytes % ps !== 0) throw new VmstreamError("RANGE", "RAM size must be a positive multiple of the page size");
    super(sfc32(options.seed ?? 1), options.ramBytes / ps);
    this.pageSize = ps;
    this.pages = options.ramBytes / ps;
    this.workingSetPages = Math.max(1, Math.min(this.pages, Math.floor(options.workingSetPages ?? this.pages)));
    this.hotPages = Math.max(1, Math.min(this.workingSetPages, Math.floor(options.hotPages ?? this.workingSetPages / 10)));
    this.writeBytes = Math.max(4, Math.min(ps, Math.ceil((options.writeBytes ?? 16) / 4) * 4));
    this.locality = Math.max(0, Math.min(1, options.locality ?? 0.9));
    if (!(options.dirtyRate >= 0)) throw new VmstreamError("RANGE", "dirty rate must be >= 0 pages/s");
    this.workingSetStart = this.rnd() % (this.pages - this.workingSetPages + 1);
  }

  /** Fill RAM: `zeroFraction` of the pages zero, the others random words. */
  init(): void {
    const k = this.kernels;
    const ps = this.pageSize;
    const zf = this.options.zeroFraction ?? 0.5;
    k.u8.fill(0, this.ptr, this.ptr + this.pages * ps);
    const w = new Uint32Array(k.memory.buffer, this.ptr, (this.pages * ps) / 4);
    const threshold = zf * 2 ** 32;
    for (let p = 0; p < this.pages; p++) {
      if (this.rnd() < threshold) continue;
      const base = (p * ps) / 4;
      for (let i = 0; i < ps / 4; i++) w[base + i] = this.rnd();
    }
  }

  /** The guest runs for `seconds` of virtual time. */
  run(seconds: number): void {
    const n = this.due(this.options.dirtyRate, seconds);
    if (n === 0) return;
    const ps = this.pageSize;
    const w = new Uint32Array(this.kernels.memory.buffer, this.ptr, (this.pages * ps) / 4);
    const hotThreshold = this.locality * 2 ** 32;
    const words = this.writeBytes / 4;
    for (let i = 0; i < n; i++) {
      const hot = this.rnd() < hotThreshold;
      const page = this.workingSetStart + (this.rnd() % (hot ? this.hotPages : this.workingSetPages));
      const slots = ps / 4 - words + 1;
      const at = (page * ps) / 4 + (this.rnd() % slots);
      for (let j = 0; j < words; j++) w[at + j] = this.rnd();
      this.markDirty(page);
      this.writes++;
    }
  }
}

/**
 * A disk written by the guest: `writeRate` writes of `writeBytes` (default 4096, sector-aligned) per virtual second
 * at random sectors; it keeps a dirty log of 1 MiB chunks. Deterministic from the seed.
 */
export class DiskWorkload extends Workload {
  readonly data: Uint8Array;
  readonly chunks: number;

  constructor(
    readonly bytes: number,
    readonly writeRate: number,
    seed: number,
    readonly writeBytes = 4096,
  ) {
    if (bytes <= 0 || bytes % 512 !== 0) throw new VmstreamError("RANGE", "disk size must be a positive multiple of 512 bytes");
    if (!(writeRate >= 0)) throw new VmstreamError("RANGE", "disk write rate must be >= 0 writes/s");
    super(sfc32((seed ^ 0x5bd1e995) >>> 0), Math.ceil(bytes / BLOCK_CHUNK));
    this.data = new Uint8Array(bytes);
    this.chunks = Math.ceil(bytes / BLOCK_CHUNK);
  }

  /** `zeroFraction` of the 1 MiB chunks all zero, the others random words. */
  init(zeroFraction: number): void {
    const w = new Uint32Array(this.data.buffer, 0, this.bytes >> 2);
    const threshold = zeroFraction * 2 ** 32;
    for (let c = 0; c < this.chunks; c++) {
      if (this.rnd() < threshold) continue;
      const end = Math.min(w.length, ((c + 1) * BLOCK_CHUNK) >> 2);
      for (let i = (c * BLOCK_CHUNK) >> 2; i < end; i++) w[i] = this.rnd();
    }
  }

  run(seconds: number): void {
    const n = this.due(this.writeRate, seconds);
    const sectors = this.bytes / 512;
    const len = Math.min(this.bytes, Math.max(512, Math.floor(this.writeBytes / 512) * 512));
    for (let i = 0; i < n; i++) {
      const at = (this.rnd() % (sectors - len / 512 + 1)) * 512;
      const w = new DataView(this.data.buffer, at, len);
      for (let j = 0; j < len; j += 4) w.setUint32(j, this.rnd());
      for (let c = Math.floor(at / BLOCK_CHUNK); c <= Math.floor((at + len - 1) / BLOCK_CHUNK); c++) this.markDirty(c);
      this.writes++;
    }
  }
}

export interface SimulateOptions extends Omit<WorkloadOptions, "ramBytes" | "workingSetPages"> {
  /** Guest RAM in MiB (default 64). */
  readonly ramMiB?: number;
  /** Working set in MiB (default: all of RAM). */
  readonly workingSetMiB?: number;
  /** Bytes per virtual second. */
  readonly bandwidth: number;
  /** Seconds. */
  readonly downtimeTarget: number;
  readonly maxRounds: number;
  /** Virtual seconds per round (default 0.1). */
  readonly roundTime?: number;
  readonly xbzrleCacheBytes?: number;
  /** Give the source the workload's dirty log instead of letting it scan against a shadow copy. */
  readonly dirtyLog?: boolean;
  readonly estimate?: "page" | "measured";
  /** Call forceSwitch() after this many rounds. */
  readonly forceAfterRounds?: number;
  /** Decode the stream (materialised RAM) and compare the destination RAM with the source's at the pause. */
  readonly verify?: boolean;
  /** Return the stream bytes. */
  readonly keepStream?: boolean;
  readonly kernels?: Kernels;
  readonly backend?: BackendChoice;
  readonly onProgress?: (p: RoundProgress) => void;
  /** A disk of this many MiB migrated by the block section (device "drive0"). */
  readonly diskMiB?: number;
  /** Disk writes (4 KiB at a random sector) per virtual second. Default 0. */
  readonly diskWriteRate?: number;
  /** All-zero disk chunks as ZERO_BLOCK records. */
  readonly zeroBlocks?: boolean;
}

export interface SimulateResult extends MigrationOutcome {
  readonly ramBytes: number;
  /** Guest page writes during the migration. */
  readonly guestWrites: number;
  /** Set with `verify`: the destination RAM (and disk) equals the source's at the pause. */
  readonly verified?: boolean;
  /** With `verify`, when it failed: the first differing page. */
  readonly firstMismatchPage?: number;
  /** With `verify`: record totals of the decoded stream. */
  readonly records?: { zero: number; normal: number; xbzrle: number };
  /** With a disk: its bytes, the guest's disk writes, and (with `verify`) whether the destination disk equals it. */
  readonly disk?: { readonly bytes: number; readonly writes: number; readonly verified?: boolean; readonly dataChunks?: number; readonly zeroChunks?: number };
  readonly stream?: Uint8Array;
}

function equalBytes(a: Uint8Array, b: Uint8Array, pageSize: number): number {
  // returns -1 when equal, else the first differing page
  if (a.length !== b.length) return 0;
  const aligned = a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0;
  if (aligned) {
    const x = new Uint32Array(a.buffer, a.byteOffset, a.length >> 2);
    const y = new Uint32Array(b.buffer, b.byteOffset, b.length >> 2);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return Math.floor((i * 4) / pageSize);
    for (let i = x.length * 4; i < a.length; i++) if (a[i] !== b[i]) return Math.floor(i / pageSize);
    return -1;
  }
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return Math.floor(i / pageSize);
  return -1;
}

/** Run a migration of a simulated guest on the virtual clock. */
export function simulate(options: SimulateOptions): SimulateResult {
  const ps = options.pageSize ?? 4096;
  const ramBytes = Math.round(((options.ramMiB ?? 64) * 1048576) / ps) * ps;
  const k = options.kernels ?? createKernels({ backend: options.backend ?? "auto" });
  const ptr = k.alloc(ramBytes, 4096);
  const guest = new GuestWorkload(k, ptr, {
    ...options,
    ramBytes,
    pageSize: ps,
    ...(options.workingSetMiB !== undefined ? { workingSetPages: Math.floor((options.workingSetMiB * 1048576) / ps) } : {}),
  });
  guest.init();
  const disk = options.diskMiB ? new DiskWorkload(Math.round(options.diskMiB * 2048) * 512, options.diskWriteRate ?? 0, options.seed ?? 1) : undefined;
  disk?.init(options.zeroFraction ?? 0.5);
  const block: RamBlockData = { name: "pc.ram", ptr, length: ramBytes };
  const chunks: Uint8Array[] = [];
  const keep = options.verify === true || options.keepStream === true;
  let source: MigrationSource | undefined;
  const onProgress = (p: RoundProgress) => {
    options.onProgress?.(p);
    if (p.phase === "iterate" && options.forceAfterRounds !== undefined && p.round >= options.forceAfterRounds) source!.forceSwitch();
  };
  source = new MigrationSource(
    {
      kernels: k,
      blocks: [block],
      pageSize: ps,
      bandwidth: options.bandwidth,
      downtimeTarget: options.downtimeTarget,
      maxRounds: options.maxRounds,
      ...(options.roundTime !== undefined ? { roundTime: options.roundTime } : {}),
      ...(options.xbzrleCacheBytes ? { xbzrleCacheBytes: options.xbzrleCacheBytes } : {}),
      ...(options.dirtyLog ? { dirtyLog: () => guest.takeDirtyLog() } : {}),
      ...(options.estimate ? { estimate: options.estimate } : {}),
      onProgress,
      pause: () => {
        guest.paused = true;
        if (disk) disk.paused = true;
      },
      ...(disk ? { blockDevices: [{ name: "drive0", data: disk.data, ...(options.dirtyLog ? { dirtyLog: () => disk.takeDirtyLog() } : {}) }] } : {}),
      ...(options.zeroBlocks ? { zeroBlocks: true } : {}),
    },
    (c) => {
      if (keep) chunks.push(c.slice());
    },
  );
  let outcome: MigrationOutcome;
  try {
    outcome = source.run((dt) => {
      guest.run(dt);
      disk?.run(dt);
    });
  } finally {
    source.dispose();
  }
  let stream: Uint8Array | undefined;
  if (keep) {
    stream = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
    let o = 0;
    for (const c of chunks) {
      stream.set(c, o);
      o += c.length;
    }
  }
  let verified: boolean | undefined;
  let firstMismatchPage: number | undefined;
  let records: SimulateResult["records"];
  let diskResult: SimulateResult["disk"] = disk ? { bytes: disk.bytes, writes: disk.writes } : undefined;
  if (options.verify) {
    const r = decodeBytes(stream!, { materialize: { ram: true, block: disk !== undefined } });
    try {
      const ram = ramOf(r);
      const b = ram?.blocks[0];
      const data = b?.data;
      if (!ram || !b || !data || ram.blocks.length !== 1) {
        verified = false;
      } else {
        const src = k.u8.subarray(ptr, ptr + ramBytes);
        const at = equalBytes(data, src, ps);
        verified = at < 0;
        if (at >= 0) firstMismatchPage = at;
      }
      if (ram) records = { zero: ram.records.zero, normal: ram.records.normal, xbzrle: ram.records.xbzrle };
      if (disk) {
        const dev = (r.live.block as BlockResult | undefined)?.devices.find((d) => d.name === "drive0");
        const img = dev?.image;
        const ok = img !== undefined && img.length >= disk.bytes && equalBytes(img.subarray(0, disk.bytes), disk.data, BLOCK_CHUNK) < 0;
        diskResult = { ...diskResult!, verified: ok, ...(dev ? { dataChunks: dev.dataChunks, zeroChunks: dev.zeroChunks } : {}) };
        if (!ok) verified = false;
      }
    } finally {
      r.dispose();
    }
  }
  if (options.kernels) k.free(ptr);
  return {
    ...outcome,
    ramBytes,
    guestWrites: guest.writes,
    ...(verified !== undefined ? { verified } : {}),
    ...(firstMismatchPage !== undefined ? { firstMismatchPage } : {}),
    ...(records ? { records } : {}),
    ...(diskResult ? { disk: diskResult } : {}),
    ...(stream && options.keepStream ? { stream } : {}),
  };
}
