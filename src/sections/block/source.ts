// The "block" iterative section of the source engine (block migration, wire-format §7): a bulk pass over every
// disk in 1 MiB chunks with PROGRESS records, then the changed chunks (host log or scan against a shadow copy),
// zero blocks as headers only. Disks that are not a whole number of MiB and other details:
// docs/live-migration.md, "block". Browser-safe.
import { VmstreamError } from "../../io/errors.js";
import type { ByteWriter } from "../../io/writer.js";
import type { Kernels } from "../../kernels/types.js";
import {
  allZero,
  countBits,
  type DirtySource,
  type HostBytes,
  type IterativeSection,
  orLog,
  rangesDiffer,
  type SectionCounts,
  type SectionPass,
  type SectionSync,
  viewOf,
} from "../iterative.js";
import { BLOCK_CHUNK } from "./format.js";
import { BlockWriter } from "./writer.js";

const SECTOR = 512;
const SECTORS_PER_CHUNK = BLOCK_CHUNK / SECTOR;
const HEADER = 8;
const EOS_BYTES = 8;
const PROGRESS_BYTES = 8;
const utf8 = new TextEncoder();
/** The kernels' scans work on pages of at most 64 KiB. */
const KPAGE = 65536;
const KPAGES_PER_CHUNK = BLOCK_CHUNK / KPAGE;

/** A disk migrated by the block section. */
export interface BlockDeviceSource {
  /** The destination's BlockBackend name (QEMU: the drive id, e.g. "ide0-hd0" or "drive0"); 1..255 bytes. */
  readonly name: string;
  /** The disk's bytes: a whole number of 512-byte sectors. */
  readonly data: HostBytes;
  /**
   * Host dirty log: a bitmap (bit i = 1 MiB chunk i) of the chunks written since the previous call, or undefined
   * for none. Without it the section keeps a shadow copy and scans.
   */
  readonly dirtyLog?: () => Uint8Array | undefined;
}

export interface BlockSectionOptions {
  readonly kernels: Kernels;
  readonly devices: readonly BlockDeviceSource[];
  readonly sectionId: number;
  /** Send all-zero chunks as ZERO_BLOCK records (QEMU's zero-blocks capability; the destination needs nothing). */
  readonly zeroBlocks?: boolean;
  /** Pending-bytes estimate: dirty chunks × a data record (default) or × the record bytes per chunk measured so far. */
  readonly estimate?: "page" | "measured";
}

interface Dev {
  readonly src: BlockDeviceSource;
  readonly name: Uint8Array;
  readonly length: number;
  readonly chunks: number;
  /** Sectors of the devices before this one (for the PROGRESS percentage). */
  readonly sectorBase: number;
  /** Pending chunks (bit i = chunk i). */
  readonly pending: Uint8Array;
  readonly inKernels: boolean;
  /** Scan mode: what the destination holds for every clean chunk (kernels' memory when the device is there). */
  shadowPtr: number;
  shadow: Uint8Array | undefined;
  /** Scan mode, kernels: the changedPages bitmap. */
  scratch: number;
}

export class BlockSection implements IterativeSection {
  readonly kind = "block";
  readonly idstr = "block";
  readonly instanceId = 0;
  readonly version = 1;
  readonly sectionId: number;
  readonly unitBytes = BLOCK_CHUNK;
  readonly partOverhead = EOS_BYTES;
  readonly maxRecordBytes: number;
  private readonly k: Kernels;
  private readonly bw: BlockWriter;
  private readonly devs: Dev[] = [];
  private readonly totalSectors: number;
  private readonly zeroBit: number;
  private cursorDev = 0;
  private cursorChunk = 0;
  private passCount = 0;
  private sentSinceWrap = false;
  private lastProgress = -1;
  private sentChunks = 0;
  private sentRecordBytes = 0;

  constructor(
    readonly options: BlockSectionOptions,
    w: ByteWriter,
  ) {
    const k = (this.k = options.kernels);
    this.sectionId = options.sectionId;
    this.bw = new BlockWriter(w);
    if (options.devices.length === 0) throw new VmstreamError("RANGE", "block migration without devices");
    let sectors = 0;
    let maxName = 0;
    const names = new Set<string>();
    for (const src of options.devices) {
      const name = utf8.encode(src.name);
      if (name.length < 1 || name.length > 255) throw new VmstreamError("RANGE", "a block device name must be 1..255 bytes", { detail: src.name });
      if (names.has(src.name)) throw new VmstreamError("RANGE", "two block devices with the same name", { detail: src.name });
      names.add(src.name);
      const length = src.data.length;
      if (!(length > 0) || length % SECTOR !== 0)
        throw new VmstreamError("RANGE", "a block device must be a positive whole number of 512-byte sectors", { detail: `${src.name}: ${length} bytes` });
      const chunks = Math.ceil(length / BLOCK_CHUNK);
      const dev: Dev = {
        src,
        name,
        length,
        chunks,
        sectorBase: sectors,
        pending: new Uint8Array(Math.ceil(chunks / 8)),
        inKernels: !(src.data instanceof Uint8Array),
        shadowPtr: 0,
        shadow: undefined,
        scratch: 0,
      };
      if (dev.inKernels) {
        const d = src.data as { ptr: number; length: number };
        if (d.ptr < 0 || d.ptr + length > k.u8.length)
          throw new VmstreamError("RANGE", "a block device's bytes are outside the kernels' memory", { detail: src.name });
      }
      if (!src.dirtyLog) {
        if (dev.inKernels) {
          dev.shadowPtr = k.alloc(length, 4096);
          dev.scratch = k.alloc(Math.ceil(length / KPAGE / 8) + 8, 8);
          const d = src.data as { ptr: number };
          k.u8.copyWithin(dev.shadowPtr, d.ptr, d.ptr + length);
        } else {
          dev.shadow = (src.data as Uint8Array).slice();
        }
      }
      sectors += length / SECTOR;
      maxName = Math.max(maxName, name.length);
      this.devs.push(dev);
    }
    this.totalSectors = sectors;
    this.zeroBit = options.zeroBlocks && this.devs.some((d) => d.inKernels) ? k.alloc(KPAGES_PER_CHUNK / 8 + 8, 8) : 0;
    this.maxRecordBytes = PROGRESS_BYTES + HEADER + 1 + maxName + BLOCK_CHUNK;
  }

  get passes(): number {
    return this.passCount;
  }

  /** The bulk pass is over. */
  get bulkCompleted(): boolean {
    return this.passCount > 0;
  }

  dirtyUnits(): number {
    let n = 0;
    for (const d of this.devs) n += countBits(d.pending, d.chunks);
    return n;
  }

  pendingBytes(): number {
    let bytes = 0;
    const measured = this.options.estimate === "measured" && this.sentChunks > 0 ? this.sentRecordBytes / this.sentChunks : 0;
    for (const d of this.devs) {
      const n = countBits(d.pending, d.chunks);
      bytes += n * (measured || HEADER + 1 + d.name.length + BLOCK_CHUNK);
    }
    return bytes;
  }

  setup(): void {
    this.bw.eos();
    for (const d of this.devs) {
      d.pending.fill(0xff);
      if (d.chunks & 7) d.pending[d.pending.length - 1] = (1 << (d.chunks & 7)) - 1;
    }
  }

  private isZero(d: Dev, view: Uint8Array, chunk: number): boolean {
    const off = chunk * BLOCK_CHUNK;
    const end = Math.min(d.length, off + BLOCK_CHUNK);
    if (d.inKernels && end - off === BLOCK_CHUNK) {
      return this.k.zeroPages((d.src.data as { ptr: number }).ptr + off, KPAGES_PER_CHUNK, this.zeroBit, KPAGE) === KPAGES_PER_CHUNK;
    }
    return allZero(view.subarray(off, end));
  }

  /** One chunk record (and, in the bulk pass, the PROGRESS record before it when the percentage changed). */
  private sendChunk(d: Dev, chunk: number, counts: { chunks: number; zeroChunks: number; progressRecords: number }): number {
    let bytes = 0;
    if (this.passCount === 0) {
      const percent = Math.floor(((d.sectorBase + chunk * SECTORS_PER_CHUNK) * 100) / this.totalSectors);
      if (percent !== this.lastProgress) {
        this.bw.progress(percent);
        this.lastProgress = percent;
        counts.progressRecords++;
        bytes += PROGRESS_BYTES;
      }
    }
    const view = viewOf(this.k, d.src.data);
    const off = chunk * BLOCK_CHUNK;
    const data = view.subarray(off, Math.min(d.length, off + BLOCK_CHUNK));
    const sector = BigInt(chunk * SECTORS_PER_CHUNK);
    let rec = HEADER + 1 + d.name.length;
    if (this.options.zeroBlocks && this.isZero(d, view, chunk)) {
      this.bw.chunk(d.name, sector, undefined);
      counts.zeroChunks++;
    } else {
      this.bw.chunk(d.name, sector, data);
      counts.chunks++;
      rec += BLOCK_CHUNK;
    }
    d.pending[chunk >> 3]! &= ~(1 << (chunk & 7));
    if (d.shadow) d.shadow.set(data, off);
    else if (d.shadowPtr) this.k.u8.set(data, d.shadowPtr + off);
    this.sentChunks++;
    this.sentRecordBytes += rec;
    return bytes + rec;
  }

  /** Pending chunks from the cursor on until `budget` bytes are used (at most one chunk more) or none is left. */
  private send(budget: number): SectionPass {
    const counts = { chunks: 0, zeroChunks: 0, progressRecords: 0 };
    let remaining = budget;
    let idle = 0; // devices visited in a row with nothing to send
    while (remaining > 0 && idle <= this.devs.length) {
      const d = this.devs[this.cursorDev]!;
      let c = this.cursorChunk;
      let sent = false;
      while (c < d.chunks && remaining > 0) {
        const byte = d.pending[c >> 3]!;
        if (byte === 0 && (c & 7) === 0) {
          c += 8;
          continue;
        }
        if (byte & (1 << (c & 7))) {
          remaining -= this.sendChunk(d, c, counts);
          sent = true;
          this.sentSinceWrap = true;
        }
        c++;
      }
      this.cursorChunk = Math.min(c, d.chunks);
      if (this.cursorChunk >= d.chunks) {
        if (!sent) idle++;
        else idle = 0;
        this.cursorChunk = 0;
        this.cursorDev++;
        if (this.cursorDev >= this.devs.length) {
          this.cursorDev = 0;
          if (this.sentSinceWrap) {
            this.passCount++;
            this.sentSinceWrap = false;
          }
        }
      }
    }
    return {
      done: this.dirtyUnits() === 0,
      counts: { kind: "block", chunks: counts.chunks, zeroChunks: counts.zeroChunks, progressRecords: counts.progressRecords, progress: this.lastProgress },
    };
  }

  iterate(budget: number): SectionPass {
    const r = this.send(budget - EOS_BYTES);
    this.bw.eos();
    return r;
  }

  sync(): SectionSync {
    let found = 0;
    let source: DirtySource = "none";
    const k = this.k;
    for (const d of this.devs) {
      if (d.src.dirtyLog) {
        source = "log";
        const log = d.src.dirtyLog();
        if (log) found += orLog(d.pending, log, d.chunks);
        continue;
      }
      source = source === "log" ? "log" : "scan";
      const view = viewOf(k, d.src.data);
      const changed = new Uint8Array(d.chunks);
      let tail = 0; // bytes [0, tail) compared by the kernel
      if (d.inKernels) {
        // the kernels' pages are at most 64 KiB: 16 per chunk
        const pages = Math.floor(d.length / KPAGE);
        if (pages > 0) {
          const bytes = Math.ceil(pages / 8);
          k.u8.fill(0, d.scratch, d.scratch + bytes);
          k.changedPages((d.src.data as { ptr: number }).ptr, d.shadowPtr, pages, d.scratch, true, KPAGE);
          const u8 = k.u8;
          for (let i = 0; i < bytes; i++) if (u8[d.scratch + i]) changed[Math.floor((i * 8) / KPAGES_PER_CHUNK)] = 1;
        }
        tail = pages * KPAGE;
      }
      const shadow = d.shadow ?? k.u8.subarray(d.shadowPtr, d.shadowPtr + d.length);
      for (let c = Math.floor(tail / BLOCK_CHUNK); c < d.chunks; c++) {
        const off = Math.max(tail, c * BLOCK_CHUNK);
        const end = Math.min(d.length, (c + 1) * BLOCK_CHUNK);
        if (off >= end) continue;
        const now = view.subarray(off, end);
        const was = shadow.subarray(off, end);
        if (rangesDiffer(now, was)) {
          was.set(now);
          changed[c] = 1;
        }
      }
      for (let c = 0; c < d.chunks; c++) {
        if (!changed[c]) continue;
        found++;
        d.pending[c >> 3]! |= 1 << (c & 7);
      }
    }
    return { dirtied: found, source };
  }

  complete(): SectionPass {
    const r = this.send(Infinity);
    this.bw.progress(100);
    this.lastProgress = 100;
    this.bw.eos();
    const c = r.counts as Extract<SectionCounts, { kind: "block" }>;
    return { done: r.done, counts: { ...c, progressRecords: c.progressRecords + 1, progress: 100 } };
  }

  dispose(): void {
    const k = this.k;
    for (const d of this.devs) {
      if (d.shadowPtr) k.free(d.shadowPtr);
      if (d.scratch) k.free(d.scratch);
      d.shadowPtr = 0;
      d.scratch = 0;
      d.shadow = undefined;
    }
    if (this.zeroBit) k.free(this.zeroBit);
  }
}
