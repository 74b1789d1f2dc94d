// XBZRLE (QEMU 7.2 "xor based zero run length encoding"), wire-format §6.
//
//   xbzrle := (zrun nzrun)+ ; zrun := uleb(count) ; nzrun := uleb(count) byte[count]
//
// The encoder produces exactly QEMU 7.2's bytes and makes exactly its overflow decision (the three
// tests of §6.2: `d + 2 > limit` before each of the two lengths, `d + n > limit` before the data).
// The runs are the maximal byte runs, so any scan width gives the same output; only the speed
// differs. Per page the encoder is adaptive:
//   - sparse phase (the first DENSE_AFTER runs):
//       scalar build: u64 XOR + ctz for the end of an equal run (32 bytes per step over equal
//       bytes), the "has a zero byte" trick on the XOR for the end of a changed run;
//       SIMD build: every run search first probes one u64 at the run start (that alone finds the
//       short runs, where a 16-byte compare is no better), and only a longer run continues with
//       16-byte compares (i8x16.eq + i8x16.bitmask + ctz), skipping equal 64-byte blocks with one
//       v128.any_true each;
//   - dense phase (a page with many runs, e.g. half its bytes changed): a "differs" bit mask per
//     64-byte block (4 x i8x16.bitmask, or u64 XOR + a multiply gather in the scalar build), so
//     each run end is a shift + ctz on a register instead of a load -> xor -> ctz chain. Random
//     pages are then faster than with either per-run search, and the SIMD build is never slower
//     than the scalar one.
// The decoder validates the whole run structure first (only the lengths are read), so a malformed
// input leaves the page untouched, then applies the runs. Short runs are copied inline with
// overlapping loads/stores that never leave [src, src+n) / [dst, dst+n); long runs use memory.copy
// (V8's memory.copy has a large fixed cost).
//
// Offsets inside the page are compared, never end pointers, so a page ending exactly at the top of
// a 4 GiB memory cannot wrap. Any page size works (tails are handled); QEMU's are 4 KiB..16 KiB.

/** Largest length the two-byte ULEB can hold (QEMU asserts on larger). */
const MAX_RUN: i32 = 0x3fff;
/** Runs longer than this are copied with memory.copy. */
const COPY_INLINE_MAX: i32 = 256;

const ONES: u64 = 0x0101010101010101;
const HIGHS: u64 = 0x8080808080808080;

// ---------------------------------------------------------------------------------------------
// Copy

/**
 * Copy exactly `n` (>= 1) bytes; src and dst do not overlap. Reads only [src, src+n), writes only
 * [dst, dst+n): short sizes use two overlapping loads/stores, 1..3 bytes three byte moves (first,
 * middle, last) so the common short runs of random pages take one well-predicted branch.
 */
// @ts-ignore: decorator
@inline function copyRun(dst: usize, src: usize, n: i32): void {
  if (n < 4) {
    const h = <usize>(n >> 1);
    const l = <usize>(n - 1);
    const a = load<u8>(src);
    const b = load<u8>(src + h);
    const c = load<u8>(src + l);
    store<u8>(dst, a);
    store<u8>(dst + h, b);
    store<u8>(dst + l, c);
  } else if (n < 8) {
    const a = load<u32>(src);
    const b = load<u32>(src + <usize>(n - 4));
    store<u32>(dst, a);
    store<u32>(dst + <usize>(n - 4), b);
  } else if (n < 16) {
    const a = load<u64>(src);
    const b = load<u64>(src + <usize>(n - 8));
    store<u64>(dst, a);
    store<u64>(dst + <usize>(n - 8), b);
  } else if (n > COPY_INLINE_MAX) {
    memory.copy(dst, src, <usize>n);
  } else if (ASC_FEATURE_SIMD) {
    const last = <usize>(n - 16);
    let k: usize = 0;
    while (k < last) {
      v128.store(dst + k, v128.load(src + k));
      k += 16;
    }
    v128.store(dst + last, v128.load(src + last));
  } else {
    const last = <usize>(n - 8);
    let k: usize = 0;
    while (k < last) {
      store<u64>(dst + k, load<u64>(src + k));
      k += 8;
    }
    store<u64>(dst + last, load<u64>(src + last));
  }
}

// ---------------------------------------------------------------------------------------------
// Run searches. `o`/`w` = old/new page, `i` = offset to start at (< n), `n` = page size.
// They return the end of the run starting at i (n when it reaches the end of the page).

/** First byte in [i, n) where the pages differ, or n. Byte loop (pages smaller than 16 bytes). */
function bytesFindDiff(o: usize, w: usize, i: i32, n: i32): i32 {
  while (i < n && load<u8>(o + <usize>i) == load<u8>(w + <usize>i)) i++;
  return i;
}

/** First byte in [i, n) where the pages are equal, or n. Byte loop. */
function bytesFindEq(o: usize, w: usize, i: i32, n: i32): i32 {
  while (i < n && load<u8>(o + <usize>i) != load<u8>(w + <usize>i)) i++;
  return i;
}

// @ts-ignore: decorator
@inline function xor64(o: usize, w: usize, i: i32): u64 {
  return load<u64>(o + <usize>i) ^ load<u64>(w + <usize>i);
}

/** Non-zero exactly when `x` has a zero byte; its lowest set bit is in the lowest zero byte. */
// @ts-ignore: decorator
@inline function zeroByteMask(x: u64): u64 {
  return (x - ONES) & ~x & HIGHS;
}

/** First differing byte in [i, n) (n >= 8): u64 XOR + ctz, 32 bytes per step over equal bytes. */
function scalarFindDiff(o: usize, w: usize, i: i32, n: i32): i32 {
  while (i + 32 <= n) {
    const x0 = xor64(o, w, i);
    const x1 = xor64(o, w, i + 8);
    const x2 = xor64(o, w, i + 16);
    const x3 = xor64(o, w, i + 24);
    if ((x0 | x1 | x2 | x3) == 0) {
      i += 32;
      continue;
    }
    if (x0) return i + <i32>(ctz(x0) >> 3);
    if (x1) return i + 8 + <i32>(ctz(x1) >> 3);
    if (x2) return i + 16 + <i32>(ctz(x2) >> 3);
    return i + 24 + <i32>(ctz(x3) >> 3);
  }
  while (i + 8 <= n) {
    const x = xor64(o, w, i);
    if (x) return i + <i32>(ctz(x) >> 3);
    i += 8;
  }
  if (i >= n) return n;
  // Fewer than 8 bytes left: the last u64 of the page, shifted so its byte 0 is byte i. The bytes
  // shifted in are 0 ("equal"), so a zero result means no difference up to the end.
  const x = xor64(o, w, n - 8) >> (<u64>(i - (n - 8)) << 3);
  return x ? i + <i32>(ctz(x) >> 3) : n;
}

/** First equal byte in [i, n) (n >= 8): "has a zero byte" on the u64 XOR. */
function scalarFindEq(o: usize, w: usize, i: i32, n: i32): i32 {
  while (i + 8 <= n) {
    const t = zeroByteMask(xor64(o, w, i));
    if (t) return i + <i32>(ctz(t) >> 3);
    i += 8;
  }
  if (i >= n) return n;
  // The zero bytes shifted in stand for "end of page": the result is at most n.
  const t = zeroByteMask(xor64(o, w, n - 8) >> (<u64>(i - (n - 8)) << 3));
  return t ? min(i + <i32>(ctz(t) >> 3), n) : n;
}

// @ts-ignore: decorator
@inline function eqMask16(o: usize, w: usize, i: i32): i32 {
  return i8x16.bitmask(i8x16.eq(v128.load(o + <usize>i), v128.load(w + <usize>i)));
}

/** First differing byte in [i, n) (n >= 16). */
function simdFindDiff(o: usize, w: usize, i: i32, n: i32): i32 {
  // Short equal runs: one u64 probe.
  if (i + 8 <= n) {
    const x = xor64(o, w, i);
    if (x) return i + <i32>(ctz(x) >> 3);
    i += 8;
  }
  // Up to a 64-byte boundary of the page (one cache line per block when the page is aligned).
  while ((i & 63) != 0 && i + 16 <= n) {
    const m = eqMask16(o, w, i) ^ 0xffff;
    if (m) return i + ctz(m);
    i = (i + 16) & ~15;
  }
  // Equal 64-byte blocks: one any_true each.
  while (i + 64 <= n) {
    const pa = o + <usize>i;
    const pb = w + <usize>i;
    const a0 = v128.load(pa), b0 = v128.load(pb);
    const a1 = v128.load(pa, 16), b1 = v128.load(pb, 16);
    const a2 = v128.load(pa, 32), b2 = v128.load(pb, 32);
    const a3 = v128.load(pa, 48), b3 = v128.load(pb, 48);
    const any = v128.or(v128.or(v128.xor(a0, b0), v128.xor(a1, b1)), v128.or(v128.xor(a2, b2), v128.xor(a3, b3)));
    if (!v128.any_true(any)) {
      i += 64;
      continue;
    }
    let m = i8x16.bitmask(i8x16.eq(a0, b0)) ^ 0xffff;
    if (m) return i + ctz(m);
    m = i8x16.bitmask(i8x16.eq(a1, b1)) ^ 0xffff;
    if (m) return i + 16 + ctz(m);
    m = i8x16.bitmask(i8x16.eq(a2, b2)) ^ 0xffff;
    if (m) return i + 32 + ctz(m);
    m = i8x16.bitmask(i8x16.eq(a3, b3)) ^ 0xffff;
    return i + 48 + ctz(m);
  }
  while (i + 16 <= n) {
    const m = eqMask16(o, w, i) ^ 0xffff;
    if (m) return i + ctz(m);
    i += 16;
  }
  if (i >= n) return n;
  // The last 16 bytes of the page, shifted so bit 0 is byte i (bits shifted in are 0 = equal).
  const m = (eqMask16(o, w, n - 16) ^ 0xffff) >>> (i - (n - 16));
  return m ? i + ctz(m) : n;
}

/** First equal byte in [i, n) (n >= 16). */
function simdFindEq(o: usize, w: usize, i: i32, n: i32): i32 {
  // Short changed runs: one u64 probe.
  if (i + 8 <= n) {
    const t = zeroByteMask(xor64(o, w, i));
    if (t) return i + <i32>(ctz(t) >> 3);
    i += 8;
  }
  while (i + 16 <= n) {
    const m = eqMask16(o, w, i);
    if (m) return i + ctz(m);
    i += 16;
  }
  if (i >= n) return n;
  // Bits shifted in are 0 (= "differ"): no equal byte up to the end means n.
  const m = eqMask16(o, w, n - 16) >>> (i - (n - 16));
  return m ? i + ctz(m) : n;
}

// @ts-ignore: decorator
@inline function findDiff(o: usize, w: usize, i: i32, n: i32): i32 {
  if (ASC_FEATURE_SIMD) {
    return n >= 16 ? simdFindDiff(o, w, i, n) : bytesFindDiff(o, w, i, n);
  } else {
    return n >= 8 ? scalarFindDiff(o, w, i, n) : bytesFindDiff(o, w, i, n);
  }
}

// @ts-ignore: decorator
@inline function findEq(o: usize, w: usize, i: i32, n: i32): i32 {
  if (ASC_FEATURE_SIMD) {
    return n >= 16 ? simdFindEq(o, w, i, n) : bytesFindEq(o, w, i, n);
  } else {
    return n >= 8 ? scalarFindEq(o, w, i, n) : bytesFindEq(o, w, i, n);
  }
}

// ---------------------------------------------------------------------------------------------
// Dense pages: after DENSE_AFTER runs in a page the encoder continues with a per-64-byte-block
// "differs" bit mask (bit k = byte k of the block differs). Finding the end of a run is then a
// shift + ctz on a register instead of a load -> xor -> ctz chain per run, and on pages where half
// the bytes changed the run lengths are random, so that chain is what limits the speed.

/** Runs (pairs) encoded in a page before the encoder switches to the block-mask loop. */
const DENSE_AFTER: i32 = 16;

/** Bit k set when byte k of the 64-byte block at offset b differs. */
// @ts-ignore: decorator
@inline function diffMask64(o: usize, w: usize, b: i32): u64 {
  const pa = o + <usize>b;
  const pb = w + <usize>b;
  if (ASC_FEATURE_SIMD) {
    const m0 = <u64>i8x16.bitmask(i8x16.eq(v128.load(pa), v128.load(pb)));
    const m1 = <u64>i8x16.bitmask(i8x16.eq(v128.load(pa, 16), v128.load(pb, 16)));
    const m2 = <u64>i8x16.bitmask(i8x16.eq(v128.load(pa, 32), v128.load(pb, 32)));
    const m3 = <u64>i8x16.bitmask(i8x16.eq(v128.load(pa, 48), v128.load(pb, 48)));
    return ~(m0 | (m1 << 16) | (m2 << 32) | (m3 << 48));
  } else {
    return (
      diffBits8(load<u64>(pa) ^ load<u64>(pb)) |
      (diffBits8(load<u64>(pa, 8) ^ load<u64>(pb, 8)) << 8) |
      (diffBits8(load<u64>(pa, 16) ^ load<u64>(pb, 16)) << 16) |
      (diffBits8(load<u64>(pa, 24) ^ load<u64>(pb, 24)) << 24) |
      (diffBits8(load<u64>(pa, 32) ^ load<u64>(pb, 32)) << 32) |
      (diffBits8(load<u64>(pa, 40) ^ load<u64>(pb, 40)) << 40) |
      (diffBits8(load<u64>(pa, 48) ^ load<u64>(pb, 48)) << 48) |
      (diffBits8(load<u64>(pa, 56) ^ load<u64>(pb, 56)) << 56)
    );
  }
}

/** 8-bit mask of the non-zero bytes of x (bit k = byte k). */
// @ts-ignore: decorator
@inline function diffBits8(x: u64): u64 {
  const LOW7: u64 = 0x7f7f7f7f7f7f7f7f;
  const t = (((x & LOW7) + LOW7) | x) & HIGHS; // high bit of each non-zero byte
  // Gather the 8 high bits into the top byte (the partial products never overlap: no carries).
  return ((t >> 7) * 0x0102040810204080) >> 56;
}

/** The rest of xbzrleEncode from offset i (> 0) with d bytes written, for pages of >= 64 bytes. */
function encodeDense(o: usize, w: usize, out: usize, limit: i32, n: i32, i: i32, d: i32): i32 {
  const full = n & ~63; // end of the complete 64-byte blocks
  let cb = -1; // offset of the block whose mask is in cm
  let cm: u64 = 0;
  while (i < n) {
    if (d + 2 > limit) return -1;
    let j = i;
    while (true) {
      const b = j & ~63;
      if (b >= full) {
        j = findDiff(o, w, j, n);
        break;
      }
      if (b != cb) {
        cb = b;
        cm = diffMask64(o, w, b);
      }
      const x = cm >> <u64>(j & 63);
      if (x) {
        j += <i32>ctz(x);
        break;
      }
      j = b + 64;
    }
    if (j == n) return d; // trailing equal run (i > 0, so the page is not unchanged)
    const z = j - i;
    if (z > MAX_RUN) return -1;
    d += putUleb(out + <usize>d, z);
    if (d + 2 > limit) return -1;
    let e = j;
    while (true) {
      const b = e & ~63;
      if (b >= full) {
        e = findEq(o, w, e, n);
        break;
      }
      if (b != cb) {
        cb = b;
        cm = diffMask64(o, w, b);
      }
      const x = ~cm >> <u64>(e & 63);
      if (x) {
        e += <i32>ctz(x);
        break;
      }
      e = b + 64;
    }
    const m = e - j;
    if (m > MAX_RUN) return -1;
    d += putUleb(out + <usize>d, m);
    if (d + m > limit) return -1;
    copyRun(out + <usize>d, w + <usize>j, m);
    d += m;
    i = e;
  }
  return d;
}

/** Write `v` (<= 0x3FFF) as a small ULEB128 at `p`; returns the bytes written (1 or 2). */
// @ts-ignore: decorator
@inline function putUleb(p: usize, v: i32): i32 {
  if (v < 0x80) {
    store<u8>(p, <u8>v);
    return 1;
  }
  store<u16>(p, <u16>((v & 0x7f) | 0x80 | ((v >> 7) << 8)));
  return 2;
}

// ---------------------------------------------------------------------------------------------
// Encoder

/**
 * QEMU 7.2's XBZRLE encoding of the page at `newPtr` against `oldPtr` (both `pageSize` bytes) into
 * `outPtr`. Returns the encoded length, 0 when the pages are equal, -1 when the encoding would exceed
 * `limit` bytes (the same three tests as QEMU, so limit < 2 gives -1 even for equal pages). A run
 * longer than 0x3FFF bytes (possible only for pages > 16 KiB, or a fully changed 16 KiB page with
 * limit > 16 KiB) cannot be encoded: -1 too (QEMU would assert). Never writes at or past
 * outPtr+limit; on success writes exactly [outPtr, outPtr+result).
 */
export function xbzrleEncode(oldPtr: usize, newPtr: usize, outPtr: usize, limit: i32, pageSize: u32): i32 {
  const n = <i32>pageSize;
  let i = 0;
  let d = 0;
  let runs = 0;
  while (i < n) {
    if (runs == DENSE_AFTER && n >= 64) return encodeDense(oldPtr, newPtr, outPtr, limit, n, i, d);
    if (d + 2 > limit) return -1;
    const j = findDiff(oldPtr, newPtr, i, n);
    const z = j - i;
    if (z == n) return 0; // page unchanged
    if (j == n) return d; // the trailing equal run is not encoded
    if (z > MAX_RUN) return -1;
    d += putUleb(outPtr + <usize>d, z);
    if (d + 2 > limit) return -1;
    const e = findEq(oldPtr, newPtr, j, n);
    const m = e - j;
    if (m > MAX_RUN) return -1;
    d += putUleb(outPtr + <usize>d, m);
    if (d + m > limit) return -1;
    copyRun(outPtr + <usize>d, newPtr + <usize>j, m);
    d += m;
    i = e;
    runs++;
  }
  return d;
}

// ---------------------------------------------------------------------------------------------
// Decoder

const ERR_TRUNCATED: i32 = -1;
const ERR_BAD_ULEB: i32 = -2;
const ERR_ZERO_RUN: i32 = -3;
const ERR_PAST_PAGE: i32 = -4;

/** Check the run structure (QEMU 7.2's decoder checks, §6.3) without touching the page. */
function xbzrleCheck(src: usize, slen: u32, dlen: u32): i32 {
  let i: u32 = 0;
  let d: u32 = 0;
  while (i < slen) {
    // zero run
    if (slen - i < 2) return ERR_TRUNCATED;
    let z = <u32>load<u8>(src + <usize>i);
    if (z < 0x80) {
      if (i != 0 && z == 0) return ERR_ZERO_RUN;
      i += 1;
    } else {
      const b1 = <u32>load<u8>(src + <usize>i, 1);
      if (b1 & 0x80) return ERR_BAD_ULEB;
      z = (z & 0x7f) | (b1 << 7);
      if (i != 0 && z == 0) return ERR_ZERO_RUN;
      i += 2;
    }
    d += z;
    if (d > dlen) return ERR_PAST_PAGE;
    // non-zero run: length, then at least one data byte
    if (slen - i < 2) return ERR_TRUNCATED;
    let c = <u32>load<u8>(src + <usize>i);
    if (c < 0x80) {
      i += 1;
    } else {
      const b1 = <u32>load<u8>(src + <usize>i, 1);
      if (b1 & 0x80) return ERR_BAD_ULEB;
      c = (c & 0x7f) | (b1 << 7);
      i += 2;
    }
    if (c == 0) return ERR_ZERO_RUN;
    if (d + c > dlen) return ERR_PAST_PAGE;
    if (c > slen - i) return ERR_TRUNCATED;
    d += c;
    i += c;
  }
  return <i32>d;
}

/**
 * Apply `len` bytes of XBZRLE data at `srcPtr` onto the page at `pagePtr` (`pageSize` bytes) with
 * QEMU 7.2's decoder checks. Returns the page bytes covered (the end of the last run), or an
 * XBZRLE_ERR code (-1 truncated, -2 bad ULEB, -3 zero-length run, -4 run past the page); on error
 * the page is left untouched. len = 0 returns 0.
 */
export function xbzrleDecode(srcPtr: usize, len: u32, pagePtr: usize, pageSize: u32): i32 {
  const r = xbzrleCheck(srcPtr, len, pageSize);
  if (r <= 0) return r;
  // The structure is valid: apply it without checks.
  let i: u32 = 0;
  let d: u32 = 0;
  while (i < len) {
    let z = <u32>load<u8>(srcPtr + <usize>i);
    if (z < 0x80) {
      i += 1;
    } else {
      z = (z & 0x7f) | (<u32>load<u8>(srcPtr + <usize>i, 1) << 7);
      i += 2;
    }
    d += z;
    let c = <u32>load<u8>(srcPtr + <usize>i);
    if (c < 0x80) {
      i += 1;
    } else {
      c = (c & 0x7f) | (<u32>load<u8>(srcPtr + <usize>i, 1) << 7);
      i += 2;
    }
    copyRun(pagePtr + <usize>d, srcPtr + <usize>i, <i32>c);
    d += c;
    i += c;
  }
  return r;
}
