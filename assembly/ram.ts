// QEMU 7.2 RAM page records (wire-format §5): the encoder that turns block pages into ZERO /
// PAGE / XBZRLE records in an output window, and the decoder that applies such records to a
// table of blocks. The contract (argument meaning, state layouts, status codes) is in
// src/kernels/types.ts; src/kernels/js/ram.ts is the byte-for-byte TypeScript twin.
//
// Record: be64 (offset | flags), then unless CONTINUE: u8 nameLen + name, then the body
// (ZERO: u8 fill; PAGE: pageSize bytes; XBZRLE: u8 1, be16 len, len bytes).
//
// No static data (the import-memory build must have no data segments): constants only.

import { isZeroPage } from "./pages";
import { xbzrleEncode, xbzrleDecode } from "./xbzrle";

// Record flags (RAM_FLAG).
const F_ZERO: u32 = 0x02;
const F_PAGE: u32 = 0x08;
const F_EOS: u32 = 0x10;
const F_CONTINUE: u32 = 0x20;
const F_XBZRLE: u32 = 0x40;

// ramEncode options (RAM_ENCODE).
const OPT_ZERO_DETECT: u32 = 1;
const OPT_CONTINUE: u32 = 2;

const SLOT_INSERT: u32 = 0x8000_0000;

// Room a page needs at most: header, name (u8 + 255), XBZRLE head (u8 + be16), page.
const RESERVE: u32 = 8 + 1 + 255 + 3;

// ramDecode status codes (DEC_STATUS).
const NEED_MORE: i32 = 0;
const EOS: i32 = 1;
const OTHER: i32 = 2;
const ERR_UNKNOWN_BLOCK: i32 = -1;
const ERR_NO_BLOCK: i32 = -2;
const ERR_OFFSET: i32 = -3;
const ERR_XBZRLE_ENCODING: i32 = -4;
const ERR_XBZRLE_LENGTH: i32 = -5;
const ERR_XBZRLE_DATA: i32 = -6;

const NO_BLOCK: u32 = 0xffff_ffff;

// ---------------------------------------------------------------------------------------------
// Encoder

// Per-call encoder state (wasm globals, not memory).
let ePos: u32 = 0; // bytes written
let eCont: u32 = 0; // F_CONTINUE once the stream's last record named this block
let eZero: u32 = 0;
let eNormal: u32 = 0;
let eXbzrle: u32 = 0;
let eUnchanged: u32 = 0;
let eOverflow: u32 = 0;
let eXbzrleBytes: u32 = 0;

/** Bytes of the record head (header + optional name) of the next record. */
// @ts-ignore: decorator
@inline function headLen(nameLen: u32): u32 {
  return eCont ? 8 : 9 + nameLen;
}

/** Writes the record head at `dst` (its length is headLen()); later records continue the block. */
// @ts-ignore: decorator
@inline function putHead(dst: usize, offset: u64, flags: u32, namePtr: usize, nameLen: u32): void {
  if (eCont) {
    store<u64>(dst, bswap<u64>(offset | <u64>(flags | F_CONTINUE)));
  } else {
    store<u64>(dst, bswap<u64>(offset | <u64>flags));
    store<u8>(dst, <u8>nameLen, 8);
    memory.copy(dst + 9, namePtr, nameLen);
    eCont = F_CONTINUE;
  }
}

/** A PAGE record for the page at `src` at the current output position. */
// @ts-ignore: decorator
@inline function putPage(out: usize, src: usize, offset: u64, pageSize: u32, namePtr: usize, nameLen: u32): void {
  const h = headLen(nameLen);
  const dst = out + ePos;
  putHead(dst, offset, F_PAGE, namePtr, nameLen);
  memory.copy(dst + h, src, pageSize);
  ePos += h + pageSize;
  eNormal++;
}

/** One page: ZERO, XBZRLE, nothing (unchanged) or PAGE; then the cache slot update. */
// @ts-ignore: decorator
@inline function encodePage(
  page: u32, blockPtr: usize, pageSize: u32, slotMapPtr: usize, cachePtr: usize,
  namePtr: usize, nameLen: u32, out: usize, zeroDetect: bool,
): void {
  const src = blockPtr + <usize>page * pageSize;
  const offset = <u64>page * <u64>pageSize;
  let slot: u32 = 0;
  if (slotMapPtr) slot = load<u32>(slotMapPtr + (<usize>page << 2));
  const slotNo = slot & ~SLOT_INSERT; // k: slot k-1, 0 = none
  const slotPtr = cachePtr + <usize>(slotNo - 1) * pageSize;

  if (zeroDetect && isZeroPage(src, pageSize)) {
    const dst = out + ePos;
    const h = headLen(nameLen);
    putHead(dst, offset, F_ZERO, namePtr, nameLen);
    store<u8>(dst + h, 0);
    ePos += h + 1;
    eZero++;
    // The page now is zero on the destination: a cached copy must say so too (for an insert
    // as well, else the slot would keep a stale page that later deltas are computed against).
    if (slotNo) memory.fill(slotPtr, 0, pageSize);
  } else if (slotNo != 0 && !(slot & SLOT_INSERT)) {
    const h = headLen(nameLen);
    const dst = out + ePos;
    // limit = page size, but at most what the be16 length can say (pages > 64 KiB).
    const n = xbzrleEncode(slotPtr, src, dst + h + 3, pageSize > 0xffff ? 0xffff : <i32>pageSize, pageSize);
    if (n == 0) {
      eUnchanged++; // slot == page already: no record, no copy
    } else {
      if (n < 0) {
        eOverflow++;
        putPage(out, src, offset, pageSize, namePtr, nameLen);
      } else {
        putHead(dst, offset, F_XBZRLE, namePtr, nameLen);
        store<u8>(dst + h, 1);
        store<u16>(dst + h + 1, bswap<u16>(<u16>n));
        ePos += h + 3 + <u32>n;
        eXbzrle++;
        eXbzrleBytes += <u32>n;
      }
      memory.copy(slotPtr, src, pageSize);
    }
  } else {
    putPage(out, src, offset, pageSize, namePtr, nameLen);
    if (slotNo) memory.copy(slotPtr, src, pageSize);
  }
}

/** The send-bitmap word `w` (pages 64w..64w+63); only bytes below `mapBytes` are read. */
// @ts-ignore: decorator
@inline function loadBits(ptr: usize, mapBytes: u32, w: u32): u64 {
  const at = w << 3;
  if (at + 8 <= mapBytes) return load<u64>(ptr + at);
  let v: u64 = 0;
  for (let i: u32 = 0; at + i < mapBytes; i++) v |= <u64>load<u8>(ptr + at + i) << (i << 3);
  return v;
}

// @ts-ignore: decorator
@inline function storeBits(ptr: usize, mapBytes: u32, w: u32, v: u64): void {
  const at = w << 3;
  if (at + 8 <= mapBytes) {
    store<u64>(ptr + at, v);
  } else {
    for (let i: u32 = 0; at + i < mapBytes; i++) store<u8>(ptr + at + i, <u8>(v >> (i << 3)));
  }
}

export function ramEncode(
  blockPtr: usize, pageSize: u32, firstPage: u32, endPage: u32, sendMapPtr: usize, slotMapPtr: usize,
  cachePtr: usize, namePtr: usize, nameLen: u32, outPtr: usize, outCap: u32, options: u32, statePtr: usize,
): u32 {
  ePos = 0;
  eCont = options & OPT_CONTINUE ? F_CONTINUE : 0;
  eZero = 0;
  eNormal = 0;
  eXbzrle = 0;
  eUnchanged = 0;
  eOverflow = 0;
  eXbzrleBytes = 0;
  const zeroDetect = (options & OPT_ZERO_DETECT) != 0;
  const need = RESERVE + pageSize;
  let next = endPage;

  if (firstPage < endPage) {
    if (!sendMapPtr) {
      for (let p = firstPage; p < endPage; p++) {
        if (outCap - ePos < need) {
          next = p;
          break;
        }
        encodePage(p, blockPtr, pageSize, slotMapPtr, cachePtr, namePtr, nameLen, outPtr, zeroDetect);
      }
    } else {
      // Send bitmap: u64 words, ctz over the set bits; bits of handled pages are cleared.
      const mapBytes = (endPage + 7) >> 3;
      const wFirst = firstPage >> 6;
      const wEnd = (endPage + 63) >> 6;
      for (let w = wFirst; w < wEnd; w++) {
        const word = loadBits(sendMapPtr, mapBytes, w);
        let bits = word;
        if (w == wFirst) bits &= <u64>-1 << <u64>(firstPage & 63);
        if (((w + 1) << 6) > endPage) bits &= (<u64>1 << <u64>(endPage & 63)) - 1;
        if (!bits) continue;
        let handled: u64 = 0;
        let stop = false;
        while (bits) {
          const p = (w << 6) + <u32>ctz<u64>(bits);
          if (outCap - ePos < need) {
            next = p;
            stop = true;
            break;
          }
          encodePage(p, blockPtr, pageSize, slotMapPtr, cachePtr, namePtr, nameLen, outPtr, zeroDetect);
          const low = bits & (~bits + 1);
          handled |= low;
          bits ^= low;
        }
        if (handled) storeBits(sendMapPtr, mapBytes, w, word & ~handled);
        if (stop) break;
      }
    }
  }

  store<u32>(statePtr, next, 0);
  store<u32>(statePtr, ePos, 4);
  store<u32>(statePtr, eZero, 8);
  store<u32>(statePtr, eNormal, 12);
  store<u32>(statePtr, eXbzrle, 16);
  store<u32>(statePtr, eUnchanged, 20);
  store<u32>(statePtr, eOverflow, 24);
  store<u32>(statePtr, eCont ? 1 : 0, 28);
  store<u32>(statePtr, eXbzrleBytes, 32);
  return ePos;
}

// ---------------------------------------------------------------------------------------------
// Decoder

/** Index of the table entry named by the `n` bytes at `name`, or NO_BLOCK. */
function findBlock(tablePtr: usize, blockCount: u32, name: usize, n: u32): u32 {
  for (let b: u32 = 0; b < blockCount; b++) {
    const ent = tablePtr + (<usize>b << 5);
    if (load<u32>(ent, 4) != n) continue;
    const bn = <usize>load<u32>(ent);
    let i: u32 = 0;
    while (i < n && load<u8>(bn + i) == load<u8>(name + i)) i++;
    if (i == n) return b;
  }
  return NO_BLOCK;
}

/** One "small ULEB128" at src (2 bytes are known to be readable): value | (bytes << 16), or -1. */
// @ts-ignore: decorator
@inline function uleb(src: usize): i32 {
  const b0 = <u32>load<u8>(src);
  if (!(b0 & 0x80)) return <i32>(b0 | (1 << 16));
  const b1 = <u32>load<u8>(src, 1);
  if (b1 & 0x80) return -1;
  return <i32>((b0 & 0x7f) | (b1 << 7) | (2 << 16));
}

/**
 * Whether xbzrleDecode would accept the `slen` bytes at `src` for a page of `dlen` bytes
 * (wire-format §6.3), without writing anything: used for blocks that are not materialised.
 */
function xbzrleValid(src: usize, slen: u32, dlen: u32): bool {
  let i: u32 = 0;
  let d: u32 = 0;
  while (i < slen) {
    // zero run (0 allowed for the first pair only)
    if (slen - i < 2) return false;
    let r = uleb(src + i);
    if (r < 0) return false;
    let count = <u32>r & 0xffff;
    if (i != 0 && count == 0) return false;
    i += <u32>r >> 16;
    d += count;
    if (d > dlen) return false;
    // non-zero run: length >= 1, then the bytes
    if (slen - i < 2) return false;
    r = uleb(src + i);
    if (r < 0) return false;
    count = <u32>r & 0xffff;
    if (count == 0) return false;
    i += <u32>r >> 16;
    if (d + count > dlen || i + count > slen) return false;
    d += count;
    i += count;
  }
  return true;
}

/** Written-page bitmap (BLK.WRITTEN): bit i = page i may hold non-zero bytes (little-endian bit order). */
// @ts-ignore: decorator
@inline function isWritten(bitmap: usize, page: u32): bool {
  return ((<u32>load<u8>(bitmap + (page >> 3)) >> (page & 7)) & 1) != 0;
}

// The shared-memory build may run next to other instances decoding other pages of the same block, whose bits
// can share this byte: an atomic OR keeps their updates.
// @ts-ignore: decorator
@inline function markWritten(bitmap: usize, page: u32): void {
  const at = bitmap + (page >> 3);
  if (ASC_FEATURE_THREADS) {
    atomic.or<u8>(at, <u8>(<u32>1 << (page & 7)));
  } else {
    store<u8>(at, <u8>(<u32>load<u8>(at) | (<u32>1 << (page & 7))));
  }
}

export function ramDecode(inPtr: usize, inLen: u32, tablePtr: usize, blockCount: u32, pageSize: u32, statePtr: usize): i32 {
  let block = load<u32>(statePtr);
  let pos: u32 = 0;
  let records: u32 = 0;
  let status: i32 = NEED_MORE;
  let hdrHi: u32 = 0;
  let hdrLo: u32 = 0;
  const pmask = pageSize - 1;

  while (true) {
    const rem = inLen - pos;
    if (rem < 8) break; // NEED_MORE
    const rec = inPtr + pos;
    const hi = bswap<u32>(load<u32>(rec));
    const lo = bswap<u32>(load<u32>(rec, 4));
    if (hi == 0 && lo == F_EOS) {
      hdrLo = lo;
      pos += 8;
      records++;
      status = EOS;
      break;
    }
    const kind = lo & pmask & ~F_CONTINUE;
    if (kind != F_ZERO && kind != F_PAGE && kind != F_XBZRLE) {
      hdrHi = hi;
      hdrLo = lo;
      status = OTHER;
      break;
    }

    // The block: the current one (CONTINUE) or the one named.
    let p: u32 = 8;
    let b: u32;
    if (lo & F_CONTINUE) {
      if (block >= blockCount) {
        status = ERR_NO_BLOCK;
      }
      b = block;
    } else {
      if (rem < 9) break;
      const n = <u32>load<u8>(rec, 8);
      if (rem - 9 < n) break;
      b = findBlock(tablePtr, blockCount, rec + 9, n);
      if (b == NO_BLOCK) status = ERR_UNKNOWN_BLOCK;
      p = 9 + n;
    }
    if (status != NEED_MORE) {
      hdrHi = hi;
      hdrLo = lo;
      break;
    }

    // offset + pageSize <= used_length, in 64 bits (a materialised block lives below 4 GiB).
    const ent = tablePtr + (<usize>b << 5);
    const base = <usize>load<u32>(ent, 8);
    const word4 = load<u32>(ent, 16);
    const lenHi = base ? 0 : word4;
    // a materialised block's written-page bitmap (BLK.WRITTEN), or 0
    const written = base ? <usize>word4 : 0;
    const len = (<u64>lenHi << 32) | <u64>load<u32>(ent, 12);
    const addrLo = lo & ~pmask;
    const addr = (<u64>hi << 32) | <u64>addrLo;
    if (addr >= len || len - addr < <u64>pageSize) {
      hdrHi = hi;
      hdrLo = lo;
      status = ERR_OFFSET;
      break;
    }
    const page = base + <usize>addrLo;

    if (kind == F_ZERO) {
      if (rem - p < 1) break;
      const fill = load<u8>(rec + p);
      p += 1;
      // A zero fill on a page that is already zero leaves the memory untouched; a page whose bit is
      // clear in the written-page bitmap is known to be zero and is not even read.
      if (base) {
        if (fill != 0) {
          memory.fill(page, fill, pageSize);
          if (written) markWritten(written, addrLo / pageSize);
        } else if ((!written || isWritten(written, addrLo / pageSize)) && !isZeroPage(page, pageSize)) {
          memory.fill(page, 0, pageSize);
        }
      }
      store<u32>(ent, load<u32>(ent, 20) + 1, 20);
    } else if (kind == F_PAGE) {
      if (rem - p < pageSize) break;
      if (base) {
        memory.copy(page, rec + p, pageSize);
        if (written) markWritten(written, addrLo / pageSize);
      }
      p += pageSize;
      store<u32>(ent, load<u32>(ent, 24) + 1, 24);
    } else {
      if (rem - p < 3) break;
      const x = rec + p;
      const len16 = <u32>bswap<u16>(load<u16>(x, 1));
      if (load<u8>(x) != 1) {
        status = ERR_XBZRLE_ENCODING;
      } else if (len16 > pageSize) {
        status = ERR_XBZRLE_LENGTH;
      } else {
        if (rem - p - 3 < len16) break;
        const ok = base ? xbzrleDecode(x + 3, len16, page, pageSize) >= 0 : xbzrleValid(x + 3, len16, pageSize);
        if (!ok) status = ERR_XBZRLE_DATA;
        else if (written) markWritten(written, addrLo / pageSize);
      }
      if (status != NEED_MORE) {
        hdrHi = hi;
        hdrLo = lo;
        break;
      }
      p += 3 + len16;
      store<u32>(ent, load<u32>(ent, 28) + 1, 28);
    }
    block = b;
    pos += p;
    records++;
  }

  store<u32>(statePtr, block, 0);
  store<u32>(statePtr, pos, 4);
  store<u32>(statePtr, records, 8);
  store<u32>(statePtr, status == EOS ? pos - 8 : pos, 12);
  store<u32>(statePtr, hdrHi, 16);
  store<u32>(statePtr, hdrLo, 20);
  return status;
}
