// The pure-TypeScript XBZRLE twin (wire-format §6): same bytes, same return values and the same writes as
// assembly/xbzrle.ts. Runs are found a word at a time (a "differs" mask per block on dense pages); the decoder
// validates before it writes. docs/kernels.md, "XBZRLE".

const MAX_RUN = 0x3fff;
/** Runs at least this long are copied with copyWithin (native memmove) instead of a byte loop. */
const COPY_NATIVE_MIN = 16;

let i32Buf: ArrayBufferLike | null = null;
let i32View: Int32Array<ArrayBufferLike> = new Int32Array(0);

/** An Int32Array over the same buffer as `u8` (cached; rebuilt after memory growth). */
function words(u8: Uint8Array): Int32Array<ArrayBufferLike> {
  if (u8.buffer !== i32Buf || i32View.length !== u8.buffer.byteLength >>> 2) {
    i32Buf = u8.buffer;
    i32View = new Int32Array(u8.buffer, 0, u8.buffer.byteLength >>> 2);
  }
  return i32View;
}

/** Index (0..3) of the lowest non-zero byte of a non-zero 32-bit value. */
function lowByte(x: number): number {
  return (31 - Math.clz32(x & -x)) >>> 3;
}

/** First offset in [i, n) where the pages differ, or n (aligned path: (o + i) % 4 == (w + i) % 4). */
function findDiffW(u8: Uint8Array, w32: Int32Array<ArrayBufferLike>, o: number, w: number, i: number, n: number): number {
  // Bytes up to a word boundary.
  while (i < n && ((o + i) & 3) !== 0) {
    if (u8[o + i] !== u8[w + i]) return i;
    i++;
  }
  let a = (o + i) >>> 2;
  let b = (w + i) >>> 2;
  // 32 bytes per step over equal words.
  while (i + 32 <= n) {
    if (
      ((w32[a]! ^ w32[b]!) |
        (w32[a + 1]! ^ w32[b + 1]!) |
        (w32[a + 2]! ^ w32[b + 2]!) |
        (w32[a + 3]! ^ w32[b + 3]!) |
        (w32[a + 4]! ^ w32[b + 4]!) |
        (w32[a + 5]! ^ w32[b + 5]!) |
        (w32[a + 6]! ^ w32[b + 6]!) |
        (w32[a + 7]! ^ w32[b + 7]!)) !==
      0
    )
      break;
    i += 32;
    a += 8;
    b += 8;
  }
  while (i + 4 <= n) {
    const x = w32[a]! ^ w32[b]!;
    if (x !== 0) return i + lowByte(x);
    i += 4;
    a++;
    b++;
  }
  while (i < n && u8[o + i] === u8[w + i]) i++;
  return i;
}

/** First offset in [i, n) where the pages are equal, or n (aligned path). */
function findEqW(u8: Uint8Array, w32: Int32Array<ArrayBufferLike>, o: number, w: number, i: number, n: number): number {
  while (i < n && ((o + i) & 3) !== 0) {
    if (u8[o + i] === u8[w + i]) return i;
    i++;
  }
  let a = (o + i) >>> 2;
  let b = (w + i) >>> 2;
  while (i + 4 <= n) {
    const x = w32[a]! ^ w32[b]!;
    const t = (x - 0x01010101) & ~x & 0x80808080;
    if (t !== 0) return i + lowByte(t);
    i += 4;
    a++;
    b++;
  }
  while (i < n && u8[o + i] !== u8[w + i]) i++;
  return i;
}

function findDiffB(u8: Uint8Array, o: number, w: number, i: number, n: number): number {
  while (i < n && u8[o + i] === u8[w + i]) i++;
  return i;
}

function findEqB(u8: Uint8Array, o: number, w: number, i: number, n: number): number {
  while (i < n && u8[o + i] !== u8[w + i]) i++;
  return i;
}

function putUleb(u8: Uint8Array, p: number, v: number): number {
  if (v < 0x80) {
    u8[p] = v;
    return 1;
  }
  u8[p] = (v & 0x7f) | 0x80;
  u8[p + 1] = v >>> 7;
  return 2;
}

/** Copy `n` (>= 1) bytes from src to dst (non-overlapping) inside `u8`. */
function copyRun(u8: Uint8Array, dst: number, src: number, n: number): void {
  if (n < 4) {
    // 1..3 bytes: first, middle, last (one well-predicted branch for the short runs of random pages)
    const h = n >>> 1;
    u8[dst] = u8[src]!;
    u8[dst + h] = u8[src + h]!;
    u8[dst + n - 1] = u8[src + n - 1]!;
  } else if (n < COPY_NATIVE_MIN) {
    for (let k = 0; k < n; k++) u8[dst + k] = u8[src + k]!;
  } else {
    u8.copyWithin(dst, src, src + n);
  }
}

/** Runs (pairs) encoded in a page before the encoder switches to the block-mask loop. */
const DENSE_AFTER = 16;

/** Bit k set when byte k of the 32-byte block at word indexes a (old) / b (new) differs. */
function diffMask32(w32: Int32Array<ArrayBufferLike>, a: number, b: number): number {
  let mask = 0;
  for (let k = 0; k < 8; k++) {
    const x = w32[a + k]! ^ w32[b + k]!;
    const t = (((x & 0x7f7f7f7f) + 0x7f7f7f7f) | x) & 0x80808080; // high bit of each non-zero byte
    // Gather the 4 high bits into bits 28..31 (the partial products never overlap: no carries).
    mask |= (Math.imul(t >>> 7, 0x10204080) >>> 28) << (k << 2);
  }
  return mask;
}

/** The rest of xbzrleEncode from offset i (> 0) with d bytes written; both pages 4-byte aligned. */
function encodeDense(
  u8: Uint8Array,
  w32: Int32Array<ArrayBufferLike>,
  o: number,
  w: number,
  out: number,
  limit: number,
  n: number,
  i: number,
  d: number,
): number {
  const full = n & ~31; // end of the complete 32-byte blocks
  let cb = -1; // offset of the block whose mask is in cm
  let cm = 0;
  while (i < n) {
    if (d + 2 > limit) return -1;
    let j = i;
    for (;;) {
      const b = j & ~31;
      if (b >= full) {
        j = findDiffW(u8, w32, o, w, j, n);
        break;
      }
      if (b !== cb) {
        cb = b;
        cm = diffMask32(w32, (o + b) >>> 2, (w + b) >>> 2);
      }
      const x = cm >>> (j & 31);
      if (x !== 0) {
        j += 31 - Math.clz32(x & -x);
        break;
      }
      j = b + 32;
    }
    if (j === n) return d; // trailing equal run (i > 0: the page is not unchanged)
    const z = j - i;
    if (z > MAX_RUN) return -1;
    d += putUleb(u8, out + d, z);
    if (d + 2 > limit) return -1;
    let e = j;
    for (;;) {
      const b = e & ~31;
      if (b >= full) {
        e = findEqW(u8, w32, o, w, e, n);
        break;
      }
      if (b !== cb) {
        cb = b;
        cm = diffMask32(w32, (o + b) >>> 2, (w + b) >>> 2);
      }
      const x = ~cm >>> (e & 31);
      if (x !== 0) {
        e += 31 - Math.clz32(x & -x);
        break;
      }
      e = b + 32;
    }
    const m = e - j;
    if (m > MAX_RUN) return -1;
    d += putUleb(u8, out + d, m);
    if (d + m > limit) return -1;
    copyRun(u8, out + d, w + j, m);
    d += m;
    i = e;
  }
  return d;
}

/** See Kernels.xbzrleEncode (QEMU 7.2's encoder, §6.2, three overflow tests). */
export function xbzrleEncode(u8: Uint8Array, oldPtr: number, newPtr: number, outPtr: number, limit: number, pageSize: number): number {
  const n = pageSize | 0;
  limit |= 0;
  const aligned = ((oldPtr ^ newPtr) & 3) === 0;
  const canDense = ((oldPtr | newPtr) & 3) === 0 && n >= 32;
  const w32 = words(u8);
  let i = 0;
  let d = 0;
  let runs = 0;
  while (i < n) {
    if (runs === DENSE_AFTER && canDense) return encodeDense(u8, w32, oldPtr, newPtr, outPtr, limit, n, i, d);
    if (d + 2 > limit) return -1;
    const j = aligned ? findDiffW(u8, w32, oldPtr, newPtr, i, n) : findDiffB(u8, oldPtr, newPtr, i, n);
    const z = j - i;
    if (z === n) return 0; // page unchanged
    if (j === n) return d; // the trailing equal run is not encoded
    if (z > MAX_RUN) return -1;
    d += putUleb(u8, outPtr + d, z);
    if (d + 2 > limit) return -1;
    const e = aligned ? findEqW(u8, w32, oldPtr, newPtr, j, n) : findEqB(u8, oldPtr, newPtr, j, n);
    const m = e - j;
    if (m > MAX_RUN) return -1;
    d += putUleb(u8, outPtr + d, m);
    if (d + m > limit) return -1;
    copyRun(u8, outPtr + d, newPtr + j, m);
    d += m;
    i = e;
    runs++;
  }
  return d;
}

const ERR_TRUNCATED = -1;
const ERR_BAD_ULEB = -2;
const ERR_ZERO_RUN = -3;
const ERR_PAST_PAGE = -4;

/** QEMU 7.2's decoder checks (§6.3) on the run structure only; returns the bytes covered or an error. */
function xbzrleCheck(u8: Uint8Array, src: number, slen: number, dlen: number): number {
  let i = 0;
  let d = 0;
  while (i < slen) {
    if (slen - i < 2) return ERR_TRUNCATED;
    let z = u8[src + i]!;
    if (z < 0x80) {
      if (i !== 0 && z === 0) return ERR_ZERO_RUN;
      i += 1;
    } else {
      const b1 = u8[src + i + 1]!;
      if (b1 & 0x80) return ERR_BAD_ULEB;
      z = (z & 0x7f) | (b1 << 7);
      if (i !== 0 && z === 0) return ERR_ZERO_RUN;
      i += 2;
    }
    d += z;
    if (d > dlen) return ERR_PAST_PAGE;
    if (slen - i < 2) return ERR_TRUNCATED;
    let c = u8[src + i]!;
    if (c < 0x80) {
      i += 1;
    } else {
      const b1 = u8[src + i + 1]!;
      if (b1 & 0x80) return ERR_BAD_ULEB;
      c = (c & 0x7f) | (b1 << 7);
      i += 2;
    }
    if (c === 0) return ERR_ZERO_RUN;
    if (d + c > dlen) return ERR_PAST_PAGE;
    if (c > slen - i) return ERR_TRUNCATED;
    d += c;
    i += c;
  }
  return d;
}

/** See Kernels.xbzrleDecode: QEMU 7.2's checks, page untouched on error. */
export function xbzrleDecode(u8: Uint8Array, srcPtr: number, len: number, pagePtr: number, pageSize: number): number {
  len >>>= 0;
  pageSize >>>= 0;
  const r = xbzrleCheck(u8, srcPtr, len, pageSize);
  if (r <= 0) return r;
  let i = 0;
  let d = 0;
  while (i < len) {
    let z = u8[srcPtr + i]!;
    if (z < 0x80) {
      i += 1;
    } else {
      z = (z & 0x7f) | (u8[srcPtr + i + 1]! << 7);
      i += 2;
    }
    d += z;
    let c = u8[srcPtr + i]!;
    if (c < 0x80) {
      i += 1;
    } else {
      c = (c & 0x7f) | (u8[srcPtr + i + 1]! << 7);
      i += 2;
    }
    copyRun(u8, pagePtr + d, srcPtr + i, c);
    d += c;
    i += c;
  }
  return r;
}
