// The kernels' linear memory: views that follow `memory.grow`, and a small first-fit allocator
// for RAM blocks, shadows, caches, bitmaps and I/O windows. It knows which bytes are zero (never handed
// out, or given back clean), so a zeroed region costs no writes there: the system commits a page only
// when it is touched (docs/memory.md, "Lazy materialisation").
//
// A grow detaches the old ArrayBuffer, and writes through a stale view are silently dropped, so
// views are rebuilt whenever `memory.buffer` is no longer the buffer they were made on.

const WASM_PAGE = 65536;
/** wasm32 cannot address more than this; larger guests need several memories or a window (docs/memory.md). */
export const MAX_MEMORY_BYTES = 65536 * WASM_PAGE;

interface Region {
  start: number;
  end: number;
}

export class LinearMemory {
  readonly memory: WebAssembly.Memory;
  private buf: ArrayBuffer;
  private bytes: Uint8Array;
  private dv: DataView;
  /** Free regions, sorted by start, never adjacent (merged on free). */
  private readonly freeList: Region[] = [];
  /** Live allocations: start -> end (the aligned start a caller got). */
  private readonly live = new Map<number, Region>();
  private top: number;
  /**
   * Shared with a host (an emulator's own memory): the end of the pages this allocator grew itself, or
   * undefined when the whole memory is ours. The host may grow the memory too, and the pages it gets are
   * its own: an allocation never reaches past `owned` into them.
   */
  private owned: number | undefined;
  /** A scratch region's end: nothing is handed out past it and the memory is never grown. */
  private readonly limit: number | undefined;
  /** Every byte from here up was never handed out: zero (memory.grow gives zeroed pages). */
  private fresh: number;
  /** Regions below `fresh` known to be zero (given back with `free(ptr, true)`), sorted, never adjacent. */
  private readonly clean: Region[] = [];

  /**
   * @param base first byte the allocator may hand out. For a host-owned memory this is its
   *   current end, so the kernels' regions are claimed by growing and never overlap host data.
   * @param shared the memory belongs to a host that may grow it as well (see `owned`).
   * @param limit hand out only [base, limit), bytes that already exist (a scratch region another
   *   allocator reserved, for an instance in another thread); never grow.
   */
  constructor(memory: WebAssembly.Memory, base: number, shared = false, limit?: number) {
    this.memory = memory;
    this.buf = memory.buffer;
    this.bytes = new Uint8Array(this.buf);
    this.dv = new DataView(this.buf);
    this.top = base;
    this.owned = shared ? base : undefined;
    if (limit !== undefined && (!Number.isInteger(limit) || limit < base || limit > memory.buffer.byteLength)) {
      throw new RangeError(`scratch region [${base}, ${limit}) is not inside the memory (${memory.buffer.byteLength} bytes)`);
    }
    this.limit = limit;
    // a scratch region's bytes already exist and may hold anything
    this.fresh = limit ?? base;
  }

  get u8(): Uint8Array {
    if (this.memory.buffer !== this.buf) this.refresh();
    return this.bytes;
  }

  get view(): DataView {
    if (this.memory.buffer !== this.buf) this.refresh();
    return this.dv;
  }

  private refresh(): void {
    this.buf = this.memory.buffer;
    this.bytes = new Uint8Array(this.buf);
    this.dv = new DataView(this.buf);
  }

  /** A region of `size` bytes; with `zeroed`, all zero (only bytes not known to be zero are written). */
  alloc(size: number, align = 4096, zeroed = false): number {
    const start = this.place(size, align);
    const end = start + Math.max(size, 1);
    if (zeroed) {
      // zero [start, min(end, fresh)) except the clean regions inside it
      let at = start;
      const to = Math.min(end, this.fresh);
      for (const c of this.clean) {
        if (c.end <= at) continue;
        if (c.start >= to) break;
        if (c.start > at) this.u8.fill(0, at, c.start);
        at = Math.max(at, c.end);
      }
      if (at < to) this.u8.fill(0, at, to);
    }
    this.dirty(start, end);
    if (end > this.fresh) this.fresh = end;
    return start;
  }

  private place(size: number, align: number): number {
    if (!Number.isInteger(size) || size < 0) throw new RangeError(`alloc: bad size ${size}`);
    if (!Number.isInteger(align) || align <= 0 || (align & (align - 1)) !== 0) throw new RangeError(`alloc: bad alignment ${align}`);
    const want = Math.max(size, 1);
    for (let i = 0; i < this.freeList.length; i++) {
      const r = this.freeList[i]!;
      const start = alignUp(r.start, align);
      if (start + want <= r.end) {
        this.freeList.splice(i, 1);
        if (start > r.start) this.insertFree({ start: r.start, end: start });
        if (start + want < r.end) this.insertFree({ start: start + want, end: r.end });
        this.live.set(start, { start, end: start + want });
        return start;
      }
    }
    if (this.owned !== undefined) {
      const len = this.memory.buffer.byteLength;
      if (len > this.owned) {
        // the host grew the memory after us: keep the rest of our pages as a free region, go on past its pages
        if (this.owned > this.top) this.insertFree({ start: this.top, end: this.owned });
        this.top = len;
        this.owned = len;
      }
    }
    const start = alignUp(this.top, align);
    const end = start + want;
    if (this.limit !== undefined && end > this.limit) throw new RangeError(`alloc: ${size} bytes do not fit in the scratch region (it ends at ${this.limit})`);
    if (end > MAX_MEMORY_BYTES) throw new RangeError(`alloc: ${size} bytes do not fit in a 4 GiB wasm32 memory`);
    this.ensure(end);
    if (this.owned !== undefined && end > this.owned) this.owned = this.memory.buffer.byteLength;
    if (start > this.top) this.insertFree({ start: this.top, end: start });
    this.top = end;
    this.live.set(start, { start, end });
    return start;
  }

  /** Give back a region from `alloc`; `clean`: the caller left every byte of it zero. */
  free(ptr: number, clean = false): void {
    const r = this.live.get(ptr);
    if (!r) throw new RangeError(`free: ${ptr} was not allocated`);
    this.live.delete(ptr);
    if (clean) this.addClean(r.start, r.end);
    if (r.end === this.top) {
      this.top = r.start;
      // Fold a free region that now touches the top back into it.
      const last = this.freeList[this.freeList.length - 1];
      if (last && last.end === this.top) {
        this.top = last.start;
        this.freeList.pop();
      }
    } else {
      this.insertFree(r);
    }
  }

  /** Make sure bytes [0, end) exist. */
  ensure(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    this.memory.grow(Math.ceil((end - have) / WASM_PAGE));
  }

  /** [start, end) is handed out: no longer known to be zero. */
  private dirty(start: number, end: number): void {
    const list = this.clean;
    for (let i = 0; i < list.length; i++) {
      const c = list[i]!;
      if (c.end <= start) continue;
      if (c.start >= end) break;
      const pieces: Region[] = [];
      if (c.start < start) pieces.push({ start: c.start, end: start });
      if (c.end > end) pieces.push({ start: end, end: c.end });
      list.splice(i, 1, ...pieces);
      i += pieces.length - 1;
    }
  }

  private addClean(start: number, end: number): void {
    const list = this.clean;
    let i = 0;
    while (i < list.length && list[i]!.end < start) i++;
    // merge every clean region that overlaps or touches [start, end)
    let j = i;
    while (j < list.length && list[j]!.start <= end) {
      start = Math.min(start, list[j]!.start);
      end = Math.max(end, list[j]!.end);
      j++;
    }
    list.splice(i, j - i, { start, end });
  }

  private insertFree(r: Region): void {
    const list = this.freeList;
    let i = 0;
    while (i < list.length && list[i]!.start < r.start) i++;
    list.splice(i, 0, r);
    // Merge with neighbours.
    if (i + 1 < list.length && list[i]!.end === list[i + 1]!.start) {
      list[i]!.end = list[i + 1]!.end;
      list.splice(i + 1, 1);
    }
    if (i > 0 && list[i - 1]!.end === list[i]!.start) {
      list[i - 1]!.end = list[i]!.end;
      list.splice(i, 1);
    }
  }
}

function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}
