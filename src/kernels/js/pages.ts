// Pure-TypeScript twins of assembly/pages.ts: same arguments, same bitmap bytes, same counts (bitmaps as in
// ../types.ts). Buffer#compare under Node, an Int32Array OR loop with an early exit without Buffer (browsers);
// why, with measurements: docs/kernels.md, "Page scans".

type NodeBufferCtor = typeof import("node:buffer").Buffer;
type NodeBuffer = InstanceType<NodeBufferCtor>;

const NodeBuffer: NodeBufferCtor | undefined = (() => {
  const b = (globalThis as { Buffer?: NodeBufferCtor }).Buffer;
  return typeof b === "function" && typeof b.from === "function" && typeof b.prototype.compare === "function" ? b : undefined;
})();

// The Buffer over the memory of the last `u8` seen. `u8` is rebuilt by LinearMemory after
// memory.grow (the old ArrayBuffer is detached), so the cache is keyed on the view itself.
let lastU8: Uint8Array | undefined;
let lastBuf: NodeBuffer | undefined;

function bufferOf(B: NodeBufferCtor, u8: Uint8Array): NodeBuffer {
  if (u8 !== lastU8) {
    lastBuf = B.from(u8.buffer, u8.byteOffset, u8.byteLength);
    lastU8 = u8;
  }
  return lastBuf!;
}

// All-zero Buffers to compare pages against, one per page size.
const zeroBuffers = new Map<number, NodeBuffer>();
function zeroBuffer(B: NodeBufferCtor, size: number): NodeBuffer {
  let z = zeroBuffers.get(size);
  if (!z) {
    z = B.alloc(size);
    zeroBuffers.set(size, z);
  }
  return z;
}

// Int32Array over the memory for the fallback, cached like the Buffer. Word index w covers
// bytes [base + 4w, base + 4w + 4) of the ArrayBuffer, where base = u8.byteOffset rounded down.
let lastU8w: Uint8Array | undefined;
let lastWords: Int32Array | undefined;
function wordsOf(u8: Uint8Array): Int32Array {
  if (u8 !== lastU8w) {
    lastWords = new Int32Array(u8.buffer, 0, u8.buffer.byteLength >>> 2);
    lastU8w = u8;
  }
  return lastWords!;
}

/** Fallback: whether u8[start, start+len) is all zero. */
function isZeroRangeLoop(u8: Uint8Array, start: number, len: number): boolean {
  let p = start;
  const end = start + len;
  // Bytes up to a 4-byte boundary of the underlying ArrayBuffer.
  const abs = u8.byteOffset + p;
  let head = (4 - (abs & 3)) & 3;
  if (head > len) head = len;
  for (let i = 0; i < head; i++) if (u8[p++] !== 0) return false;
  const w = wordsOf(u8);
  let wi = (u8.byteOffset + p) >>> 2;
  const nWords = (end - p) >>> 2;
  const blockEnd = wi + (nWords & ~15);
  for (; wi < blockEnd; wi += 16) {
    const a = w[wi]! | w[wi + 1]! | w[wi + 2]! | w[wi + 3]! | w[wi + 4]! | w[wi + 5]! | w[wi + 6]! | w[wi + 7]!;
    const b = w[wi + 8]! | w[wi + 9]! | w[wi + 10]! | w[wi + 11]! | w[wi + 12]! | w[wi + 13]! | w[wi + 14]! | w[wi + 15]!;
    if ((a | b) !== 0) return false;
  }
  const wordEnd = blockEnd + (nWords & 15);
  let x = 0;
  for (; wi < wordEnd; wi++) x |= w[wi]!;
  if (x !== 0) return false;
  p += nWords << 2;
  for (; p < end; p++) if (u8[p] !== 0) return false;
  return true;
}

/** Fallback: whether u8[a, a+len) and u8[b, b+len) differ. */
function differsLoop(u8: Uint8Array, a: number, b: number, len: number): boolean {
  let i = 0;
  // Word compare only when both ranges share their alignment mod 4 (true for page-aligned data).
  if (((a - b) & 3) === 0) {
    let head = (4 - ((u8.byteOffset + a) & 3)) & 3;
    if (head > len) head = len;
    for (; i < head; i++) if (u8[a + i] !== u8[b + i]) return true;
    const w = wordsOf(u8);
    let wa = (u8.byteOffset + a + i) >>> 2;
    let wb = (u8.byteOffset + b + i) >>> 2;
    const nWords = (len - i) >>> 2;
    const blockEnd = wa + (nWords & ~7);
    for (; wa < blockEnd; wa += 8, wb += 8) {
      const x =
        (w[wa]! ^ w[wb]!) |
        (w[wa + 1]! ^ w[wb + 1]!) |
        (w[wa + 2]! ^ w[wb + 2]!) |
        (w[wa + 3]! ^ w[wb + 3]!) |
        (w[wa + 4]! ^ w[wb + 4]!) |
        (w[wa + 5]! ^ w[wb + 5]!) |
        (w[wa + 6]! ^ w[wb + 6]!) |
        (w[wa + 7]! ^ w[wb + 7]!);
      if (x !== 0) return true;
    }
    const wordEnd = blockEnd + (nWords & 7);
    let x = 0;
    for (; wa < wordEnd; wa++, wb++) x |= w[wa]! ^ w[wb]!;
    if (x !== 0) return true;
    i += nWords << 2;
  }
  for (; i < len; i++) if (u8[a + i] !== u8[b + i]) return true;
  return false;
}

/** Whether the `pageSize` bytes at `ptr` are all zero. */
export function isZeroPage(u8: Uint8Array, ptr: number, pageSize: number): boolean {
  const B = NodeBuffer;
  if (B) return zeroBuffer(B, pageSize).compare(bufferOf(B, u8), ptr, ptr + pageSize, 0, pageSize) === 0;
  return isZeroRangeLoop(u8, ptr, pageSize);
}

/** Twin of assembly `zeroPages`: bit set = zero page; returns the number of zero pages. */
export function zeroPages(u8: Uint8Array, ptr: number, n: number, bm: number, pageSize: number): number {
  const B = NodeBuffer;
  let count = 0;
  let p = ptr;
  if (B) {
    const buf = bufferOf(B, u8);
    const zero = zeroBuffer(B, pageSize);
    for (let i = 0; i < n; i += 8) {
      const m = Math.min(n - i, 8);
      let bits = 0;
      for (let j = 0; j < m; j++, p += pageSize) {
        // zero.compare(target, targetStart, targetEnd, sourceStart, sourceEnd): memcmp of the page.
        if (zero.compare(buf, p, p + pageSize, 0, pageSize) === 0) bits |= 1 << j;
      }
      u8[bm + (i >>> 3)] = bits;
      count += popcnt8(bits);
    }
  } else {
    for (let i = 0; i < n; i += 8) {
      const m = Math.min(n - i, 8);
      let bits = 0;
      for (let j = 0; j < m; j++, p += pageSize) if (isZeroRangeLoop(u8, p, pageSize)) bits |= 1 << j;
      u8[bm + (i >>> 3)] = bits;
      count += popcnt8(bits);
    }
  }
  return count;
}

/**
 * Twin of assembly `changedPages`: bit set = page differs from the shadow; with `refresh` each
 * changed page is copied into the shadow. Returns the number of changed pages.
 */
export function changedPages(u8: Uint8Array, ptr: number, shadow: number, n: number, bm: number, refresh: boolean, pageSize: number): number {
  const B = NodeBuffer;
  const buf = B ? bufferOf(B, u8) : undefined;
  let count = 0;
  let p = ptr;
  let s = shadow;
  for (let i = 0; i < n; i += 8) {
    const m = Math.min(n - i, 8);
    let bits = 0;
    for (let j = 0; j < m; j++, p += pageSize, s += pageSize) {
      const changed = buf ? buf.compare(buf, s, s + pageSize, p, p + pageSize) !== 0 : differsLoop(u8, p, s, pageSize);
      if (changed) {
        bits |= 1 << j;
        if (refresh) u8.copyWithin(s, p, p + pageSize);
      }
    }
    u8[bm + (i >>> 3)] = bits;
    count += popcnt8(bits);
  }
  return count;
}

function popcnt8(x: number): number {
  x = x - ((x >>> 1) & 0x55);
  x = (x & 0x33) + ((x >>> 2) & 0x33);
  return (x + (x >>> 4)) & 0x0f;
}
