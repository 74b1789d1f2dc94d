// The pure-TypeScript twin of assembly/ram.ts: QEMU 7.2 RAM page records (wire-format §5).
// Same arguments (plus the memory bytes first), same bytes and state out. The contract is in
// src/kernels/types.ts.
import type { RamEncodeArgs } from "../types.js";
import { isZeroPage } from "./pages.js";
import { xbzrleDecode, xbzrleEncode } from "./xbzrle.js";

const F_ZERO = 0x02;
const F_PAGE = 0x08;
const F_EOS = 0x10;
const F_CONTINUE = 0x20;
const F_XBZRLE = 0x40;

const OPT_ZERO_DETECT = 1;
const OPT_CONTINUE = 2;

const SLOT_INSERT = 0x8000_0000;

/** Room a page needs at most: header, name (u8 + 255), XBZRLE head (u8 + be16), page. */
const RESERVE = 8 + 1 + 255 + 3;

const NEED_MORE = 0;
const EOS = 1;
const OTHER = 2;
const ERR_UNKNOWN_BLOCK = -1;
const ERR_NO_BLOCK = -2;
const ERR_OFFSET = -3;
const ERR_XBZRLE_ENCODING = -4;
const ERR_XBZRLE_LENGTH = -5;
const ERR_XBZRLE_DATA = -6;

const NO_BLOCK = 0xffff_ffff;
const TWO32 = 0x1_0000_0000;

let cachedBuf: ArrayBufferLike | undefined;
let cachedView: DataView | undefined;

function viewOf(u8: Uint8Array): DataView {
  if (cachedView === undefined || cachedBuf !== u8.buffer || cachedView.byteLength !== u8.buffer.byteLength) {
    cachedBuf = u8.buffer;
    cachedView = new DataView(u8.buffer);
  }
  return cachedView;
}

// ---------------------------------------------------------------------------------------------
// Encoder

/** Per-call encoder state. */
class Enc {
  pos = 0;
  cont = false;
  zero = 0;
  normal = 0;
  xbzrle = 0;
  unchanged = 0;
  overflow = 0;
  xbzrleBytes = 0;

  constructor(
    readonly u8: Uint8Array,
    readonly dv: DataView,
    readonly blockPtr: number,
    readonly pageSize: number,
    readonly slotMapPtr: number,
    readonly cachePtr: number,
    readonly namePtr: number,
    readonly nameLen: number,
    readonly out: number,
    readonly zeroDetect: boolean,
  ) {}

  headLen(): number {
    return this.cont ? 8 : 9 + this.nameLen;
  }

  /** Record head at `dst`: be64 (offset | flags) [+ u8 nameLen + name]. */
  putHead(dst: number, offset: number, flags: number): void {
    const dv = this.dv;
    const hi = Math.floor(offset / TWO32);
    const lo = offset - hi * TWO32;
    dv.setUint32(dst, hi);
    if (this.cont) {
      dv.setUint32(dst + 4, (lo | flags | F_CONTINUE) >>> 0);
    } else {
      dv.setUint32(dst + 4, (lo | flags) >>> 0);
      this.u8[dst + 8] = this.nameLen;
      this.u8.copyWithin(dst + 9, this.namePtr, this.namePtr + this.nameLen);
      this.cont = true;
    }
  }

  putPage(src: number, offset: number): void {
    const h = this.headLen();
    const dst = this.out + this.pos;
    this.putHead(dst, offset, F_PAGE);
    this.u8.copyWithin(dst + h, src, src + this.pageSize);
    this.pos += h + this.pageSize;
    this.normal++;
  }

  page(page: number): void {
    const u8 = this.u8;
    const pageSize = this.pageSize;
    const src = this.blockPtr + page * pageSize;
    const offset = page * pageSize;
    const slot = this.slotMapPtr ? this.dv.getUint32(this.slotMapPtr + page * 4, true) : 0;
    const slotNo = (slot & ~SLOT_INSERT) >>> 0;
    const slotPtr = this.cachePtr + (slotNo - 1) * pageSize;

    if (this.zeroDetect && isZeroPage(u8, src, pageSize)) {
      const dst = this.out + this.pos;
      const h = this.headLen();
      this.putHead(dst, offset, F_ZERO);
      u8[dst + h] = 0;
      this.pos += h + 1;
      this.zero++;
      // The destination page is zero now: the cached copy must be too (inserts included).
      if (slotNo) u8.fill(0, slotPtr, slotPtr + pageSize);
    } else if (slotNo !== 0 && !(slot & SLOT_INSERT)) {
      const h = this.headLen();
      const dst = this.out + this.pos;
      // limit = page size, but at most what the be16 length can say (pages > 64 KiB).
      const n = xbzrleEncode(u8, slotPtr, src, dst + h + 3, Math.min(pageSize, 0xffff), pageSize);
      if (n === 0) {
        this.unchanged++;
      } else {
        if (n < 0) {
          this.overflow++;
          this.putPage(src, offset);
        } else {
          this.putHead(dst, offset, F_XBZRLE);
          u8[dst + h] = 1;
          this.dv.setUint16(dst + h + 1, n);
          this.pos += h + 3 + n;
          this.xbzrle++;
          this.xbzrleBytes += n;
        }
        u8.copyWithin(slotPtr, src, src + pageSize);
      }
    } else {
      this.putPage(src, offset);
      if (slotNo) u8.copyWithin(slotPtr, src, src + pageSize);
    }
  }
}

export function ramEncode(
  u8: Uint8Array,
  ...[blockPtr, pageSize, firstPage, endPage, sendMapPtr, slotMapPtr, cachePtr, namePtr, nameLen, outPtr, outCap, options, statePtr]: RamEncodeArgs
): number {
  const dv = viewOf(u8);
  const e = new Enc(u8, dv, blockPtr, pageSize, slotMapPtr, cachePtr, namePtr, nameLen, outPtr, (options & OPT_ZERO_DETECT) !== 0);
  e.cont = (options & OPT_CONTINUE) !== 0;
  const need = RESERVE + pageSize;
  let next = endPage;

  if (firstPage < endPage) {
    if (!sendMapPtr) {
      for (let p = firstPage; p < endPage; p++) {
        if (outCap - e.pos < need) {
          next = p;
          break;
        }
        e.page(p);
      }
    } else {
      // Send bitmap, a byte at a time; bits of handled pages are cleared.
      const bFirst = firstPage >>> 3;
      const bEnd = (endPage + 7) >>> 3;
      outer: for (let b = bFirst; b < bEnd; b++) {
        const byte = u8[sendMapPtr + b]!;
        let bits = byte;
        if (b === bFirst) bits &= (0xff << (firstPage & 7)) & 0xff;
        if ((b + 1) * 8 > endPage) bits &= (1 << (endPage & 7)) - 1;
        if (!bits) continue;
        let handled = 0;
        while (bits) {
          const low = bits & -bits;
          const p = b * 8 + (31 - Math.clz32(low));
          if (outCap - e.pos < need) {
            next = p;
            if (handled) u8[sendMapPtr + b] = byte & ~handled;
            break outer;
          }
          e.page(p);
          handled |= low;
          bits ^= low;
        }
        u8[sendMapPtr + b] = byte & ~handled;
      }
    }
  }

  const s = statePtr;
  dv.setUint32(s, next, true);
  dv.setUint32(s + 4, e.pos, true);
  dv.setUint32(s + 8, e.zero, true);
  dv.setUint32(s + 12, e.normal, true);
  dv.setUint32(s + 16, e.xbzrle, true);
  dv.setUint32(s + 20, e.unchanged, true);
  dv.setUint32(s + 24, e.overflow, true);
  dv.setUint32(s + 28, e.cont ? 1 : 0, true);
  dv.setUint32(s + 32, e.xbzrleBytes, true);
  return e.pos;
}

// ---------------------------------------------------------------------------------------------
// Decoder

function findBlock(u8: Uint8Array, dv: DataView, tablePtr: number, blockCount: number, name: number, n: number): number {
  for (let b = 0; b < blockCount; b++) {
    const ent = tablePtr + b * 32;
    if (dv.getUint32(ent + 4, true) !== n) continue;
    const bn = dv.getUint32(ent, true);
    let i = 0;
    while (i < n && u8[bn + i] === u8[name + i]) i++;
    if (i === n) return b;
  }
  return NO_BLOCK;
}

/** One "small ULEB128" at `src` (2 bytes readable): value + bytes * 65536, or -1. */
function uleb(u8: Uint8Array, src: number): number {
  const b0 = u8[src]!;
  if (!(b0 & 0x80)) return b0 + 0x10000;
  const b1 = u8[src + 1]!;
  if (b1 & 0x80) return -1;
  return ((b0 & 0x7f) | (b1 << 7)) + 0x20000;
}

/** Whether xbzrleDecode would accept the data (wire-format §6.3), writing nothing. */
function xbzrleValid(u8: Uint8Array, src: number, slen: number, dlen: number): boolean {
  let i = 0;
  let d = 0;
  while (i < slen) {
    if (slen - i < 2) return false;
    let r = uleb(u8, src + i);
    if (r < 0) return false;
    let count = r & 0xffff;
    if (i !== 0 && count === 0) return false;
    i += r >>> 16;
    d += count;
    if (d > dlen) return false;
    if (slen - i < 2) return false;
    r = uleb(u8, src + i);
    if (r < 0) return false;
    count = r & 0xffff;
    if (count === 0) return false;
    i += r >>> 16;
    if (d + count > dlen || i + count > slen) return false;
    d += count;
    i += count;
  }
  return true;
}

/** Written-page bitmap (BLK.WRITTEN): bit i = page i may hold non-zero bytes (little-endian bit order). */
function isWritten(u8: Uint8Array, bitmap: number, page: number): boolean {
  return ((u8[bitmap + (page >>> 3)]! >>> (page & 7)) & 1) !== 0;
}

/** Atomic on a shared memory, where other threads may set other bits of the same byte (as assembly/ram.ts). */
function markWritten(u8: Uint8Array, bitmap: number, page: number): void {
  const at = bitmap + (page >>> 3);
  if (u8.buffer instanceof ArrayBuffer) u8[at] = u8[at]! | (1 << (page & 7));
  else Atomics.or(u8, at, 1 << (page & 7));
}

export function ramDecode(u8: Uint8Array, inPtr: number, inLen: number, tablePtr: number, blockCount: number, pageSize: number, statePtr: number): number {
  const dv = viewOf(u8);
  let block = dv.getUint32(statePtr, true);
  let pos = 0;
  let records = 0;
  let status = NEED_MORE;
  let hdrHi = 0;
  let hdrLo = 0;
  const pmask = pageSize - 1;

  for (;;) {
    const rem = inLen - pos;
    if (rem < 8) break;
    const rec = inPtr + pos;
    const hi = dv.getUint32(rec);
    const lo = dv.getUint32(rec + 4);
    if (hi === 0 && lo === F_EOS) {
      hdrLo = lo;
      pos += 8;
      records++;
      status = EOS;
      break;
    }
    const kind = lo & pmask & ~F_CONTINUE;
    if (kind !== F_ZERO && kind !== F_PAGE && kind !== F_XBZRLE) {
      hdrHi = hi;
      hdrLo = lo;
      status = OTHER;
      break;
    }

    let p = 8;
    let b: number;
    if (lo & F_CONTINUE) {
      if (block >= blockCount) status = ERR_NO_BLOCK;
      b = block;
    } else {
      if (rem < 9) break;
      const n = u8[rec + 8]!;
      if (rem - 9 < n) break;
      b = findBlock(u8, dv, tablePtr, blockCount, rec + 9, n);
      if (b === NO_BLOCK) status = ERR_UNKNOWN_BLOCK;
      p = 9 + n;
    }
    if (status !== NEED_MORE) {
      hdrHi = hi;
      hdrLo = lo;
      break;
    }

    // offset + pageSize <= used_length, in 64 bits (a materialised block lives below 4 GiB).
    const ent = tablePtr + b * 32;
    const base = dv.getUint32(ent + 8, true);
    const word4 = dv.getUint32(ent + 16, true);
    const lenHi = base ? 0 : word4;
    // a materialised block's written-page bitmap (BLK.WRITTEN), or 0
    const written = base ? word4 : 0;
    const lenLo = dv.getUint32(ent + 12, true);
    const addrLo = (lo & ~pmask) >>> 0;
    // addrLo <= 2^32 - pageSize, so with hi < lenHi at least pageSize bytes always remain.
    if (hi > lenHi || (hi === lenHi && addrLo + pageSize > lenLo)) {
      hdrHi = hi;
      hdrLo = lo;
      status = ERR_OFFSET;
      break;
    }
    const page = base + addrLo;

    if (kind === F_ZERO) {
      if (rem - p < 1) break;
      const fill = u8[rec + p]!;
      p += 1;
      // A zero fill on a page that is already zero leaves the memory untouched; a page whose bit is
      // clear in the written-page bitmap is known to be zero and is not even read.
      if (base) {
        if (fill !== 0) {
          u8.fill(fill, page, page + pageSize);
          if (written) markWritten(u8, written, addrLo / pageSize);
        } else if ((!written || isWritten(u8, written, addrLo / pageSize)) && !isZeroPage(u8, page, pageSize)) {
          u8.fill(0, page, page + pageSize);
        }
      }
      dv.setUint32(ent + 20, (dv.getUint32(ent + 20, true) + 1) >>> 0, true);
    } else if (kind === F_PAGE) {
      if (rem - p < pageSize) break;
      if (base) {
        u8.copyWithin(page, rec + p, rec + p + pageSize);
        if (written) markWritten(u8, written, addrLo / pageSize);
      }
      p += pageSize;
      dv.setUint32(ent + 24, (dv.getUint32(ent + 24, true) + 1) >>> 0, true);
    } else {
      if (rem - p < 3) break;
      const x = rec + p;
      const len16 = dv.getUint16(x + 1);
      if (u8[x] !== 1) {
        status = ERR_XBZRLE_ENCODING;
      } else if (len16 > pageSize) {
        status = ERR_XBZRLE_LENGTH;
      } else {
        if (rem - p - 3 < len16) break;
        const ok = base ? xbzrleDecode(u8, x + 3, len16, page, pageSize) >= 0 : xbzrleValid(u8, x + 3, len16, pageSize);
        if (!ok) status = ERR_XBZRLE_DATA;
        else if (written) markWritten(u8, written, addrLo / pageSize);
      }
      if (status !== NEED_MORE) {
        hdrHi = hi;
        hdrLo = lo;
        break;
      }
      p += 3 + len16;
      dv.setUint32(ent + 28, (dv.getUint32(ent + 28, true) + 1) >>> 0, true);
    }
    block = b;
    pos += p;
    records++;
  }

  dv.setUint32(statePtr, block, true);
  dv.setUint32(statePtr + 4, pos, true);
  dv.setUint32(statePtr + 8, records, true);
  dv.setUint32(statePtr + 12, status === EOS ? pos - 8 : pos, true);
  dv.setUint32(statePtr + 16, hdrHi, true);
  dv.setUint32(statePtr + 20, hdrLo, true);
  return status;
}
