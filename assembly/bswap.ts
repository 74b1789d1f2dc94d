// In-place byte swaps of u16 / u32 / u64 arrays (no alignment needed).
//
// SIMD build: 16 bytes per step through i8x16.swizzle with a constant byte permutation (64 bytes
// per step while that much remains), then a scalar tail. Scalar build: u64 words with shifts and
// masks (two u16 / u32 values per word), then single values. Counts are u32; byte lengths are
// computed in usize, which holds any range that fits in a wasm32 memory.


/** Swap `blocks` 16-byte blocks at `p` with the permutation `mask`; returns the pointer after them. */
// @ts-ignore: decorator
@inline function swizzleBlocks(p: usize, blocks: usize, mask: v128): usize {
  while (blocks >= 4) {
    let a = i8x16.swizzle(v128.load(p), mask);
    let b = i8x16.swizzle(v128.load(p, 16), mask);
    let c = i8x16.swizzle(v128.load(p, 32), mask);
    let d = i8x16.swizzle(v128.load(p, 48), mask);
    v128.store(p, a);
    v128.store(p, b, 16);
    v128.store(p, c, 32);
    v128.store(p, d, 48);
    p += 64;
    blocks -= 4;
  }
  while (blocks) {
    v128.store(p, i8x16.swizzle(v128.load(p), mask));
    p += 16;
    blocks--;
  }
  return p;
}

/** Swap the bytes of each of `count` u16 values at `ptr`. */
export function bswap16(ptr: usize, count: u32): void {
  let p = ptr;
  let n = <usize>count;
  if (ASC_FEATURE_SIMD) {
    p = swizzleBlocks(p, n >> 3, v128(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
    n &= 7;
  } else {
    let words = n >> 2;
    while (words) {
      let x = load<u64>(p);
      store<u64>(p, ((x >> 8) & 0x00ff00ff00ff00ff) | ((x & 0x00ff00ff00ff00ff) << 8));
      p += 8;
      words--;
    }
    n &= 3;
  }
  while (n) {
    store<u16>(p, bswap<u16>(load<u16>(p)));
    p += 2;
    n--;
  }
}

/** Swap the bytes of each of `count` u32 values at `ptr`. */
export function bswap32(ptr: usize, count: u32): void {
  let p = ptr;
  let n = <usize>count;
  if (ASC_FEATURE_SIMD) {
    p = swizzleBlocks(p, n >> 2, v128(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12));
    n &= 3;
  } else {
    let words = n >> 1;
    while (words) {
      // bswap of the whole word reverses all 8 bytes; rotating by 32 puts each u32 back in place.
      store<u64>(p, rotr<u64>(bswap<u64>(load<u64>(p)), 32));
      p += 8;
      words--;
    }
    n &= 1;
  }
  while (n) {
    store<u32>(p, bswap<u32>(load<u32>(p)));
    p += 4;
    n--;
  }
}

/** Swap the bytes of each of `count` u64 values at `ptr`. */
export function bswap64(ptr: usize, count: u32): void {
  let p = ptr;
  let n = <usize>count;
  if (ASC_FEATURE_SIMD) {
    p = swizzleBlocks(p, n >> 1, v128(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8));
    n &= 1;
  }
  while (n) {
    store<u64>(p, bswap<u64>(load<u64>(p)));
    p += 8;
    n--;
  }
}
