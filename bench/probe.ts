// Memory-read anchor for the benchmarks: sum every v128 of a region (what a memory-bound scan can
// reach in this engine on this machine). Built by bench/kernels.mjs with --importMemory so it
// reads the kernels' own memory in place.
export function sumV128(ptr: usize, len: usize): u64 {
  let a0 = i64x2.splat(0),
    a1 = i64x2.splat(0),
    a2 = i64x2.splat(0),
    a3 = i64x2.splat(0);
  const end = ptr + len;
  for (let p = ptr; p < end; p += 64) {
    a0 = i64x2.add(a0, v128.load(p));
    a1 = i64x2.add(a1, v128.load(p, 16));
    a2 = i64x2.add(a2, v128.load(p, 32));
    a3 = i64x2.add(a3, v128.load(p, 48));
  }
  const s = i64x2.add(i64x2.add(a0, a1), i64x2.add(a2, a3));
  return i64x2.extract_lane(s, 0) + i64x2.extract_lane(s, 1);
}
