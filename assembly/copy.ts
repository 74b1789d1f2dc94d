// Copies inside the memory: one range, or a list of pages (the page data of a multifd packet into its RAM block).
// memory.copy (memmove): V8 copies a shared memory at full speed whatever the alignment, where a JavaScript
// copyWithin on a SharedArrayBuffer falls to byte moves when source and destination differ in alignment.

/** Copy `length` bytes from `src` to `dst` (overlap allowed). */
export function copyBytes(dst: usize, src: usize, length: usize): void {
  memory.copy(dst, src, length);
}

/** Copy `count` pages listed as (dst, src) little-endian u32 pairs at `list`, in list order, `pageSize` bytes each. */
export function copyPages(list: usize, count: u32, pageSize: u32): void {
  for (let i: u32 = 0; i < count; i++) {
    const at = list + (<usize>i << 3);
    memory.copy(<usize>load<u32>(at), <usize>load<u32>(at, 4), pageSize);
  }
}
