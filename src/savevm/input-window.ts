// The decoder's input window in the kernels' memory: bytes arrive once (copied, or read straight into it) and
// RAM records are decoded there in place. Bytes [rd, wr) of [win, win + cap) are unparsed; `offset` is the
// stream offset of byte rd. Browser-safe.

import { VmstreamError } from "../io/errors.js";
import { ByteReader } from "../io/reader.js";
import type { Kernels } from "../kernels/types.js";
import { DEFAULT_VISIT_BUDGET, type VisitBudget, WireInputVisitor } from "../visitor/wire.js";
import { loadState } from "../vmstate/engine.js";
import type { State, VMStateDescription } from "../vmstate/types.js";
import { PEEK_LOOKAHEAD } from "./constants.js";

const INITIAL_WINDOW = 1 << 20;

/** The unparsed bytes at hand for one step: `n` of them, and whether more can follow. */
export interface AtHand {
  /** A reader over bytes [from, to) (to: default n; sticky: errors latch instead of throwing). */
  reader(from: number, to?: number, sticky?: boolean): ByteReader;
  byteAt(i: number): number;
  readonly n: number;
  /** No byte will follow. */
  readonly hard: boolean;
  /** Absolute offset of byte 0. */
  readonly offset: number;
}

export type Walk =
  | { readonly kind: "need"; readonly end: number }
  | { readonly kind: "fail"; readonly error: VmstreamError }
  /** Walked without an error; only `conclusive` outcomes can be trusted (no subsection peek went past the bytes at hand). `visits`: what it cost. */
  | { readonly kind: "done"; readonly state: State; readonly end: number; readonly conclusive: boolean; readonly visits: number };

/**
 * Walk `desc` (QEMU's wire format) over the bytes at hand from `from`. An outcome is conclusive when the input
 * has ended, or no subsection peek reached past the bytes at hand (PEEK_LOOKAHEAD bytes after the walk always
 * suffice); a read past them is "need" until the input ends.
 */
export function walkAtHand(
  desc: VMStateDescription,
  input: AtHand,
  from: number,
  version: number,
  path: string,
  budget: VisitBudget = DEFAULT_VISIT_BUDGET,
): Walk {
  const r = input.reader(from, input.n, true);
  const v = new WireInputVisitor(r, budget);
  const state: State = {};
  try {
    loadState(v, desc, state, version, path);
  } catch (e) {
    v.fail(VmstreamError.wrap(e, { offset: r.offset }, "BAD_VALUE"));
  }
  const end = from + r.pos;
  const conclusive = input.hard || end + PEEK_LOOKAHEAD <= input.n || !r.peekedPastEnd;
  const err = v.error ?? r.error;
  if (err) return conclusive && (input.hard || err.code !== "EOF") ? { kind: "fail", error: err } : { kind: "need", end };
  return { kind: "done", state, end, conclusive, visits: v.visits };
}

export class InputWindow {
  private win = 0;
  private cap = 0;
  private rd = 0;
  private wr = 0;
  /** Stream offset of the first unparsed byte. */
  offset = 0;

  constructor(
    private readonly kernels: Kernels,
    private readonly maxBytes: number,
  ) {}

  /** Unparsed bytes held. */
  get available(): number {
    return this.wr - this.rd;
  }

  /** Address of the first unparsed byte in the kernels' memory. */
  get ptr(): number {
    return this.win + this.rd;
  }

  /** Copy as much of `chunk` as fits after making room for at least one byte; returns the bytes taken. */
  append(chunk: Uint8Array, needed: number): number {
    if (this.wr === this.cap) this.makeRoom(needed);
    const n = Math.min(chunk.length, this.cap - this.wr);
    this.kernels.u8.set(chunk.subarray(0, n), this.win + this.wr);
    this.wr += n;
    return n;
  }

  /** A view of at least `min` free bytes after the held ones (as far as the limit allows), to read input into. */
  space(min: number): Uint8Array {
    this.ensureSpace(Math.max(1, min));
    return this.kernels.u8.subarray(this.win + this.wr, this.win + this.cap);
  }

  /** `n` bytes were written at the start of the last `space()` view. */
  commit(n: number): void {
    if (!(Number.isInteger(n) && n >= 0 && n <= this.cap - this.wr)) throw new VmstreamError("STATE", `commit(${n}): not within the input space`);
    this.wr += n;
  }

  /** `n` bytes were parsed. */
  consume(n: number): void {
    this.rd += n;
    this.offset += n;
  }

  /** A reader over unparsed bytes [from, to) (relative to the first one), with absolute offsets. */
  reader(from: number, to: number, sticky = false): ByteReader {
    const base = this.win + this.rd;
    return new ByteReader(this.kernels.u8.subarray(base + from, base + to), { baseOffset: this.offset + from, sticky });
  }

  /** Unparsed byte `i`. */
  byteAt(i: number): number {
    return this.kernels.u8[this.win + this.rd + i]!;
  }

  /** The first `n` unparsed bytes as the bytes at hand of a step. */
  atHand(n: number, hard: boolean): AtHand {
    return { reader: (from, to = n, sticky) => this.reader(from, to, sticky), byteAt: (i) => this.byteAt(i), n, hard, offset: this.offset };
  }

  /** Unparsed bytes [from, to) as a view (valid until the window moves or the memory grows). */
  view(from: number, to: number): Uint8Array {
    const base = this.win + this.rd;
    return this.kernels.u8.subarray(base + from, base + to);
  }

  /** `state` with every view of the kernels' memory in it replaced by a copy (the window is reused). */
  detach<T>(state: T): T {
    return copyOut(state, this.kernels.memory.buffer, 0);
  }

  /** Hand every unparsed byte out (as a view) and empty the window; the stream offset stays. */
  drain(): Uint8Array {
    const v = this.kernels.u8.subarray(this.win + this.rd, this.win + this.wr);
    this.rd = this.wr = 0;
    return v;
  }

  /** Give the window back (when the kernels are shared; a private instance goes away whole). */
  release(free: boolean): void {
    if (this.cap !== 0 && free) this.kernels.free(this.win);
    this.cap = 0;
    this.win = this.rd = this.wr = 0;
  }

  /** Room after a full window: move the unparsed bytes to the front, else grow (to at least `needed`). */
  private makeRoom(needed: number): void {
    const k = this.kernels;
    if (this.cap === 0) {
      this.cap = Math.min(INITIAL_WINDOW, this.maxBytes);
      this.win = k.alloc(this.cap, 64);
      return;
    }
    if (this.compact() && this.wr < this.cap) return;
    const want = Math.min(Math.max(this.cap * 2, needed), this.maxBytes);
    if (want <= this.cap) throw this.tooLarge();
    this.grow(want);
  }

  /** At least `min` free bytes after `wr` (compacting, then growing the window, up to the limit). */
  private ensureSpace(min: number): void {
    if (this.cap - this.wr >= min) return;
    if (this.cap === 0) {
      this.cap = Math.min(Math.max(INITIAL_WINDOW, min), this.maxBytes);
      this.win = this.kernels.alloc(this.cap, 64);
      if (this.cap >= min) return;
    }
    if (this.compact() && this.cap - this.wr >= min) return;
    const want = Math.min(Math.max(this.cap * 2, this.wr + min), this.maxBytes);
    if (want > this.cap) this.grow(want);
    else if (this.cap === this.wr) throw this.tooLarge(); // full and at the limit; less than `min` is all there is
  }

  private compact(): boolean {
    if (this.rd === 0) return false;
    this.kernels.u8.copyWithin(this.win, this.win + this.rd, this.win + this.wr);
    this.wr -= this.rd;
    this.rd = 0;
    return true;
  }

  private grow(want: number): void {
    const k = this.kernels;
    const nw = k.alloc(want, 64);
    k.u8.copyWithin(nw, this.win, this.win + this.wr);
    k.free(this.win);
    this.win = nw;
    this.cap = want;
  }

  private tooLarge(): VmstreamError {
    return new VmstreamError("LIMIT", "an item of the stream is larger than the decoder's window limit", {
      offset: this.offset,
      detail: `more than ${this.maxBytes} bytes (limits.windowBytes)`,
    });
  }
}

function copyOut<T>(v: T, buffer: ArrayBufferLike, depth: number): T {
  if (depth > 64 || v === null || typeof v !== "object") return v;
  if (v instanceof Uint8Array) return (v.buffer === buffer ? v.slice() : v) as T;
  if (ArrayBuffer.isView(v)) return v;
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    const e = o[k];
    if (e !== null && typeof e === "object") o[k] = copyOut(e, buffer, depth + 1);
  }
  return v;
}
