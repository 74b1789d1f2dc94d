// BerReader: an ASN.1 BER (X.690) TLV reader over a Uint8Array: header() leaves the identifier and length in
// fields, the caller reads, skips or enters the contents; strict where X.690 says "shall", bounded, errors at
// absolute offsets (docs/ber.md, "The TLV layer"). Browser-safe.
import { eofError, VmstreamError } from "../io/errors.js";

const EMPTY = new Uint8Array(0);
const utf8Fatal = new TextDecoder("utf-8", { fatal: true });

export interface BerReaderOptions {
  /** Absolute offset of byte 0 (for error messages). */
  readonly baseOffset?: number;
  /** Maximum nesting of constructed values (default 512). */
  readonly maxDepth?: number;
}

export class BerReader {
  declare private buf: Uint8Array;
  declare private view: DataView;
  /** Read index. May be set back to any earlier value (a checkpoint). */
  declare pos: number;
  /** Number of bytes. */
  declare end: number;
  declare baseOffset: number;
  declare maxDepth: number;
  /** Current nesting (enter() minus leave()). */
  declare depth: number;

  // --- the last header read ---
  /** Index of its first identifier octet. */
  declare start: number;
  /** First identifier octet: class | P/C | tag number (31 = high tag number). */
  declare id: number;
  /** Class bits (0x00, 0x40, 0x80, 0xC0). */
  declare cls: number;
  declare constructed: boolean;
  declare tagNo: number;
  /** Contents length, or -1 for an indefinite length. */
  declare len: number;

  constructor(bytes: Uint8Array, options: BerReaderOptions = {}) {
    this.buf = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.end = bytes.length;
    this.baseOffset = options.baseOffset ?? 0;
    this.maxDepth = options.maxDepth ?? 512;
    this.depth = 0;
    this.start = 0;
    this.id = 0;
    this.cls = 0;
    this.constructed = false;
    this.tagNo = 0;
    this.len = 0;
  }

  /** Absolute offset of the read position. */
  get offset(): number {
    return this.baseOffset + this.pos;
  }

  /** The bytes (for slicing by callers that keep offsets). */
  get bytes(): Uint8Array {
    return this.buf;
  }

  /** Throw a BAD_VALUE (or `code`) error at index `at`. */
  raise(summary: string, detail?: string, at: number = this.pos, code = "BAD_VALUE"): never {
    throw new VmstreamError(code, summary, { offset: this.baseOffset + at, ...(detail !== undefined ? { detail } : {}) });
  }

  private eof(need: number, at: number): never {
    throw eofError(this.baseOffset + at, need, Math.max(0, this.end - at));
  }

  // --- identifier and length ------------------------------------------------------------------

  /** Read an identifier and a length at pos; the contents start at the new pos. */
  header(): void {
    const buf = this.buf;
    let p = this.pos;
    const end = this.end;
    if (p + 2 > end) this.eof(2, p);
    this.start = p;
    const id = buf[p++]!;
    this.id = id;
    this.cls = id & 0xc0;
    this.constructed = (id & 0x20) !== 0;
    let n = id & 0x1f;
    if (n === 0x1f) {
      let b = buf[p]!;
      if (b === 0x80) this.raise("BER tag number with a leading 0x80 octet", undefined, p);
      n = 0;
      for (let k = 0; ; k++) {
        if (p >= end) this.eof(1, p);
        if (k === 5) this.raise("BER tag number too large", undefined, p, "LIMIT");
        b = buf[p++]!;
        n = n * 128 + (b & 0x7f);
        if ((b & 0x80) === 0) break;
      }
      if (p >= end) this.eof(1, p);
    }
    this.tagNo = n;
    const l = buf[p++]!;
    if (l < 0x80) {
      this.len = l;
    } else if (l === 0x80) {
      if (!this.constructed) this.raise("indefinite length on a primitive BER value", undefined, p - 1);
      this.len = -1;
    } else {
      const k = l & 0x7f;
      if (l === 0xff) this.raise("reserved BER length octet 0xFF", undefined, p - 1);
      if (p + k > end) this.eof(k, p);
      let v = 0;
      for (let i = 0; i < k; i++) {
        v = v * 256 + buf[p++]!;
        if (v > Number.MAX_SAFE_INTEGER) this.raise("BER length too large", undefined, p - 1, "LIMIT");
      }
      this.len = v;
    }
    if (this.len > end - p) this.eof(this.len, p);
    this.pos = p;
  }

  /** Read the next header without consuming it (pos is restored). False at the end of the bytes. */
  peekHeader(): boolean {
    if (this.pos >= this.end) return false;
    const p = this.pos;
    this.header();
    this.pos = p;
    return true;
  }

  /** Whether the next two octets are an end-of-contents marker. */
  atEoc(): boolean {
    const p = this.pos;
    return p + 2 <= this.end && this.buf[p] === 0 && this.buf[p + 1] === 0;
  }

  // --- constructed ----------------------------------------------------------------------------

  /**
   * Enter the constructed value whose header was just read. Returns its end for {@link atEnd} and
   * {@link leave}: the index after its contents, or -1 when the length is indefinite.
   */
  enter(): number {
    if (!this.constructed) this.raise("expected a constructed BER value", undefined, this.start);
    if (++this.depth > this.maxDepth) this.raise("BER nesting too deep", `more than ${this.maxDepth} levels`, this.start, "LIMIT");
    return this.len < 0 ? -1 : this.pos + this.len;
  }

  /** Whether the contents of the value entered with end `end` are all read. */
  atEnd(end: number): boolean {
    if (end >= 0) return this.pos >= end;
    if (this.pos + 2 > this.end) this.eof(2, this.pos);
    return this.buf[this.pos] === 0 && this.buf[this.pos + 1] === 0;
  }

  /** Leave a value entered with end `end`: its contents must be all read (an indefinite one: EOC next). */
  leave(end: number): void {
    if (end >= 0) {
      if (this.pos !== end) this.raise("BER constructed value has more contents than expected", `${end - this.pos} bytes left`);
    } else {
      if (!this.atEnd(-1)) this.raise("expected end-of-contents (00 00)");
      this.pos += 2;
    }
    this.depth--;
  }

  /** Skip the contents of the value whose header was just read. */
  skip(): void {
    if (this.len >= 0) {
      this.pos += this.len;
      return;
    }
    const end = this.enter();
    while (!this.atEnd(end)) {
      this.header();
      this.skip();
    }
    this.leave(end);
  }

  /** Read a header and skip its value. */
  skipElement(): void {
    this.header();
    this.skip();
  }

  /** Number of elements from pos to `end` (pos is restored). */
  count(end: number): number {
    const p = this.pos;
    const d = this.depth;
    let n = 0;
    try {
      while (!this.atEnd(end)) {
        this.skipElement();
        n++;
      }
    } finally {
      this.pos = p;
      this.depth = d;
    }
    return n;
  }

  // --- primitive contents (after header()) ----------------------------------------------------

  private primitive(what: string): void {
    if (this.constructed) this.raise(`constructed encoding of a BER ${what}`, undefined, this.start);
  }

  /** INTEGER contents as a safe integer (fails with RANGE otherwise; use bigint()). */
  int(): number {
    this.primitive("INTEGER");
    const n = this.len;
    const buf = this.buf;
    const p = this.pos;
    if (n === 0) this.raise("empty BER INTEGER", undefined, this.start);
    if (n > 1) {
      const b0 = buf[p]!;
      const b1 = buf[p + 1]!;
      if ((b0 === 0 && b1 < 0x80) || (b0 === 0xff && b1 >= 0x80)) this.raise("BER INTEGER not in minimal form", undefined, this.start);
    }
    let v: number;
    if (n <= 4) {
      v = (buf[p]! << 24) >> 24;
      for (let i = 1; i < n; i++) v = v * 256 + buf[p + i]!;
    } else if (n <= 7) {
      v = (buf[p]! << 24) >> 24;
      for (let i = 1; i < n; i++) v = v * 256 + buf[p + i]!;
      if (!Number.isSafeInteger(v)) this.raise("BER INTEGER outside the safe integers", undefined, this.start, "RANGE");
    } else {
      this.raise("BER INTEGER outside the safe integers", `${n} octets`, this.start, "RANGE");
    }
    this.pos = p + n;
    return v;
  }

  /** INTEGER contents as a bigint (any size). */
  bigint(): bigint {
    this.primitive("INTEGER");
    const n = this.len;
    if (n <= 6 && n > 0) return BigInt(this.int());
    if (n === 0) this.raise("empty BER INTEGER", undefined, this.start);
    const buf = this.buf;
    const p = this.pos;
    const b0 = buf[p]!;
    const b1 = buf[p + 1]!;
    if ((b0 === 0 && b1 < 0x80) || (b0 === 0xff && b1 >= 0x80)) this.raise("BER INTEGER not in minimal form", undefined, this.start);
    let v: bigint;
    if (n <= 9) {
      // The low 8 octets as two u32 halves, then the sign (and a ninth octet) on top.
      const lo = readU32(buf, p + n - 4, 4);
      const hi = readU32(buf, p, n - 4);
      v = (BigInt(hi) << 32n) | BigInt(lo);
      v = BigInt.asIntN(8 * n, v);
    } else {
      let hex = "";
      for (let i = 0; i < n; i++) hex += buf[p + i]!.toString(16).padStart(2, "0");
      v = BigInt.asIntN(8 * n, BigInt("0x" + hex));
    }
    this.pos = p + n;
    return v;
  }

  /** BOOLEAN contents (one octet, non-zero is TRUE). */
  boolean(): boolean {
    this.primitive("BOOLEAN");
    if (this.len !== 1) this.raise("BER BOOLEAN is not one octet", `${this.len} octets`, this.start);
    return this.buf[this.pos++] !== 0;
  }

  /** NULL contents (none). */
  null(): void {
    this.primitive("NULL");
    if (this.len !== 0) this.raise("BER NULL with contents", `${this.len} octets`, this.start);
  }

  /** REAL contents (X.690 8.5: binary in base 2, 8 or 16 with any scale, decimal NR1-3, special values). */
  real(): number {
    this.primitive("REAL");
    const n = this.len;
    const buf = this.buf;
    const p = this.pos;
    if (n === 0) return 0;
    const f = buf[p]!;
    this.pos = p + n;
    if ((f & 0x80) !== 0) return this.binaryReal(f, p + 1, n - 1);
    if ((f & 0x40) !== 0) {
      if (n !== 1) this.raise("BER REAL special value with extra octets", undefined, this.start);
      switch (f) {
        case 0x40:
          return Infinity;
        case 0x41:
          return -Infinity;
        case 0x42:
          return NaN;
        case 0x43:
          return -0;
      }
      this.raise("unknown BER REAL special value", `0x${f.toString(16)}`, this.start);
    }
    // Decimal: ISO 6093 NR1, NR2 or NR3 in ASCII.
    const form = f & 0x3f;
    if (form < 1 || form > 3) this.raise("bad BER REAL decimal form", `0x${f.toString(16)}`, this.start);
    let text = "";
    for (let i = 1; i < n; i++) text += String.fromCharCode(buf[p + i]!);
    const t = text.trim().replace(",", ".");
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) this.raise("bad BER REAL decimal number", JSON.stringify(text), this.start);
    return Number(t);
  }

  private binaryReal(f: number, p: number, n: number): number {
    const buf = this.buf;
    const sign = (f & 0x40) !== 0 ? -1 : 1;
    const baseBits = (f >> 4) & 3;
    if (baseBits === 3) this.raise("reserved BER REAL base", undefined, this.start);
    const scale = (f >> 2) & 3;
    let ek = (f & 3) + 1;
    let q = p;
    if (ek === 4) {
      if (n < 1) this.raise("truncated BER REAL", undefined, this.start);
      ek = buf[q++]!;
      n--;
      if (ek === 0) this.raise("BER REAL exponent of length 0", undefined, this.start);
    }
    if (ek > n) this.raise("truncated BER REAL exponent", undefined, this.start);
    if (ek > 4) this.raise("BER REAL exponent too large", `${ek} octets`, this.start, "UNSUPPORTED");
    let e = (buf[q]! << 24) >> 24;
    for (let i = 1; i < ek; i++) e = e * 256 + buf[q + i]!;
    q += ek;
    const mk = n - ek;
    const e2 = e * (baseBits === 0 ? 1 : baseBits === 1 ? 3 : 4);
    // Mantissa: exact as a number up to 2^53 (every canonical REAL of a double); beyond, rounded
    // once from a bigint.
    let m = 0;
    if (mk <= 7) for (let i = 0; i < mk; i++) m = m * 256 + buf[q + i]!;
    if (mk <= 7 && m <= Number.MAX_SAFE_INTEGER) return sign * ldexp(m * 2 ** scale, e2);
    let big = 0n;
    for (let i = 0; i < mk; i++) big = (big << 8n) | BigInt(buf[q + i]!);
    const bits = big.toString(2).length;
    const shift = Math.max(0, bits - 64);
    return sign * ldexp(Number(big >> BigInt(shift)) * 2 ** scale, e2 + shift);
  }

  /** OCTET STRING contents: a view of the input when primitive, a copy of the segments when constructed. */
  octets(): Uint8Array {
    if (!this.constructed) {
      const v = this.buf.subarray(this.pos, this.pos + this.len);
      this.pos += this.len;
      return v;
    }
    const parts: Uint8Array[] = [];
    this.segments(parts);
    if (parts.length === 1) return parts[0]!;
    let total = 0;
    for (const s of parts) total += s.length;
    const out = new Uint8Array(total);
    let o = 0;
    for (const s of parts) {
      out.set(s, o);
      o += s.length;
    }
    return parts.length === 0 ? EMPTY : out;
  }

  /** Constructed string: segments are OCTET STRINGs (primitive or constructed again). */
  private segments(parts: Uint8Array[]): void {
    const end = this.enter();
    while (!this.atEnd(end)) {
      this.header();
      if ((this.id & 0xdf) !== 0x04)
        this.raise("segment of a constructed BER string is not an OCTET STRING", `identifier 0x${this.id.toString(16)}`, this.start);
      if (this.constructed) this.segments(parts);
      else {
        parts.push(this.buf.subarray(this.pos, this.pos + this.len));
        this.pos += this.len;
      }
    }
    this.leave(end);
  }

  /** UTF8String contents (invalid UTF-8 fails). */
  utf8(): string {
    const start = this.start;
    if (!this.constructed && this.len <= 32) {
      // Short ASCII (field and struct names): no subarray, no decoder.
      const buf = this.buf;
      const p = this.pos;
      const n = this.len;
      let s = "";
      let i = 0;
      for (; i < n; i++) {
        const c = buf[p + i]!;
        if (c >= 0x80) break;
        s += String.fromCharCode(c);
      }
      if (i === n) {
        this.pos = p + n;
        return s;
      }
    }
    const b = this.octets();
    const n = b.length;
    let ascii = true;
    for (let i = 0; i < n; i++) {
      if (b[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return n < 64 ? String.fromCharCode.apply(null, b as unknown as number[]) : latin(b);
    try {
      return utf8Fatal.decode(b);
    } catch {
      this.raise("invalid UTF-8 in a BER UTF8String", undefined, start);
    }
  }

  /** Whether the contents just ahead (a primitive string of `len` octets) equal the ASCII/UTF-8 of `s`; does not consume. */
  contentsEqual(s: string): boolean {
    if (this.constructed) return false;
    const n = this.len;
    if (n !== s.length) {
      // Non-ASCII names have a different byte length than string length.
      for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return this.contentsEqualSlow(s);
      return false;
    }
    const buf = this.buf;
    const p = this.pos;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) return this.contentsEqualSlow(s);
      if (buf[p + i] !== c) return false;
    }
    return true;
  }

  private contentsEqualSlow(s: string): boolean {
    const b = new TextEncoder().encode(s);
    if (b.length !== this.len) return false;
    for (let i = 0; i < b.length; i++) if (this.buf[this.pos + i] !== b[i]) return false;
    return true;
  }
}

/** Unsigned big-endian integer of k (0..4) octets at p. */
function readU32(buf: Uint8Array, p: number, k: number): number {
  let v = 0;
  for (let i = 0; i < k; i++) v = v * 256 + buf[p + i]!;
  return v;
}

function latin(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 4096) s += String.fromCharCode.apply(null, b.subarray(i, i + 4096) as unknown as number[]);
  return s;
}

/** x * 2^e, exact when the result is representable (one rounding when it is subnormal). */
export function ldexp(x: number, e: number): number {
  if (x === 0 || !Number.isFinite(x) || e === 0) return x;
  if (Math.abs(x) < 2 ** -1000) {
    x *= 2 ** 64;
    e -= 64;
  }
  // y = x scaled into [1, 2): exact (a power-of-two scaling that stays normal).
  let ex = Math.floor(Math.log2(Math.abs(x)));
  let y = x * 2 ** -ex;
  if (Math.abs(y) >= 2) {
    y /= 2;
    ex++;
  } else if (Math.abs(y) < 1) {
    y *= 2;
    ex--;
  }
  const t = ex + e;
  if (t > 1023) return y * Infinity;
  if (t >= -1022) return y * 2 ** t;
  if (t < -1076) return y * 0;
  return y * 2 ** (t + 64) * 2 ** -64;
}
