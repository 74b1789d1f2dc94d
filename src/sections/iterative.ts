// The contract between the source engine (src/migration/source.ts) and its iterative ("live") sections: ram,
// block and spapr/htab (wire-format §2.7); helpers they share (bitmaps, host or kernel bytes, counts). The calls
// and what each writes: docs/live-migration.md, "The iterative-section contract". Browser-safe.
import { VmstreamError } from "../io/errors.js";
import type { Kernels } from "../kernels/types.js";

/** Where the changed units came from at a sync. */
export type DirtySource = "log" | "scan" | "none";

/** Pages by record kind. */
export interface PageCounts {
  zero: number;
  normal: number;
  xbzrle: number;
  /** XBZRLE cache hits with nothing to send (no record). */
  unchanged: number;
}

/** What one or more PART / END payloads of a section carried, by section kind. */
export type SectionCounts =
  | { readonly kind: "ram"; readonly pages: PageCounts }
  | {
      readonly kind: "block";
      /** DEVICE_BLOCK records with data. */
      readonly chunks: number;
      /** DEVICE_BLOCK | ZERO_BLOCK records (zero-blocks). */
      readonly zeroChunks: number;
      /** PROGRESS records. */
      readonly progressRecords: number;
      /** The last PROGRESS percentage written so far, in any round (-1 before the first). */
      readonly progress: number;
    }
  | {
      readonly kind: "htab";
      /** HPTEs sent (n_valid totals). */
      readonly valid: number;
      /** HPTEs invalidated (n_invalid totals). */
      readonly invalid: number;
      /** Chunk headers (index, n_valid, n_invalid). */
      readonly chunks: number;
    };

export interface SectionPass {
  /** Nothing of this section is pending after the call (QEMU: the handler finished its stage). */
  readonly done: boolean;
  readonly counts: SectionCounts;
}

export interface SectionSync {
  /** Units (pages, chunks, HPTEs) newly found changed. */
  readonly dirtied: number;
  readonly source: DirtySource;
}

/** One section's share of a round, in a progress event. */
export type SectionProgress = SectionCounts & {
  readonly idstr: string;
  readonly sectionId: number;
  /** Stream bytes of this section's PART / END sections in the round (framing included); 0 if it got none. */
  readonly bytes: number;
  /** PART / END sections written in the round. */
  readonly sections: number;
  /** Complete passes over the section's data so far (the first one: the bulk pass / the first HTAB pass). */
  readonly passes: number;
  /** Units newly dirtied (from the sync after the round). */
  readonly dirtied: number;
  /** Units pending after the sync. */
  readonly dirtyUnits: number;
  /** Bytes of one unit: the page size, 1 MiB block chunks, 16-byte HPTEs. */
  readonly unitBytes: number;
  /** Units dirtied per second during the round. */
  readonly dirtyRate: number;
  /** The section's estimate of bytes still to send. */
  readonly pendingBytes: number;
  readonly dirtySource: DirtySource;
};

/** An iterative section driven by MigrationSource. */
export interface IterativeSection {
  readonly kind: SectionCounts["kind"];
  readonly idstr: string;
  readonly instanceId: number;
  /** Version in the START header. */
  readonly version: number;
  readonly sectionId: number;
  /** Bytes of one unit of dirty tracking. */
  readonly unitBytes: number;
  /** Payload bytes of a PART that carries nothing (EOS; htab header + end marker): iterate() keeps them out of its budget. */
  readonly partOverhead: number;
  /** The largest single record: a round may go over its budget by this much (once). */
  readonly maxRecordBytes: number;
  /** Complete passes so far. */
  readonly passes: number;
  setup(): void;
  iterate(budget: number): SectionPass;
  sync(): SectionSync;
  /** Units pending. */
  dirtyUnits(): number;
  pendingBytes(): number;
  complete(): SectionPass;
  dispose(): void;
}

/** Bytes in the kernels' memory (the engine's `kernels`). */
export interface KernelBytes {
  readonly ptr: number;
  readonly length: number;
}

/** Device / table bytes: a host array, or a region of the kernels' memory (scanned by the kernels in place). */
export type HostBytes = Uint8Array | KernelBytes;

/** The current view of `b` (kernel views are made again on every call: the memory may have grown). */
export function viewOf(k: Kernels, b: HostBytes): Uint8Array {
  return b instanceof Uint8Array ? b : k.u8.subarray(b.ptr, b.ptr + b.length);
}

export function popcount8(b: number): number {
  b = b - ((b >> 1) & 0x55);
  b = (b & 0x33) + ((b >> 2) & 0x33);
  return (b + (b >> 4)) & 0x0f;
}

/** Set bits in a bitmap of `bits` bits. */
export function countBits(map: Uint8Array, bits: number): number {
  let n = 0;
  const full = bits >> 3;
  for (let i = 0; i < full; i++) {
    const v = map[i]!;
    if (v) n += popcount8(v);
  }
  if (bits & 7) n += popcount8(map[full]! & ((1 << (bits & 7)) - 1));
  return n;
}

/** OR a host log (bit i = unit i, may be shorter or longer) into `map`; returns the bits the log had set (within `bits`). */
export function orLog(map: Uint8Array, log: Uint8Array, bits: number): number {
  const n = Math.min(log.length, Math.ceil(bits / 8));
  let found = 0;
  for (let i = 0; i < n; i++) {
    let v = log[i]!;
    if (!v) continue;
    if (i === bits >> 3 && bits & 7) v &= (1 << (bits & 7)) - 1;
    found += popcount8(v);
    map[i]! |= v;
  }
  return found;
}

/** Do two equal-length ranges differ? Word compares when both are 4-aligned. */
export function rangesDiffer(a: Uint8Array, b: Uint8Array): boolean {
  const n = a.length;
  let i = 0;
  if (a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0) {
    const x = new Uint32Array(a.buffer, a.byteOffset, n >> 2);
    const y = new Uint32Array(b.buffer, b.byteOffset, n >> 2);
    for (let j = 0; j < x.length; j++) if (x[j] !== y[j]) return true;
    i = x.length * 4;
  }
  for (; i < n; i++) if (a[i] !== b[i]) return true;
  return false;
}

/** Is the range all zero? */
export function allZero(a: Uint8Array): boolean {
  const n = a.length;
  let i = 0;
  if (a.byteOffset % 4 === 0) {
    const x = new Uint32Array(a.buffer, a.byteOffset, n >> 2);
    for (let j = 0; j < x.length; j++) if (x[j] !== 0) return false;
    i = x.length * 4;
  }
  for (; i < n; i++) if (a[i] !== 0) return false;
  return true;
}

/** Sum two passes' counts of the same section (several iterate() calls in one round). */
export function addCounts(a: SectionCounts, b: SectionCounts): SectionCounts {
  if (a.kind === "ram" && b.kind === "ram") {
    const x = a.pages,
      y = b.pages;
    return { kind: "ram", pages: { zero: x.zero + y.zero, normal: x.normal + y.normal, xbzrle: x.xbzrle + y.xbzrle, unchanged: x.unchanged + y.unchanged } };
  }
  if (a.kind === "block" && b.kind === "block") {
    return {
      kind: "block",
      chunks: a.chunks + b.chunks,
      zeroChunks: a.zeroChunks + b.zeroChunks,
      progressRecords: a.progressRecords + b.progressRecords,
      progress: b.progress,
    };
  }
  if (a.kind === "htab" && b.kind === "htab") return { kind: "htab", valid: a.valid + b.valid, invalid: a.invalid + b.invalid, chunks: a.chunks + b.chunks };
  throw new VmstreamError("STATE", "counts of different section kinds", { detail: `${a.kind} + ${b.kind}` });
}

/** Counts of a round in which the section got no PART (`like` carries the block's last PROGRESS percentage). */
export function noCounts(kind: SectionCounts["kind"], like?: SectionCounts): SectionCounts {
  if (kind === "ram") return { kind, pages: { zero: 0, normal: 0, xbzrle: 0, unchanged: 0 } };
  if (kind === "block") return { kind, chunks: 0, zeroChunks: 0, progressRecords: 0, progress: like?.kind === "block" ? like.progress : -1 };
  return { kind, valid: 0, invalid: 0, chunks: 0 };
}
