// The loader of "ram" sections (wire-format §5, §6): page records decoded by the kernels' `ramDecode` a window
// per call, MEM_SIZE, COMPRESS_PAGE and EOS variants here; RAM kept in the kernels' memory with
// `materialize.ram` (docs/decoder.md, "Live section handlers"). Browser-safe.
import { VmstreamError } from "../../io/errors.js";
import { BLK, DEC, DEC_STATUS, type Kernels, RAM_FLAG } from "../../kernels/types.js";
import { type InputError, inputError, materializes } from "../../savevm/live-sections.js";
import type { FeedResult, HandlerContext, SectionHandler, SectionHeader, SectionInput } from "../../savevm/types.js";
import { countBits } from "../iterative.js";
import { type RamBlockData, type RamBlockSpec, type RamRecord, readDecodedRun } from "./format.js";

const ENTRY = BLK.WORDS * 4;
const NAME_SLOT = 256;
const NO_BLOCK = 0xffffffff;
const TWO32 = 4294967296;
/** The shortest record that writes a page: a CONTINUE header and a ZERO record's fill byte. */
const MIN_RECORD = 9;
/** A page record's bytes beyond the page at most: header, name (u8 + 255), XBZRLE head (u8 + be16). */
const MAX_RECORD_OVERHEAD = 8 + 1 + 255 + 3;
const latin = new TextDecoder("utf-8");

export interface RamPageCounts {
  zero: number;
  normal: number;
  xbzrle: number;
  compressed: number;
}

/** One RAM block as announced by MEM_SIZE, with its page counts (and its bytes when materialised). */
export class RamBlockResult {
  // ES private: a pointer is not part of what the result says (digests and JSON of a result skip it)
  readonly #writtenPtr: number;
  readonly #targetPageSize: number;

  constructor(
    readonly name: string,
    /** used_length in bytes. */
    readonly length: bigint,
    readonly pages: RamPageCounts,
    /** Address in the kernels' memory when materialised (0 otherwise). */
    readonly ptr: number,
    private readonly kernels: Kernels,
    private readonly live: () => boolean,
    /** Postcopy hugepage size field, when the stream carries it. */
    readonly pageSize?: bigint,
    /** MemoryRegion address (x-ignore-shared), when the stream carries it. */
    readonly mrAddr?: bigint,
    writtenPtr = 0,
    targetPageSize = 0,
  ) {
    this.#writtenPtr = writtenPtr;
    this.#targetPageSize = targetPageSize;
  }

  /**
   * The block's bytes (a view of the kernels' memory: take it again after the memory grows). Reading a page the
   * stream never wrote makes the system commit it: a reader that walks a large block should skip the pages
   * `written` says are untouched (they read as zero).
   */
  get data(): Uint8Array | undefined {
    if (this.ptr === 0 || !this.live()) return undefined;
    return new Uint8Array(this.kernels.memory.buffer, this.ptr, Number(this.length));
  }

  /**
   * Which pages the stream wrote (a block the handler materialised, not a host's): bit i (little-endian bit
   * order) set = page i may hold non-zero bytes, clear = page i was never written and reads as zero without
   * costing memory. A view of the kernels' memory, like `data`; undefined for a host block or when not materialised.
   */
  get written(): Uint8Array | undefined {
    if (this.#writtenPtr === 0 || !this.live()) return undefined;
    return new Uint8Array(this.kernels.memory.buffer, this.#writtenPtr, Math.ceil(Math.floor(Number(this.length) / this.#targetPageSize) / 8));
  }
}

export interface RamResult {
  readonly pageSize: number;
  readonly materialized: boolean;
  /** Sum of the block lengths announced by MEM_SIZE. */
  readonly totalBytes: bigint;
  readonly blocks: readonly RamBlockResult[];
  /** Record totals over all blocks. */
  readonly records: { zero: number; normal: number; xbzrle: number; compressed: number; eos: number; memSize: number };
  /** ram sections seen (START + PART + END + FULL). */
  readonly sections: number;
}

/**
 * Where a RAM block's bytes go: a host (an emulator embedding the destination) gives its own guest memory
 * for a block by name, or undefined to let the handler decide (allocate when materialising, else count only).
 */
export type RamBlockProvider = (name: string, length: number) => RamBlockData | undefined;

export interface RamHandlerOptions {
  /** Blocks that live in the host's memory (`ptr` in the kernels' memory). Used even without materialize.ram. */
  readonly ramBlock?: RamBlockProvider;
}

interface Block {
  name: string;
  bytes: Uint8Array;
  length: bigint;
  base: number;
  /** Written-page bitmap of a materialised block (BLK.WRITTEN), kept until dispose (RamBlockResult.written). */
  written: number;
  pageSize?: bigint;
  mrAddr?: bigint;
  compressed: number;
  /** The bytes belong to the host (never freed here). */
  host: boolean;
}

function asBool(v: boolean | ((n: string) => boolean) | undefined, name: string): boolean {
  return typeof v === "function" ? v(name) : v === true;
}

export class RamHandler implements SectionHandler<RamResult> {
  readonly idstr = "ram";
  readonly maxVersion = 4;
  readonly emitsRecords = true;
  private readonly k: Kernels;
  private readonly materialize: boolean;
  private pageSize = 0;
  private table = 0;
  private names = 0;
  private tableCap = 0;
  private state = 0;
  private readonly blocks: Block[] = [];
  private memsize: { flags: number; total: bigint; remaining: bigint; verify: boolean; entries: RamBlockSpec[] } | undefined;
  private readonly emit: ((r: RamRecord) => void) | undefined;
  private total = 0n;
  private materialized = 0;
  private eos = 0;
  private memSizeRecords = 0;
  private sections = 0;
  private snapshot: number[][] | undefined;
  private freed = false;
  /** This handler's share of ctx.materialized.bytes: the RAM pages written as last counted, plus a page per record since. */
  private share = 0;
  /** Bytes of the written-page bitmaps of the handler's blocks (what `account` counts). */
  private bitmapBytes = 0;

  constructor(
    private readonly ctx: HandlerContext,
    private readonly hostOptions: RamHandlerOptions = {},
  ) {
    this.k = ctx.kernels;
    this.emit = ctx.record;
    this.materialize = materializes(ctx.options, "ram");
    if (this.materialize) ctx.materialized.onSettle(() => this.settle());
  }

  begin(h: SectionHeader): void {
    if (h.version !== 4)
      throw new VmstreamError("BAD_VERSION", "unsupported ram section version", { offset: h.offset, detail: `${h.version}, QEMU 7.2 loads only version 4` });
    if (this.snapshot) throw new VmstreamError("STATE", "ram handler used after the end of the stream");
    this.sections++;
    if (this.state === 0) {
      const ps = this.ctx.pageSize();
      if (!Number.isInteger(ps) || ps < 1024 || ps > 65536 || (ps & (ps - 1)) !== 0) {
        throw new VmstreamError("RANGE", "unsupported target page size for RAM", {
          offset: h.offset,
          detail: `${ps}: RAM records need a power of two in 1024..65536`,
        });
      }
      this.pageSize = ps;
      this.state = this.k.alloc(DEC.SIZE * 4, 8);
      new Uint32Array(this.k.memory.buffer, this.state, DEC.SIZE).fill(0);
      new Uint32Array(this.k.memory.buffer, this.state, 1)[0] = NO_BLOCK;
      this.growTable(16);
    }
  }

  feed(input: SectionInput, h: SectionHeader): FeedResult {
    const k = this.k;
    const end = input.ptr + input.len;
    let p = input.ptr;
    const err = inputError(input, h);
    for (;;) {
      if (this.memsize) {
        // entries already taken count as consumed even when the next one is still incomplete
        p = this.memSizeEntries(p, end, err);
        if (this.memsize) return { consumed: p - input.ptr, done: false };
        continue;
      }
      if (p === end) return { consumed: p - input.ptr, done: false };
      const window = this.decodeWindow(end - p);
      const status = k.ramDecode(p, window, this.table, this.blocks.length, this.pageSize, this.state);
      const st = new Uint32Array(k.memory.buffer, this.state, DEC.SIZE);
      if (status === DEC_STATUS.NEED_MORE || status === DEC_STATUS.EOS) {
        const to = p + st[DEC.CONSUMED]!;
        this.account(st[DEC.RECORDS]! * this.pageSize, to, err);
        if (this.emit) readDecodedRun(k.u8, p, to, this.pageSize, this.emit);
        if (status === DEC_STATUS.EOS) this.eos++;
        else if (window < end - p) {
          p = to;
          continue;
        }
        return { consumed: to - input.ptr, done: status === DEC_STATUS.EOS };
      }
      const at = p + st[DEC.ERR_AT]!;
      const hi = st[DEC.HDR_HI]!;
      const lo = st[DEC.HDR_LO]!;
      if (status < 0) throw this.kernelError(status, at, hi, lo, st[DEC.BLOCK]!, err);
      this.account(st[DEC.RECORDS]! * this.pageSize, at, err);
      if (this.emit) readDecodedRun(k.u8, p, at, this.pageSize, this.emit);
      // OTHER: a record the kernel does not apply
      const mask = this.pageSize - 1;
      const flags = lo & mask;
      const kind = flags & ~RAM_FLAG.CONTINUE;
      const addr = (BigInt(hi) << 32n) | BigInt((lo & ~mask) >>> 0);
      if (kind === RAM_FLAG.EOS) {
        // QEMU switches on (flags & ~CONTINUE): EOS with CONTINUE or with address bits is still EOS
        this.eos++;
        this.emit?.({ flags, addr });
        return { consumed: at + 8 - input.ptr, done: true };
      }
      if (kind === RAM_FLAG.MEM_SIZE) {
        this.memSizeRecords++;
        this.memsize = { flags, total: addr, remaining: addr, verify: this.blocks.length > 0, entries: [] };
        if (!this.memsize.verify) this.total = this.memsize.remaining;
        p = at + 8;
        continue;
      }
      if (kind === RAM_FLAG.COMPRESS_PAGE) {
        const np = this.compressed(at, end, hi, lo, err, input.final);
        if (np < 0) return { consumed: at - input.ptr, done: false };
        p = np;
        continue;
      }
      if (kind === RAM_FLAG.HOOK) throw err("UNSUPPORTED", "RAM_SAVE_FLAG_HOOK record (RDMA transport) is not supported", at);
      throw err("BAD_VALUE", "unknown combination of RAM record flags", at, `flags ${"0x" + flags.toString(16)}`);
    }
  }

  /**
   * How much of `available` input to decode in one call: all of it unless the records it may hold (a page each,
   * MIN_RECORD bytes at least) could take the materialised bytes past the limit; then less, so that the limit
   * error names a position close to the record that crossed it. Never less than a record, nor than the
   * bitmaps `account` counts then: counting costs at most as many steps as input bytes decoded.
   */
  private decodeWindow(available: number): number {
    if (!this.materialize) return available;
    const slack = this.ctx.limits.materializedBytes - this.ctx.materialized.bytes;
    const safe = Math.max(0, Math.floor(slack / this.pageSize)) * MIN_RECORD;
    if (safe >= available) return available;
    return Math.min(available, Math.max(safe, this.pageSize + MAX_RECORD_OVERHEAD, this.bitmapBytes));
  }

  /**
   * Hold the RAM materialised so far against limits.materializedBytes. `upTo` bytes at most were written since
   * the last call (a page per record the kernel consumed); the bitmaps are counted only when that bound could cross
   * the limit, so the hot path costs one addition. `at` is where decoding stands (the error's offset).
   */
  private account(upTo: number, at: number, err: InputError): void {
    if (!this.materialize || upTo === 0) return;
    const budget = this.ctx.materialized;
    const cap = this.ctx.limits.materializedBytes;
    budget.bytes += upTo;
    this.share += upTo;
    if (budget.bytes <= cap) return;
    budget.settle();
    if (budget.bytes > cap) {
      const now = this.share;
      const cur = new Uint32Array(this.k.memory.buffer, this.state, DEC.SIZE)[DEC.BLOCK]!;
      const name = this.blocks[cur]?.name;
      throw err(
        "LIMIT",
        "materialised RAM and disk data exceed the limit",
        at,
        `${budget.bytes} bytes materialised (RAM ${now}${name !== undefined ? `, last page into block "${name}"` : ""}) by the records before this offset, limits.materializedBytes ${cap}`,
      );
    }
  }

  /** Make this handler's share of the materialised bytes exact: the pages the bitmaps mark written. */
  private settle(): void {
    if (this.freed) return;
    let pages = 0;
    for (const b of this.blocks) if (b.written) pages += countBits(this.k.u8.subarray(b.written), Math.floor(Number(b.length) / this.pageSize));
    const exact = pages * this.pageSize;
    this.ctx.materialized.bytes += exact - this.share;
    this.share = exact;
  }

  /** MEM_SIZE entries until the lengths add up to the total (then `memsize` is cleared). Returns the position after the entries taken. */
  private memSizeEntries(p: number, end: number, err: InputError): number {
    const ms = this.memsize!;
    const ram = this.ctx.options.ram ?? {};
    const ignoreShared = ram.ignoreShared ?? this.ctx.configuration()?.capabilities?.includes("x-ignore-shared") ?? false;
    while (ms.remaining > 0n) {
      const u8 = this.k.u8;
      if (end - p < 1) return p;
      const n = u8[p]!;
      if (end - p < 1 + n) return p;
      const nameBytes = u8.slice(p + 1, p + 1 + n);
      const name = latin.decode(nameBytes);
      const hasPs = asBool(ram.blockPageSize, name);
      const need = 1 + n + 8 + (hasPs ? 8 : 0) + (ignoreShared ? 8 : 0);
      if (end - p < need) return p;
      if (n === 0) throw err("BAD_VALUE", "empty RAM block name in MEM_SIZE", p);
      const dv = this.k.view;
      let q = p + 1 + n;
      const length = dv.getBigUint64(q);
      q += 8;
      const pageSize = hasPs ? dv.getBigUint64(q) : undefined;
      if (hasPs) q += 8;
      const mrAddr = ignoreShared ? dv.getBigUint64(q) : undefined;
      if (length > ms.remaining) {
        throw err(
          "BAD_VALUE",
          "RAM block lengths exceed the MEM_SIZE total",
          p,
          `block "${name}" 0x${length.toString(16)}, 0x${ms.remaining.toString(16)} left`,
        );
      }
      const existing = this.findByName(nameBytes);
      if (ms.verify) {
        if (existing < 0) throw err("BAD_VALUE", "unknown RAM block in a repeated MEM_SIZE", p, `"${name}"`);
        if (this.blocks[existing]!.length !== length) throw err("BAD_VALUE", "RAM block length changed in a repeated MEM_SIZE", p, `"${name}"`);
      } else {
        if (existing >= 0) throw err("BAD_VALUE", "RAM block listed twice in MEM_SIZE", p, `"${name}"`);
        if (this.blocks.length >= this.ctx.limits.ramBlocks)
          throw err("LIMIT", "too many RAM blocks", p, `more than ${this.ctx.limits.ramBlocks} (limits.ramBlocks)`);
        this.addBlock(name, nameBytes, length, pageSize, mrAddr, p, err);
      }
      ms.remaining -= length;
      if (this.emit) ms.entries.push({ name, length, ...(pageSize !== undefined ? { pageSize } : {}), ...(mrAddr !== undefined ? { mrAddr } : {}) });
      p += need;
    }
    this.memsize = undefined;
    this.emit?.({ flags: ms.flags, addr: ms.total, blocks: ms.entries });
    return p;
  }

  private findByName(bytes: Uint8Array): number {
    outer: for (let i = 0; i < this.blocks.length; i++) {
      const b = this.blocks[i]!.bytes;
      if (b.length !== bytes.length) continue;
      for (let j = 0; j < b.length; j++) if (b[j] !== bytes[j]) continue outer;
      return i;
    }
    return -1;
  }

  private addBlock(
    name: string,
    bytes: Uint8Array,
    length: bigint,
    pageSize: bigint | undefined,
    mrAddr: bigint | undefined,
    at: number,
    err: InputError,
  ): void {
    const k = this.k;
    let base = 0;
    let written = 0;
    const host = this.hostBlock(name, length, at, err);
    if (host) {
      // The host's memory may hold anything: no written-page bitmap (word 4 = 0), so a ZERO record reads
      // the page and clears it when it is not already zero.
      base = host.ptr;
    } else if (this.materialize) {
      const len = Number(length);
      if (length >= BigInt(TWO32) || this.materialized + len > this.ctx.limits.ramBytes) {
        throw err(
          "LIMIT",
          "RAM too large to materialise",
          at,
          `block "${name}" 0x${length.toString(16)} bytes, ${this.materialized} already (limits.ramBytes ${this.ctx.limits.ramBytes})`,
        );
      }
      // The written-page bitmap (BLK.WRITTEN): which pages may be non-zero; none yet. With it ramDecode
      // skips ZERO records on untouched pages without reading them (a read of fresh memory is a page fault:
      // most of the cost of a mostly-zero stream), and readers skip the pages never written. A zeroed
      // region costs nothing until a page is written (docs/memory.md, "Lazy materialisation").
      const bitmapBytes = Math.ceil(Math.floor(len / this.pageSize) / 8);
      try {
        base = k.alloc(Math.max(len, 1), 4096, true);
        if (bitmapBytes > 0) written = k.alloc(bitmapBytes, 8, true);
      } catch (e) {
        if (base) k.free(base);
        throw err("LIMIT", "RAM too large to materialise", at, e instanceof Error ? e.message : String(e));
      }
      this.materialized += len;
      this.bitmapBytes += bitmapBytes;
    }
    if (this.blocks.length === this.tableCap) this.growTable(this.tableCap * 2);
    const i = this.blocks.length;
    this.blocks.push({ name, bytes, length, base, written, pageSize, mrAddr, compressed: 0, host: host !== undefined });
    const namePtr = this.names + i * NAME_SLOT;
    k.u8.set(bytes, namePtr);
    const t = new Uint32Array(k.memory.buffer, this.table + i * ENTRY, BLK.WORDS);
    t[BLK.NAME_PTR] = namePtr;
    t[BLK.NAME_LEN] = bytes.length;
    t[BLK.BASE] = base;
    t[BLK.LEN_LO] = Number(length & 0xffffffffn);
    // word 4: the bitmap of a materialised block, the high half of the length of one that is not
    if (base) t[BLK.WRITTEN] = written;
    else t[BLK.LEN_HI] = Number(length >> 32n);
    t[BLK.ZERO] = t[BLK.NORMAL] = t[BLK.XBZRLE] = 0;
  }

  /** The host's block for `name`, checked against the stream's length and the kernels' memory. */
  private hostBlock(name: string, length: bigint, at: number, err: InputError): RamBlockData | undefined {
    const provide = this.hostOptions.ramBlock;
    if (!provide) return undefined;
    const b = provide(name, Number(length));
    if (b === undefined) return undefined;
    const size = this.k.memory.buffer.byteLength;
    if (BigInt(b.length) !== length || !Number.isInteger(b.length)) {
      throw err(
        "MISMATCH",
        "RAM block length differs from the host's block",
        at,
        `block "${name}": the stream has 0x${length.toString(16)} bytes, the host 0x${b.length.toString(16)}`,
      );
    }
    if (!Number.isInteger(b.ptr) || b.ptr <= 0 || b.ptr + b.length > size) {
      throw err("RANGE", "the host's RAM block is not inside the kernels' memory", at, `block "${name}" at ${b.ptr}, ${b.length} bytes, memory ${size} bytes`);
    }
    if (this.blocks.some((o) => o.host && o.base < b.ptr + b.length && b.ptr < o.base + Number(o.length))) {
      throw err("RANGE", "the host's RAM blocks overlap", at, `block "${name}" at ${b.ptr}`);
    }
    return b;
  }

  private growTable(cap: number): void {
    const k = this.k;
    const table = k.alloc(cap * ENTRY, 8);
    const names = k.alloc(cap * NAME_SLOT, 8);
    if (this.tableCap > 0) {
      k.u8.copyWithin(table, this.table, this.table + this.blocks.length * ENTRY);
      k.u8.copyWithin(names, this.names, this.names + this.blocks.length * NAME_SLOT);
      k.free(this.table);
      k.free(this.names);
    }
    this.table = table;
    this.names = names;
    this.tableCap = cap;
    const t = new Uint32Array(k.memory.buffer, table, cap * BLK.WORDS);
    for (let i = 0; i < this.blocks.length; i++) t[i * BLK.WORDS + BLK.NAME_PTR] = names + i * NAME_SLOT;
  }

  /** COMPRESS_PAGE at `at`: new position, or -1 for more input. */
  private compressed(at: number, end: number, hi: number, lo: number, err: InputError, final: boolean): number {
    void final;
    const k = this.k;
    const ps = this.pageSize;
    const flags = lo & (ps - 1);
    let q = at + 8;
    let b: number;
    let name: Uint8Array | undefined;
    const st = () => new Uint32Array(k.memory.buffer, this.state, DEC.SIZE);
    if (flags & RAM_FLAG.CONTINUE) {
      b = st()[DEC.BLOCK]!;
      if (b >= this.blocks.length) throw err("BAD_VALUE", "RAM record with CONTINUE before any block was named", at);
    } else {
      if (end - q < 1) return -1;
      const n = k.u8[q]!;
      if (end - q < 1 + n) return -1;
      name = k.u8.subarray(q + 1, q + 1 + n);
      b = this.findByName(name);
      if (b < 0) throw err("BAD_VALUE", "unknown RAM block", at, `"${latin.decode(k.u8.slice(q + 1, q + 1 + n))}"`);
      q += 1 + n;
    }
    const blk = this.blocks[b]!;
    const addr = (BigInt(hi) << 32n) | BigInt((lo & ~(ps - 1)) >>> 0);
    if (addr + BigInt(ps) > blk.length)
      throw err("RANGE", "page offset outside its RAM block", at, `offset 0x${addr.toString(16)}, block "${blk.name}" has 0x${blk.length.toString(16)} bytes`);
    if (end - q < 4) return -1;
    const len = k.view.getUint32(q);
    const bound = ps + (ps >>> 12) + (ps >>> 14) + (ps >>> 25) + 13;
    if (len > bound) throw err("BAD_VALUE", "COMPRESS_PAGE length above compressBound(page)", at, `${len} > ${bound}`);
    q += 4;
    if (end - q < len) return -1;
    const inflate = this.ctx.options.inflate;
    if (!inflate) throw err("UNSUPPORTED", "COMPRESS_PAGE record, but no inflate function was given (options.inflate)", at);
    let page: Uint8Array;
    try {
      page = inflate(k.u8.slice(q, q + len), ps);
    } catch (e) {
      throw err("BAD_VALUE", "COMPRESS_PAGE data does not inflate", at, e instanceof Error ? e.message : String(e));
    }
    if (!(page instanceof Uint8Array) || page.length !== ps)
      throw err("BAD_VALUE", "COMPRESS_PAGE data does not inflate to one page", at, `${(page as Uint8Array | undefined)?.length} bytes`);
    if (blk.base) {
      if (!blk.host) this.account(ps, at, err);
      k.u8.set(page, blk.base + Number(addr));
      const i = Number(addr) / ps;
      if (blk.written) k.u8[blk.written + (i >>> 3)] = k.u8[blk.written + (i >>> 3)]! | (1 << (i & 7));
    }
    blk.compressed++;
    st()[DEC.BLOCK] = b;
    this.emit?.({ flags, addr, name, data: k.u8.subarray(q, q + len) });
    return q + len;
  }

  private kernelError(status: number, at: number, hi: number, lo: number, cur: number, err: InputError): VmstreamError {
    const k = this.k;
    const flags = lo & (this.pageSize - 1);
    const addr = (BigInt(hi) << 32n) | BigInt((lo & ~(this.pageSize - 1)) >>> 0);
    const named = () => {
      const n = k.u8[at + 8]!;
      return latin.decode(k.u8.slice(at + 9, at + 9 + n));
    };
    switch (status) {
      case DEC_STATUS.ERR_UNKNOWN_BLOCK:
        return err("BAD_VALUE", "unknown RAM block", at, `"${named()}"`);
      case DEC_STATUS.ERR_NO_BLOCK:
        return err("BAD_VALUE", "RAM record with CONTINUE before any block was named", at);
      case DEC_STATUS.ERR_OFFSET: {
        const b = flags & RAM_FLAG.CONTINUE ? this.blocks[cur] : this.blocks[this.findByName(k.u8.slice(at + 9, at + 9 + k.u8[at + 8]!))];
        return err(
          "RANGE",
          "page offset outside its RAM block",
          at,
          `offset 0x${addr.toString(16)}${b ? `, block "${b.name}" has 0x${b.length.toString(16)} bytes` : ""}`,
        );
      }
      case DEC_STATUS.ERR_XBZRLE_ENCODING:
        return err("BAD_VALUE", "XBZRLE record with an unknown encoding byte", at);
      case DEC_STATUS.ERR_XBZRLE_LENGTH:
        return err("BAD_VALUE", "XBZRLE record longer than a page", at);
      case DEC_STATUS.ERR_XBZRLE_DATA:
        return err("BAD_VALUE", "malformed XBZRLE data", at);
      default:
        return err("INTERNAL", `ramDecode returned ${status}`, at);
    }
  }

  lookupBlock(name: string): { readonly length: bigint } | undefined {
    return this.blocks.find((b) => b.name === name);
  }

  private counts(): number[][] {
    if (this.snapshot) return this.snapshot;
    if (this.blocks.length === 0) return [];
    const t = new Uint32Array(this.k.memory.buffer, this.table, this.blocks.length * BLK.WORDS);
    return this.blocks.map((_, i) => [t[i * BLK.WORDS + BLK.ZERO]!, t[i * BLK.WORDS + BLK.NORMAL]!, t[i * BLK.WORDS + BLK.XBZRLE]!]);
  }

  result(): RamResult {
    const c = this.counts();
    const live = () => !this.freed;
    const records = { zero: 0, normal: 0, xbzrle: 0, compressed: 0, eos: this.eos, memSize: this.memSizeRecords };
    const blocks = this.blocks.map((b, i) => {
      const pages = { zero: c[i]![0]!, normal: c[i]![1]!, xbzrle: c[i]![2]!, compressed: b.compressed };
      records.zero += pages.zero;
      records.normal += pages.normal;
      records.xbzrle += pages.xbzrle;
      records.compressed += pages.compressed;
      return new RamBlockResult(b.name, b.length, pages, b.base, this.k, live, b.pageSize, b.mrAddr, b.written, this.pageSize);
    });
    return { pageSize: this.pageSize, materialized: this.materialize, totalBytes: this.total, blocks, records, sections: this.sections };
  }

  finish(): void {
    if (this.snapshot) return;
    this.snapshot = this.counts();
    const k = this.k;
    if (this.tableCap > 0) {
      k.free(this.table);
      k.free(this.names);
    }
    if (this.state !== 0) k.free(this.state);
    this.table = this.names = this.state = this.tableCap = 0;
  }

  dispose(): void {
    this.finish();
    if (this.freed) return;
    this.freed = true;
    for (const b of this.blocks) {
      if (b.base && !b.host) {
        // given back zero (the pages written cleared, the rest never touched): the next zeroed region
        // carved from it costs nothing where nothing was written
        if (b.written) this.clearWritten(b);
        this.k.free(b.base, b.written !== 0);
      }
      if (b.written) this.k.free(b.written, true);
    }
  }

  /** Zero the pages of `b` its bitmap marks written, and the bitmap. */
  private clearWritten(b: Block): void {
    const u8 = this.k.u8;
    const ps = this.pageSize;
    const pages = Math.floor(Number(b.length) / ps);
    const map = u8.subarray(b.written, b.written + Math.ceil(pages / 8));
    for (let i = 0; i < map.length; i++) {
      const v = map[i]!;
      if (v === 0) continue;
      for (let j = 0; j < 8; j++) if ((v >> j) & 1) u8.fill(0, b.base + (i * 8 + j) * ps, b.base + (i * 8 + j + 1) * ps);
    }
    map.fill(0);
  }
}
