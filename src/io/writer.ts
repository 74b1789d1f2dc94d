// ByteWriter: the output half of QEMUFile. Big-endian puts on a DataView over one growable buffer (no range
// checks: values modulo 2^width), logical offsets with reserve/patch, a zero-copy gather of borrowed views (guest
// RAM pages), chunks handed over to asynchronous sinks and recycled when released. The rules for offsets and view
// lifetimes: docs/io.md, "ByteWriter". Browser-safe: Uint8Array, DataView, TextEncoder only.
import { VmstreamError } from "./errors.js";

const TWO32 = 4294967296;
const MIN_CAPACITY = 64;
const U32 = 0xffffffffn;
const utf8 = new TextEncoder();
/** Free buffers a writer keeps for reuse (each at least the current capacity). */
const MAX_FREE = 8;
/** bulk() makes pending bytes of at least this many a chunk rather than moving them. */
const BULK_SPLIT = 4096;

/** Bookkeeping of one of a writer's buffers, for recycling. */
interface BufferState {
  readonly buf: Uint8Array;
  readonly owner: ByteWriter;
  /** Views handed out by takeChunks() and not yet released. */
  readonly out: Set<Uint8Array>;
  /** Owned list entries viewing this buffer. */
  listed: number;
  /** The writer's reset() generation in which a view went out through chunks()/finish() (-1: none). */
  exposed: number;
  /** No longer the writer's current buffer. */
  retired: boolean;
}
const states = new WeakMap<ArrayBuffer, BufferState>();

export interface ByteWriterOptions {
  /** Initial buffer size in bytes (default 4096). */
  readonly initialCapacity?: number;
  /** {@link ByteWriter.borrow} copies views shorter than this many bytes (default 256; 0 = never copy). */
  readonly borrowMin?: number;
}

export class ByteWriter {
  // All fields are `declare`d and assigned in the constructor, hot ones first, each with its final type from
  // the start: class-field initialisers (TS emits `buf;` = undefined first) made V8 generalise the field
  // representations and cost 30 % on the put loop.

  // --- hot state -------------------------------------------------------------------------------
  declare private buf: Uint8Array;
  declare private view: DataView;
  /** Write index in `buf`. */
  declare private p: number;
  /** `buf.length`. */
  declare private cap: number;
  /** `cap - 8`: one compare `p > safe` covers every fixed-width put (at most 8 bytes). */
  declare private safe: number;

  // --- gather state ----------------------------------------------------------------------------
  /** Index in `buf` where the pending bytes (not yet made a chunk) begin. */
  declare private start: number;
  /** Logical offset of `buf[start]` (= taken + listBytes). */
  declare private flushed: number;
  /** Logical offset below which bytes were handed out by takeChunks(). */
  declare private taken: number;
  declare private listBytes: number;
  declare private readonly list: Uint8Array[];
  /** Parallel to `list`: true for chunks of our own buffers (patchable), false for borrowed views. */
  declare private readonly owned: boolean[];
  declare private readonly scratch: DataView;

  // --- recycling (docs/io.md, "ByteWriter") -----------------------------------------------------
  declare private cur: BufferState;
  /** Reusable buffers, most recently freed last (warmest in cache). */
  declare private readonly free: Uint8Array[];
  /** Counts reset() calls: views given out by chunks()/finish() before the last one are dead. */
  declare private gen: number;

  /** {@link borrow} copies views shorter than this. */
  declare readonly borrowMin: number;

  constructor(options: ByteWriterOptions = {}) {
    const cap = Math.max(MIN_CAPACITY, Math.floor(options.initialCapacity ?? 4096));
    this.buf = new Uint8Array(cap);
    this.view = new DataView(this.buf.buffer);
    this.p = 0;
    this.cap = cap;
    this.safe = cap - 8;
    this.start = 0;
    this.flushed = 0;
    this.taken = 0;
    this.listBytes = 0;
    this.list = [];
    this.owned = [];
    this.scratch = new DataView(new ArrayBuffer(8));
    this.borrowMin = Math.max(0, options.borrowMin ?? 256);
    this.free = [];
    this.gen = 0;
    this.cur = this.track(this.buf);
  }

  /**
   * Give back a chunk returned by {@link takeChunks} once it is no longer needed (written out). Returns false
   * (and does nothing) for anything else: a borrowed view, a copy, a chunk already released.
   */
  static release(chunk: Uint8Array): boolean {
    const st = states.get(chunk.buffer as ArrayBuffer);
    if (!st?.out.delete(chunk)) return false;
    st.owner.reuse(st);
    return true;
  }

  /** Buffers currently kept for reuse. */
  get freeBuffers(): number {
    return this.free.length;
  }

  private track(buf: Uint8Array): BufferState {
    const st: BufferState = { buf, owner: this, out: new Set(), listed: 0, exposed: -1, retired: false };
    states.set(buf.buffer as ArrayBuffer, st);
    return st;
  }

  /** Put a retired buffer on the free list when nothing views it any more. */
  private reuse(st: BufferState): void {
    if (!st.retired || st.out.size > 0 || st.listed > 0 || st.exposed === this.gen) return;
    st.retired = false; // off the books until taken again
    if (st.buf.length >= this.cap && this.free.length < MAX_FREE) this.free.push(st.buf);
  }

  private expose(st: BufferState): void {
    st.exposed = this.gen;
  }

  /** Logical offset: bytes written since construction or reset(), including borrowed and taken ones. */
  get pos(): number {
    return this.flushed + (this.p - this.start);
  }

  /** Bytes currently held (written and not handed out by takeChunks()). Same as {@link byteLength}. */
  get length(): number {
    return this.listBytes + (this.p - this.start);
  }

  /** Bytes currently held (written and not handed out by takeChunks()). */
  get byteLength(): number {
    return this.listBytes + (this.p - this.start);
  }

  /** Size of the current internal buffer. */
  get capacity(): number {
    return this.cap;
  }

  /**
   * Make room for `n` more bytes in the current buffer. The only growth point: allocates a new buffer and
   * moves the pending bytes (those not yet made a chunk) to its start; the new buffer keeps at least half the
   * old capacity free, so growth is amortised O(1) per byte.
   */
  ensure(n: number): void {
    if (this.p + n <= this.cap) return;
    const tail = this.p - this.start;
    const want = tail + n + (this.cap >>> 1);
    let nb: Uint8Array | undefined;
    const free = this.free;
    for (let i = free.length - 1; i >= 0; i--) {
      if (free[i]!.length >= want) {
        nb = free[i]!;
        free.splice(i, 1);
        break;
      }
    }
    let st: BufferState;
    if (nb) st = states.get(nb.buffer as ArrayBuffer)!;
    else {
      let cap = this.cap;
      while (cap < want) cap *= 2;
      nb = new Uint8Array(cap);
      st = this.track(nb);
    }
    const cap = nb.length;
    nb.set(this.buf.subarray(this.start, this.p));
    const old = this.cur;
    this.cur = st;
    old.retired = true;
    this.buf = nb;
    this.view = new DataView(nb.buffer);
    this.cap = cap;
    this.safe = cap - 8;
    this.p = tail;
    this.start = 0;
    this.reuse(old);
  }

  /** Slow path of the fixed-width puts: ensure(n), then the (possibly moved) write index. */
  private room(n: number): number {
    this.ensure(n);
    return this.p;
  }

  // --- unsigned ---------------------------------------------------------------------------------

  u8(v: number): void {
    let p = this.p;
    if (p > this.safe) p = this.room(1);
    this.p = p + 1;
    this.buf[p] = v;
  }

  be16(v: number): void {
    let p = this.p;
    if (p > this.safe) p = this.room(2);
    this.p = p + 2;
    this.view.setUint16(p, v);
  }

  be32(v: number): void {
    let p = this.p;
    if (p > this.safe) p = this.room(4);
    this.p = p + 4;
    this.view.setUint32(p, v);
  }

  /** Hot-path u64: two u32 halves, most significant first. No BigInt. */
  be64hl(hi: number, lo: number): void {
    let p = this.p;
    if (p > this.safe) p = this.room(8);
    this.p = p + 8;
    const view = this.view;
    view.setUint32(p, hi);
    view.setUint32(p + 4, lo);
  }

  /** API-edge u64 (also accepts negative values: two's complement, i.e. modulo 2^64). */
  be64(v: bigint): void {
    const u = BigInt.asUintN(64, v);
    this.be64hl(Number(u >> 32n), Number(u & U32));
  }

  /**
   * u64/s64 from a JS number: any safe integer (|v| <= 2^53-1); negative values are written in two's
   * complement. Throws RANGE otherwise (use be64/be64hl for the full range).
   */
  be64n(v: number): void {
    if (!Number.isSafeInteger(v)) {
      throw new VmstreamError("RANGE", "be64 value is not a safe integer", { offset: this.pos, detail: String(v) });
    }
    this.be64hl(Math.floor(v / TWO32), v >>> 0);
  }

  // --- signed (same bytes as the unsigned puts; separate names to mirror the wire types) ----------

  s8(v: number): void {
    let p = this.p;
    if (p > this.safe) p = this.room(1);
    this.p = p + 1;
    this.buf[p] = v;
  }

  sbe16(v: number): void {
    let p = this.p;
    if (p > this.safe) p = this.room(2);
    this.p = p + 2;
    this.view.setInt16(p, v);
  }

  sbe32(v: number): void {
    let p = this.p;
    if (p > this.safe) p = this.room(4);
    this.p = p + 4;
    this.view.setInt32(p, v);
  }

  sbe64(v: bigint): void {
    this.be64(v);
  }

  // --- IEEE 754, big-endian ---------------------------------------------------------------------

  /**
   * IEEE single, big-endian. NaN is written as the canonical quiet NaN the engine produces
   * (`7f c0 00 00` in V8); to write an exact NaN payload write its bits with be32.
   */
  f32be(v: number): void {
    let p = this.p;
    if (p > this.safe) p = this.room(4);
    this.p = p + 4;
    this.view.setFloat32(p, v);
  }

  /** IEEE double, big-endian. -0 and the infinities are exact; for exact NaN payloads use be64hl. */
  f64be(v: number): void {
    let p = this.p;
    if (p > this.safe) p = this.room(8);
    this.p = p + 8;
    this.view.setFloat64(p, v);
  }

  // --- byte runs --------------------------------------------------------------------------------

  /** Append a COPY of `src`. */
  bytes(src: Uint8Array): void {
    const n = src.length;
    if (this.p + n > this.cap) this.ensure(n);
    const p = this.p;
    if (n <= 16) {
      const buf = this.buf;
      for (let i = 0; i < n; i++) buf[p + i] = src[i]!;
    } else {
      this.buf.set(src, p);
    }
    this.p = p + n;
  }

  /**
   * Append a COPY of a large run (a kernel's output window). Same bytes as {@link bytes}. In a writer consumed
   * by {@link takeChunks} (since the last reset), a run that does not fit ends the pending bytes as a chunk
   * where they are instead of moving them, and starts the next buffer (a recycled one when available): each
   * byte is copied once. Other writers (read with finish()) grow as with bytes(), staying one piece.
   */
  bulk(src: Uint8Array): void {
    const n = src.length;
    if (this.p + n > this.cap) {
      // under a page the move is cheaper than one more chunk (one more write) for the consumer
      if (this.taken > 0 && this.p - this.start >= BULK_SPLIT) this.flushPending();
      this.ensure(n);
    }
    this.buf.set(src, this.p);
    this.p += n;
  }

  /** Append `n` zero bytes. */
  zeros(n: number): void {
    this.checkCount(n, "zeros");
    if (this.p + n > this.cap) this.ensure(n);
    this.buf.fill(0, this.p, this.p + n);
    this.p += n;
  }

  /**
   * QEMU counted string: u8 length + bytes, no NUL. A string is encoded as UTF-8 (TextEncoder; ASCII, the
   * only thing QEMU ever puts there, takes a fast path and is one byte per character); a Uint8Array is
   * written as is. Throws RANGE when the encoding is longer than 255 bytes. Length 0 is written as is
   * (some places accept it); the framing layer rejects empty section idstrs.
   */
  cstr(s: string | Uint8Array): void {
    if (typeof s !== "string") {
      this.cstrBytes(s);
      return;
    }
    const n = s.length;
    if (n <= 255) {
      if (this.p + 1 + n > this.cap) this.ensure(1 + n);
      const buf = this.buf;
      const o = this.p + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[o + i] = c;
      }
      if (i === n) {
        buf[this.p] = n;
        this.p = o + n;
        return;
      }
    }
    this.cstrBytes(utf8.encode(s));
  }

  private cstrBytes(b: Uint8Array): void {
    if (b.length > 255) {
      throw new VmstreamError("RANGE", "counted string too long", {
        offset: this.pos,
        detail: `${b.length} bytes, max 255`,
      });
    }
    this.u8(b.length);
    this.bytes(b);
  }

  // --- reserve and patch ------------------------------------------------------------------------

  /** Append `n` zero bytes to fill in later; returns their logical offset for the `patch*` methods. */
  reserve(n: number): number {
    this.checkCount(n, "reserve");
    const at = this.pos;
    this.zeros(n);
    return at;
  }

  patchU8(at: number, v: number): void {
    const i = at - this.flushed;
    if (i >= 0 && i + 1 <= this.p - this.start) {
      this.buf[this.start + i] = v;
      return;
    }
    this.scratch.setUint8(0, v);
    this.patchSlow(at, 1);
  }

  patchBe16(at: number, v: number): void {
    const i = at - this.flushed;
    if (i >= 0 && i + 2 <= this.p - this.start) {
      this.view.setUint16(this.start + i, v);
      return;
    }
    this.scratch.setUint16(0, v);
    this.patchSlow(at, 2);
  }

  patchBe32(at: number, v: number): void {
    const i = at - this.flushed;
    if (i >= 0 && i + 4 <= this.p - this.start) {
      this.view.setUint32(this.start + i, v);
      return;
    }
    this.scratch.setUint32(0, v);
    this.patchSlow(at, 4);
  }

  patchBe64hl(at: number, hi: number, lo: number): void {
    const i = at - this.flushed;
    if (i >= 0 && i + 8 <= this.p - this.start) {
      this.view.setUint32(this.start + i, hi);
      this.view.setUint32(this.start + i + 4, lo);
      return;
    }
    this.scratch.setUint32(0, hi);
    this.scratch.setUint32(4, lo);
    this.patchSlow(at, 8);
  }

  patchBe64(at: number, v: bigint): void {
    const u = BigInt.asUintN(64, v);
    this.patchBe64hl(at, Number(u >> 32n), Number(u & U32));
  }

  /** Patch bytes that already became a chunk (a borrow() happened after them). */
  private patchSlow(at: number, w: number): void {
    if (!Number.isInteger(at) || at < this.taken || at + w > this.pos) {
      throw new VmstreamError("RANGE", "patch outside the bytes held by the writer", {
        offset: at,
        detail: `${w} bytes; held range is ${this.taken}..${this.pos}`,
      });
    }
    let end = this.flushed;
    for (let k = this.list.length - 1; k >= 0; k--) {
      const c = this.list[k]!;
      const s = end - c.length;
      if (at >= s) {
        if (at + w > end || !this.owned[k]) {
          throw new VmstreamError("RANGE", "patch overlaps a borrowed view", { offset: at, detail: `${w} bytes` });
        }
        c.set(new Uint8Array(this.scratch.buffer, 0, w), at - s);
        return;
      }
      end = s;
    }
    /* c8 ignore next */
    throw new VmstreamError("INTERNAL", "patch offset not found", { offset: at });
  }

  // --- gather -----------------------------------------------------------------------------------

  /**
   * Append `v` BY REFERENCE (zero copy) — QEMU's qemu_put_buffer_async. Do not modify `v` until the chunks
   * are consumed. Views shorter than `borrowMin` are copied like {@link bytes}. A view that continues the
   * previous borrowed view in the same ArrayBuffer is merged into it.
   */
  borrow(v: Uint8Array): void {
    const n = v.length;
    if (n < this.borrowMin) {
      this.bytes(v);
      return;
    }
    if (n === 0) return;
    this.flushPending();
    const list = this.list;
    const k = list.length - 1;
    const last = k >= 0 ? list[k]! : undefined;
    if (last !== undefined && !this.owned[k] && last.buffer === v.buffer && last.byteOffset + last.byteLength === v.byteOffset) {
      list[k] = new Uint8Array(v.buffer, last.byteOffset, last.byteLength + n);
    } else {
      list.push(v);
      this.owned.push(false);
    }
    this.listBytes += n;
    this.flushed += n;
  }

  /** Make the pending bytes a chunk (they stay in the buffer; writes continue after them). */
  private flushPending(): void {
    const n = this.p - this.start;
    if (n === 0) return;
    this.list.push(this.buf.subarray(this.start, this.p));
    this.owned.push(true);
    this.cur.listed++;
    this.listBytes += n;
    this.flushed += n;
    this.start = this.p;
  }

  /** The held bytes as a list of views, in order (for writev-style sinks). Nothing is copied or consumed. */
  chunks(): Uint8Array[] {
    for (let k = 0; k < this.list.length; k++) if (this.owned[k]) this.expose(states.get(this.list[k]!.buffer as ArrayBuffer)!);
    if (this.p > this.start) this.expose(this.cur);
    return this.collect();
  }

  private collect(): Uint8Array[] {
    const out = this.list.slice();
    if (this.p > this.start) out.push(this.buf.subarray(this.start, this.p));
    return out;
  }

  /**
   * Hand the held bytes over: returns {@link chunks} and forgets them. Later writes never overwrite them
   * (until reset(), or the chunk's {@link ByteWriter.release}); `pos` keeps counting, patches below the taken
   * offset throw RANGE.
   */
  takeChunks(): Uint8Array[] {
    const out = this.collect();
    const pos = this.pos;
    // from now on the consumer holds these views: their buffers wait for release()
    const list = this.list;
    for (let k = 0; k < list.length; k++) {
      if (!this.owned[k]) continue;
      const st = states.get(list[k]!.buffer as ArrayBuffer)!;
      st.listed--;
      st.out.add(list[k]!);
    }
    if (out.length > list.length) this.cur.out.add(out[out.length - 1]!);
    this.list.length = 0;
    this.owned.length = 0;
    this.listBytes = 0;
    this.start = this.p;
    this.taken = this.flushed = pos;
    return out;
  }

  /** A fresh copy of all held bytes in one array. */
  concat(): Uint8Array {
    const out = new Uint8Array(this.byteLength);
    let o = 0;
    for (const c of this.list) {
      out.set(c, o);
      o += c.length;
    }
    out.set(this.buf.subarray(this.start, this.p), o);
    return out;
  }

  /**
   * The held bytes as one array: a VIEW of the buffer (no copy) when nothing was borrowed, else
   * {@link concat}. Valid until reset().
   */
  finish(): Uint8Array {
    if (this.list.length === 0) {
      this.expose(this.cur);
      return this.buf.subarray(this.start, this.p);
    }
    return this.concat();
  }

  /**
   * Forget everything and write again from offset 0 of the current buffer (no allocation). Views returned
   * before are overwritten by later writes: call this only when they have been consumed.
   */
  reset(): void {
    // Views given out before are dead now (see above): dropped list entries, chunks()/finish() views (a new
    // generation), and chunks taken from the current buffer, which is written again from its start.
    const dropped: BufferState[] = [];
    for (let k = 0; k < this.list.length; k++) {
      if (!this.owned[k]) continue;
      const st = states.get(this.list[k]!.buffer as ArrayBuffer)!;
      st.listed--;
      dropped.push(st);
    }
    this.gen++;
    this.cur.out.clear();
    this.p = 0;
    this.start = 0;
    this.flushed = 0;
    this.taken = 0;
    this.list.length = 0;
    this.owned.length = 0;
    this.listBytes = 0;
    for (const st of dropped) this.reuse(st);
  }

  private checkCount(n: number, what: string): void {
    if (!(n >= 0) || n !== Math.floor(n) || n > 0x7fffffff) {
      throw new VmstreamError("RANGE", `bad byte count for ${what}`, { offset: this.pos, detail: String(n) });
    }
  }
}

/**
 * The gather writer is {@link ByteWriter} itself ({@link ByteWriter.borrow}, {@link ByteWriter.chunks},
 * {@link ByteWriter.concat}); one class keeps every put call site monomorphic. This alias exists for
 * readability where a writer is used mainly to gather page views.
 */
export { ByteWriter as GatherWriter };
