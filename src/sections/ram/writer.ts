// Writers of "ram" section payloads (wire-format §5, §6): MEM_SIZE block lists, single records (ZERO, PAGE,
// XBZRLE, COMPRESS_PAGE, EOS) with QEMU's CONTINUE rule, and whole blocks in the kernels' memory sent through
// `kernels.ramEncode` (zero detection, XBZRLE against an XbzrleCache, a send bitmap), a window per call.
// Browser-safe.
import { sameBytes } from "../../io/chunks.js";
import { VmstreamError } from "../../io/errors.js";
import type { ByteWriter } from "../../io/writer.js";
import { ENC, type Kernels, RAM_ENCODE, RAM_FLAG, SLOT_INSERT } from "../../kernels/types.js";
import type { RamBlockData, RamBlockSpec, RamRecord } from "./format.js";

const enc = new TextEncoder();

export interface RamPassStats {
  zero: number;
  normal: number;
  xbzrle: number;
  unchanged: number;
  overflow: number;
  bytes: number;
}

/**
 * Where `sendBlock` finds XBZRLE cache slots: slot k at `ptr + k * pageSize` in the kernels' memory, and the
 * kernel's slot map for a page range (0 = no map: no XBZRLE). XbzrleCache is QEMU's cache; a source that keeps
 * a shadow copy of each block can use the shadow itself, one slot per page.
 */
export interface PageCache {
  readonly ptr: number;
  prepare(name: string, length: number, first: number, end: number, wanted: (page: number) => boolean): number;
}

/**
 * QEMU's XBZRLE page cache, for an encoder: `bytes / pageSize` rounded down to a power of two slots, a page at
 * ram address A goes to slot (A / pageSize) mod slots and is a hit only when that slot holds A (a newer page
 * mapping to the same slot evicts it). Policy (as QEMU 7.2's save_xbzrle_page, simplified):
 *  - inactive (before `activate()`, QEMU: before the first complete pass): pages are sent normally, nothing cached;
 *  - active, miss: the page is sent normally and inserted (not in the last stage, where QEMU does not insert);
 *  - active, hit: an XBZRLE record against the slot, nothing when unchanged, a PAGE on overflow; the slot is
 *    updated to the page sent;
 *  - a ZERO record for a page with a slot zeroes the slot.
 * Ram addresses are the blocks' offsets in the order they are first seen, each block aligned to a page
 * (QEMU's ram_addr layout may differ: only the slot aliasing pattern depends on it).
 */
export class XbzrleCache implements PageCache {
  readonly slots: number;
  /** Address of slot 0 in the kernels' memory. */
  readonly ptr: number;
  active = false;
  /** QEMU's last stage: misses are not inserted. */
  lastStage = false;
  private readonly owner: Float64Array;
  private readonly bases = new Map<string, number>();
  private nextBase = 0;
  private slotMap = 0;
  private slotMapPages = 0;
  hits = 0;
  misses = 0;

  constructor(
    readonly kernels: Kernels,
    readonly bytes: number,
    readonly pageSize: number,
  ) {
    const n = Math.floor(bytes / pageSize);
    if (n < 1) throw new VmstreamError("RANGE", "XBZRLE cache smaller than one page", { detail: `${bytes} bytes` });
    this.slots = 2 ** Math.floor(Math.log2(n));
    this.ptr = kernels.alloc(this.slots * pageSize, 4096);
    kernels.u8.fill(0, this.ptr, this.ptr + this.slots * pageSize);
    this.owner = new Float64Array(this.slots).fill(-1);
  }

  activate(): void {
    this.active = true;
  }

  /** The ram address of a block's first byte (assigned on first use). */
  base(name: string, length: number): number {
    let b = this.bases.get(name);
    if (b === undefined) {
      b = this.nextBase;
      this.bases.set(name, b);
      this.nextBase += Math.ceil(length / this.pageSize) * this.pageSize;
    }
    return b;
  }

  /** Is the page at `addr` (ram address) cached? */
  cached(addr: number): boolean {
    return this.owner[Math.floor(addr / this.pageSize) % this.slots] === addr;
  }

  /**
   * The kernel's slot map (u32 per block page) for pages [first, end) of a block, deciding hit/miss/insert in
   * page order for the pages `wanted` says will be considered. Returns its address (0 when inactive).
   */
  prepare(name: string, length: number, first: number, end: number, wanted: (page: number) => boolean): number {
    if (!this.active) return 0;
    const k = this.kernels;
    const pages = Math.ceil(length / this.pageSize);
    if (pages > this.slotMapPages) {
      if (this.slotMap) k.free(this.slotMap);
      this.slotMap = k.alloc(pages * 4, 8);
      this.slotMapPages = pages;
    }
    const map = new Uint32Array(k.memory.buffer, this.slotMap, pages);
    map.fill(0);
    const base = this.base(name, length);
    for (let p = first; p < end; p++) {
      if (!wanted(p)) continue;
      const addr = base + p * this.pageSize;
      const s = Math.floor(addr / this.pageSize) % this.slots;
      if (this.owner[s] === addr) {
        this.hits++;
        map[p] = s + 1;
      } else {
        this.misses++;
        if (!this.lastStage) {
          this.owner[s] = addr;
          map[p] = ((s + 1) | SLOT_INSERT) >>> 0;
        }
      }
    }
    return this.slotMap;
  }

  dispose(): void {
    const k = this.kernels;
    k.free(this.ptr);
    if (this.slotMap) k.free(this.slotMap);
    this.slotMap = 0;
  }
}

export interface RamWriterOptions {
  /** MEM_SIZE entries carry page sizes / MemoryRegion addresses (as in RamOptions of the decoder). */
  readonly blockPageSize?: boolean | ((name: string) => boolean);
  readonly ignoreShared?: boolean;
  /** Bytes of the kernels' output window for `sendBlock` (default 1 MiB). */
  readonly window?: number;
}

/**
 * Writes ram payload records on a ByteWriter. The "current block" (CONTINUE) persists across sections, as on
 * QEMU's QEMUFile: use one RamWriter per stream.
 */
export class RamWriter {
  private last: Uint8Array | undefined;
  private out = 0;
  private outCap = 0;
  private state = 0;
  private namePtr = 0;
  /** The last block name sendBlock encoded (a live source calls it once per PART with the same block). */
  private nameOf: { s: string; b: Uint8Array } | undefined;

  constructor(
    readonly w: ByteWriter,
    readonly pageSize = 4096,
    readonly options: RamWriterOptions = {},
    readonly kernels?: Kernels,
  ) {
    if (pageSize < 1024 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
      throw new VmstreamError("RANGE", "RAM page size must be a power of two in 1024..65536", { detail: String(pageSize) });
    }
  }

  /** The block a CONTINUE record written now would refer to. */
  get currentBlock(): Uint8Array | undefined {
    return this.last;
  }

  /** Forget the current block (QEMU: the RAM list changed): the next page record names its block. */
  resetContinue(): void {
    this.last = undefined;
  }

  private header(addr: bigint, flags: number): void {
    this.w.be64(addr | BigInt(flags));
  }

  /** The MEM_SIZE record: total of the lengths, then the entries (no count, no terminator). */
  memSize(blocks: readonly RamBlockSpec[], total?: bigint): void {
    const t = total ?? blocks.reduce((a, b) => a + b.length, 0n);
    this.header(t, RAM_FLAG.MEM_SIZE);
    this.memSizeEntries(blocks);
  }

  private memSizeEntries(blocks: readonly RamBlockSpec[]): void {
    const o = this.options;
    for (const b of blocks) {
      this.w.cstr(b.name);
      this.w.be64(b.length);
      const ps = typeof o.blockPageSize === "function" ? o.blockPageSize(b.name) : o.blockPageSize === true;
      if (ps) this.w.be64(b.pageSize ?? BigInt(this.pageSize));
      if (o.ignoreShared) this.w.be64(b.mrAddr ?? 0n);
    }
  }

  eos(): void {
    this.header(0n, RAM_FLAG.EOS);
  }

  private pageHeader(name: string | Uint8Array, offset: bigint, flags: number): void {
    const b = typeof name === "string" ? enc.encode(name) : name;
    if ((offset & BigInt(this.pageSize - 1)) !== 0n) throw new VmstreamError("RANGE", "page offset not page aligned", { detail: offset.toString(16) });
    if (sameBytes(this.last, b)) this.header(offset, flags | RAM_FLAG.CONTINUE);
    else {
      this.header(offset, flags);
      this.w.cstr(b);
      this.last = b;
    }
  }

  zero(block: string | Uint8Array, offset: bigint, fill = 0): void {
    this.pageHeader(block, offset, RAM_FLAG.ZERO);
    this.w.u8(fill);
  }

  /**
   * A ZERO record (fill 0) at a page-aligned byte `offset` < 2^53, with the CONTINUE rule: the hot path of a
   * source that classifies pages itself (no BigInt). `block` should be the same bytes object for every call.
   */
  zeroAt(block: Uint8Array, offset: number): void {
    this.headerAt(block, offset, RAM_FLAG.ZERO);
    this.w.u8(0);
  }

  /** A PAGE record at a page-aligned byte `offset` < 2^53: page() without BigInt, as zeroAt. */
  pageAt(block: Uint8Array, offset: number, data: Uint8Array): void {
    if (data.length !== this.pageSize) throw new VmstreamError("RANGE", "a PAGE record carries one page", { detail: `${data.length} bytes` });
    this.headerAt(block, offset, RAM_FLAG.PAGE);
    this.w.borrow(data);
  }

  private headerAt(block: Uint8Array, offset: number, flag: number): void {
    const hi = Math.floor(offset / 4294967296);
    const lo = offset - hi * 4294967296;
    if (lo & (this.pageSize - 1)) throw new VmstreamError("RANGE", "page offset not page aligned", { detail: offset.toString(16) });
    const w = this.w;
    if (this.last === block || sameBytes(this.last, block)) w.be64hl(hi, (lo | flag | RAM_FLAG.CONTINUE) >>> 0);
    else {
      w.be64hl(hi, (lo | flag) >>> 0);
      w.cstr(block);
      this.last = block;
    }
  }

  page(block: string | Uint8Array, offset: bigint, data: Uint8Array): void {
    if (data.length !== this.pageSize) throw new VmstreamError("RANGE", "a PAGE record carries one page", { detail: `${data.length} bytes` });
    this.pageHeader(block, offset, RAM_FLAG.PAGE);
    this.w.borrow(data);
  }

  xbzrle(block: string | Uint8Array, offset: bigint, data: Uint8Array): void {
    if (data.length > this.pageSize) throw new VmstreamError("RANGE", "XBZRLE data longer than a page");
    this.pageHeader(block, offset, RAM_FLAG.XBZRLE);
    this.w.u8(1);
    this.w.be16(data.length);
    this.w.borrow(data);
  }

  compressed(block: string | Uint8Array, offset: bigint, data: Uint8Array): void {
    this.pageHeader(block, offset, RAM_FLAG.COMPRESS_PAGE);
    this.w.be32(data.length);
    this.w.borrow(data);
  }

  /**
   * Write a record exactly as given (flags incl. CONTINUE, name, body) — the replay path. Data are borrowed.
   * The current block follows the record, so later convenience calls keep QEMU's CONTINUE rule.
   */
  record(r: RamRecord): void {
    const w = this.w;
    this.header(r.addr, r.flags);
    const kind = r.flags & ~RAM_FLAG.CONTINUE;
    if (kind === RAM_FLAG.MEM_SIZE) {
      for (const b of r.blocks ?? []) {
        w.cstr(b.name);
        w.be64(b.length);
        if (b.pageSize !== undefined) w.be64(b.pageSize);
        if (b.mrAddr !== undefined) w.be64(b.mrAddr);
      }
      return;
    }
    if (kind === RAM_FLAG.EOS || kind === RAM_FLAG.HOOK) return;
    if (!(r.flags & RAM_FLAG.CONTINUE)) {
      if (!r.name) throw new VmstreamError("STATE", "a RAM page record without CONTINUE needs a block name");
      w.cstr(r.name);
      this.last = r.name;
    }
    switch (kind) {
      case RAM_FLAG.ZERO:
        w.u8(r.fill ?? 0);
        return;
      case RAM_FLAG.PAGE:
        w.borrow(r.data!);
        return;
      case RAM_FLAG.XBZRLE:
        w.u8(r.encoding ?? 1);
        w.be16(r.data!.length);
        w.borrow(r.data!);
        return;
      case RAM_FLAG.COMPRESS_PAGE:
        w.be32(r.data!.length);
        w.borrow(r.data!);
        return;
      default:
        throw new VmstreamError("BAD_VALUE", "unknown RAM record kind", { detail: `flags 0x${r.flags.toString(16)}` });
    }
  }

  /**
   * Send pages [firstPage, endPage) of a block in the kernels' memory with `ramEncode`: every page, or those
   * whose bit is set in the bitmap at `sendMapPtr` (bits of pages sent are cleared). Zero pages become ZERO
   * records (unless `zeroDetect` is false); with an active cache, hits become XBZRLE records (or nothing).
   */
  sendBlock(
    block: RamBlockData,
    opts: { firstPage?: number; endPage?: number; sendMapPtr?: number; zeroDetect?: boolean; cache?: PageCache } = {},
  ): RamPassStats {
    const k = this.kernels;
    if (!k) throw new VmstreamError("STATE", "sendBlock needs the kernels (RamWriter constructor)");
    const ps = this.pageSize;
    const pages = Math.floor(block.length / ps);
    const first = opts.firstPage ?? 0;
    const end = opts.endPage ?? pages;
    if (this.nameOf?.s !== block.name) this.nameOf = { s: block.name, b: enc.encode(block.name) };
    const name = this.nameOf.b;
    if (this.outCap === 0) {
      this.outCap = Math.max(this.options.window ?? 1 << 20, 8 + 1 + 255 + 3 + ps);
      this.out = k.alloc(this.outCap, 64);
      this.state = k.alloc(ENC.SIZE * 4, 8);
      this.namePtr = k.alloc(256, 8);
    }
    k.u8.set(name, this.namePtr);
    const sendMap = opts.sendMapPtr ?? 0;
    const cache = opts.cache;
    let slotMap = 0;
    if (cache) {
      const bits = sendMap ? k.u8.slice(sendMap, sendMap + Math.ceil(pages / 8)) : undefined;
      slotMap = cache.prepare(block.name, block.length, first, end, (p) => !bits || (bits[p >> 3]! & (1 << (p & 7))) !== 0);
    }
    const stats: RamPassStats = { zero: 0, normal: 0, xbzrle: 0, unchanged: 0, overflow: 0, bytes: 0 };
    let next = first;
    let cont = sameBytes(this.last, name);
    const zero = opts.zeroDetect === false ? 0 : RAM_ENCODE.ZERO_DETECT;
    while (next < end) {
      const n = k.ramEncode(
        block.ptr,
        ps,
        next,
        end,
        sendMap,
        slotMap,
        cache ? cache.ptr : 0,
        this.namePtr,
        name.length,
        this.out,
        this.outCap,
        zero | (cont ? RAM_ENCODE.CONTINUE : 0),
        this.state,
      );
      const st = new Uint32Array(k.memory.buffer, this.state, ENC.SIZE);
      const records = st[ENC.ZERO]! + st[ENC.NORMAL]! + st[ENC.XBZRLE]!;
      stats.zero += st[ENC.ZERO]!;
      stats.normal += st[ENC.NORMAL]!;
      stats.xbzrle += st[ENC.XBZRLE]!;
      stats.unchanged += st[ENC.UNCHANGED]!;
      stats.overflow += st[ENC.OVERFLOW]!;
      stats.bytes += n;
      // bulk: a window that does not fit starts a new (recycled) buffer instead of moving the PART so far
      if (n > 0) this.w.bulk(k.u8.subarray(this.out, this.out + n));
      if (records > 0) {
        cont = st[ENC.CONTINUE] === 1;
        if (cont) this.last = name;
      }
      const np = st[ENC.NEXT_PAGE]!;
      if (np <= next && n === 0) throw new VmstreamError("INTERNAL", "ramEncode made no progress", { detail: `page ${next}` });
      next = np;
    }
    return stats;
  }

  /** Give back the kernels' memory of `sendBlock`. */
  dispose(): void {
    const k = this.kernels;
    if (!k || this.outCap === 0) return;
    k.free(this.out);
    k.free(this.state);
    k.free(this.namePtr);
    this.outCap = 0;
  }
}
