// Page scans: which pages are all zero, which pages differ from a shadow copy.
//
// One source for both builds: `if (ASC_FEATURE_SIMD)` folds away at compile time, so the scalar
// build holds no v128 op. Per page the scan is branch-free: every word of the page is ORed into
// accumulators and the page is tested once at the end. On real guest RAM the zero / non-zero
// outcome is unpredictable, and an early exit costs a mispredict per page that throws away the
// loads already in flight; the branch-free scan keeps the memory pipe full instead.
//
// Bitmaps (see src/kernels/types.ts): page i is bit (i & 7) of byte (i >> 3); exactly
// ceil(n / 8) bytes are written, bits past n are 0. Bytes are stored one at a time, 8 pages each.
//
// Pointers need no alignment (wasm loads are unaligned-safe). `pageSize` is a power of two >= 64.
// Loops count blocks instead of comparing against an end pointer, so a region ending exactly at
// the top of a 4 GiB memory cannot wrap.

// ---------------------------------------------------------------------------------------------
// One page

/** True when the `pageSize` bytes at `ptr` are all zero. Branch-free over the page. */
// @ts-ignore: decorator
@inline export function isZeroPage(ptr: usize, pageSize: u32): bool {
  if (ASC_FEATURE_SIMD) {
    return !v128.any_true(orPageV(ptr, pageSize));
  } else {
    return orPageS(ptr, pageSize) == 0;
  }
}

/** True when the pages at `a` and `b` differ in any byte. Branch-free over the page. */
// @ts-ignore: decorator
@inline function pageDiffers(a: usize, b: usize, pageSize: u32): bool {
  if (ASC_FEATURE_SIMD) {
    return v128.any_true(xorPageV(a, b, pageSize));
  } else {
    return xorPageS(a, b, pageSize) != 0;
  }
}

/** OR of every 16-byte lane of the page: four independent accumulators, 64 bytes per step. */
// @ts-ignore: decorator
@inline function orPageV(ptr: usize, pageSize: u32): v128 {
  let a = v128.load(ptr);
  let b = v128.load(ptr, 16);
  let c = v128.load(ptr, 32);
  let d = v128.load(ptr, 48);
  let p = ptr + 64;
  let blocks = (pageSize >> 6) - 1; // 64-byte blocks after the first
  // Two blocks per step while at least two remain (pageSize >= 128 is a multiple of 128).
  while (blocks >= 2) {
    a = v128.or(a, v128.load(p));
    b = v128.or(b, v128.load(p, 16));
    c = v128.or(c, v128.load(p, 32));
    d = v128.or(d, v128.load(p, 48));
    a = v128.or(a, v128.load(p, 64));
    b = v128.or(b, v128.load(p, 80));
    c = v128.or(c, v128.load(p, 96));
    d = v128.or(d, v128.load(p, 112));
    p += 128;
    blocks -= 2;
  }
  if (blocks) {
    a = v128.or(a, v128.load(p));
    b = v128.or(b, v128.load(p, 16));
    c = v128.or(c, v128.load(p, 32));
    d = v128.or(d, v128.load(p, 48));
  }
  return v128.or(v128.or(a, b), v128.or(c, d));
}

/** OR of (a ^ b) over the page, 16 bytes per lane, 64 bytes per step. */
// @ts-ignore: decorator
@inline function xorPageV(pa: usize, pb: usize, pageSize: u32): v128 {
  let a = v128.xor(v128.load(pa), v128.load(pb));
  let b = v128.xor(v128.load(pa, 16), v128.load(pb, 16));
  let c = v128.xor(v128.load(pa, 32), v128.load(pb, 32));
  let d = v128.xor(v128.load(pa, 48), v128.load(pb, 48));
  let blocks = (pageSize >> 6) - 1;
  while (blocks) {
    pa += 64;
    pb += 64;
    a = v128.or(a, v128.xor(v128.load(pa), v128.load(pb)));
    b = v128.or(b, v128.xor(v128.load(pa, 16), v128.load(pb, 16)));
    c = v128.or(c, v128.xor(v128.load(pa, 32), v128.load(pb, 32)));
    d = v128.or(d, v128.xor(v128.load(pa, 48), v128.load(pb, 48)));
    blocks--;
  }
  return v128.or(v128.or(a, b), v128.or(c, d));
}

/** OR of every u64 of the page: four accumulators, 64 bytes per step. */
// @ts-ignore: decorator
@inline function orPageS(ptr: usize, pageSize: u32): u64 {
  let a: u64 = 0, b: u64 = 0, c: u64 = 0, d: u64 = 0;
  let p = ptr;
  let blocks = pageSize >> 6;
  while (blocks) {
    a |= load<u64>(p) | load<u64>(p, 32);
    b |= load<u64>(p, 8) | load<u64>(p, 40);
    c |= load<u64>(p, 16) | load<u64>(p, 48);
    d |= load<u64>(p, 24) | load<u64>(p, 56);
    p += 64;
    blocks--;
  }
  return (a | b) | (c | d);
}

/** OR of (a ^ b) over the page, u64 words, 64 bytes per step. */
// @ts-ignore: decorator
@inline function xorPageS(pa: usize, pb: usize, pageSize: u32): u64 {
  let a: u64 = 0, b: u64 = 0, c: u64 = 0, d: u64 = 0;
  let blocks = pageSize >> 6;
  while (blocks) {
    a |= (load<u64>(pa) ^ load<u64>(pb)) | (load<u64>(pa, 32) ^ load<u64>(pb, 32));
    b |= (load<u64>(pa, 8) ^ load<u64>(pb, 8)) | (load<u64>(pa, 40) ^ load<u64>(pb, 40));
    c |= (load<u64>(pa, 16) ^ load<u64>(pb, 16)) | (load<u64>(pa, 48) ^ load<u64>(pb, 48));
    d |= (load<u64>(pa, 24) ^ load<u64>(pb, 24)) | (load<u64>(pa, 56) ^ load<u64>(pb, 56));
    pa += 64;
    pb += 64;
    blocks--;
  }
  return (a | b) | (c | d);
}

/** Copy one page (pageSize >= 64, a multiple of 64), inline: no memory.copy call overhead. */
// @ts-ignore: decorator
@inline function copyPage(dst: usize, src: usize, pageSize: u32): void {
  if (ASC_FEATURE_SIMD) {
    let blocks = pageSize >> 6;
    while (blocks) {
      let a = v128.load(src);
      let b = v128.load(src, 16);
      let c = v128.load(src, 32);
      let d = v128.load(src, 48);
      v128.store(dst, a);
      v128.store(dst, b, 16);
      v128.store(dst, c, 32);
      v128.store(dst, d, 48);
      src += 64;
      dst += 64;
      blocks--;
    }
  } else {
    memory.copy(dst, src, pageSize);
  }
}

// ---------------------------------------------------------------------------------------------
// Bitmaps

/**
 * Which of `pageCount` pages at `ptr` are all zero: bit set = zero page. Writes ceil(n/8) bitmap
 * bytes at `bitmapPtr`; returns the number of zero pages.
 */
export function zeroPages(ptr: usize, pageCount: u32, bitmapPtr: usize, pageSize: u32): u32 {
  let count: u32 = 0;
  let p = ptr;
  let out = bitmapPtr;
  let bytes = pageCount >> 3;
  while (bytes) {
    let bits: u32 = 0;
    // Eight pages, unrolled by the optimizer: one test per page, no branch on the result.
    for (let j: u32 = 0; j < 8; j++) {
      bits |= (<u32>isZeroPage(p, pageSize)) << j;
      p += pageSize;
    }
    store<u8>(out, <u8>bits);
    count += popcnt<u32>(bits);
    out++;
    bytes--;
  }
  let rest = pageCount & 7;
  if (rest) {
    let bits: u32 = 0;
    for (let j: u32 = 0; j < rest; j++) {
      bits |= (<u32>isZeroPage(p, pageSize)) << j;
      p += pageSize;
    }
    store<u8>(out, <u8>bits);
    count += popcnt<u32>(bits);
  }
  return count;
}

/**
 * Which of `pageCount` pages at `ptr` differ from the shadow at `shadowPtr`: bit set = changed.
 * With `refresh` != 0 every changed page is copied into the shadow. Returns the number changed.
 */
export function changedPages(ptr: usize, shadowPtr: usize, pageCount: u32, bitmapPtr: usize, refresh: u32, pageSize: u32): u32 {
  let count: u32 = 0;
  let p = ptr;
  let s = shadowPtr;
  let out = bitmapPtr;
  let i: u32 = 0;
  while (i < pageCount) {
    let n = pageCount - i;
    if (n > 8) n = 8;
    let bits: u32 = 0;
    for (let j: u32 = 0; j < n; j++) {
      let changed = pageDiffers(p, s, pageSize);
      bits |= (<u32>changed) << j;
      // Taken only for changed pages, after the page test (the compare itself stays branch-free).
      if (refresh & <u32>changed) copyPage(s, p, pageSize);
      p += pageSize;
      s += pageSize;
    }
    store<u8>(out, <u8>bits);
    count += popcnt<u32>(bits);
    out++;
    i += n;
  }
  return count;
}
