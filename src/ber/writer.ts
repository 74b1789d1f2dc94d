// BerWriter: an ASN.1 BER (X.690) TLV writer on one growable buffer: fork/join by a patched one-octet length
// (or an indefinite length whose bytes can be handed out early), minimal INTEGER, canonical REAL; no object per
// node (docs/ber.md, "The TLV layer"). Browser-safe.
import { VmstreamError } from "../io/errors.js";

/** The identifier octet(s): a number for tag numbers 0..30, the octets for higher ones. */
export type Tag = number | Uint8Array;

/** Identifier class bits. */
export const CLASS_UNIVERSAL = 0x00;
export const CLASS_APPLICATION = 0x40;
export const CLASS_CONTEXT = 0x80;
export const CLASS_PRIVATE = 0xc0;
/** The P/C bit: set for constructed encodings. */
export const CONSTRUCTED = 0x20;

/** Universal identifier octets used here. */
export const T_BOOLEAN = 0x01;
export const T_INTEGER = 0x02;
export const T_OCTET_STRING = 0x04;
export const T_NULL = 0x05;
export const T_REAL = 0x09;
export const T_ENUMERATED = 0x0a;
export const T_UTF8STRING = 0x0c;
export const T_SEQUENCE = 0x30;
export const T_SET = 0x31;

/**
 * The identifier for class `cls` (CLASS_*), primitive or constructed, tag number `n` (0 .. 2^32-1).
 * Numbers below 31 give the single octet; higher ones the octets `cls|pc|1F` then base-128 digits.
 */
export function berTag(cls: number, constructed: boolean, n: number): Tag {
  if ((cls & ~0xc0) !== 0 || !Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) {
    throw new VmstreamError("RANGE", "bad ASN.1 tag", { detail: `class 0x${cls.toString(16)}, number ${n}` });
  }
  const first = cls | (constructed ? CONSTRUCTED : 0);
  if (n < 31) return first | n;
  const digits: number[] = [];
  for (let v = n; ; v = Math.floor(v / 128)) {
    digits.unshift((v % 128) | (digits.length > 0 ? 0x80 : 0));
    if (v < 128) break;
  }
  return Uint8Array.from([first | 0x1f, ...digits]);
}

/** An [APPLICATION n] identifier (the tags of the stream schema, docs/vmstate.asn1). */
export function applicationTag(n: number, constructed: boolean): Tag {
  return berTag(CLASS_APPLICATION, constructed, n);
}

const TWO32 = 4294967296;
const TWO31 = 2147483648;
const U32 = 0xffffffffn;
const utf8 = new TextEncoder();
const STACK_CAPACITY = 16;

export interface BerWriterOptions {
  /** Initial buffer size (default 4096). */
  readonly initialCapacity?: number;
}

export class BerWriter {
  declare private buf: Uint8Array;
  declare private view: DataView;
  /** Write index. */
  declare pos: number;
  /**
   * Open constructed values: index of the reserved length octet (definite, >= 0); for an indefinite
   * one -2 - the index of its 0x80 octet, or -1 once that octet was handed out by take().
   */
  declare private open: Int32Array;
  /** Open constructed values: index of their first identifier octet. */
  declare private starts: Int32Array;
  declare private depthN: number;
  /** Bytes handed out by take() before buf[0]. */
  declare private taken: number;
  declare private readonly scratch: DataView;

  constructor(options: BerWriterOptions = {}) {
    const cap = Math.max(64, Math.floor(options.initialCapacity ?? 4096));
    this.buf = new Uint8Array(cap);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
    this.open = new Int32Array(STACK_CAPACITY);
    this.starts = new Int32Array(STACK_CAPACITY);
    this.depthN = 0;
    this.taken = 0;
    this.scratch = new DataView(new ArrayBuffer(8));
  }

  /** Number of open constructed values. */
  get depth(): number {
    return this.depthN;
  }

  /** Logical offset: bytes written since construction or reset(), taken ones included. */
  get offset(): number {
    return this.taken + this.pos;
  }

  /** Make room for `n` more bytes. */
  ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < need) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.pos));
    this.buf = nb;
    this.view = new DataView(nb.buffer);
  }

  // --- identifier and length ----------------------------------------------------------------

  /** The identifier octet(s). */
  tag(t: Tag): void {
    if (typeof t === "number") {
      if (this.pos >= this.buf.length) this.ensure(1);
      this.buf[this.pos++] = t;
    } else {
      this.raw(t);
    }
  }

  /** A definite length in minimal form. */
  length(n: number): void {
    if (n < 128) {
      if (this.pos >= this.buf.length) this.ensure(1);
      this.buf[this.pos++] = n;
      return;
    }
    if (!Number.isSafeInteger(n)) throw new VmstreamError("RANGE", "bad BER length", { offset: this.offset, detail: String(n) });
    const k = lengthOctets(n);
    this.ensure(1 + k);
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = 0x80 | k;
    for (let i = k - 1; i >= 0; i--) buf[p++] = Math.floor(n / 2 ** (8 * i)) & 0xff;
    this.pos = p;
  }

  /** Already-encoded bytes (a complete TLV, or identifier octets). */
  raw(b: Uint8Array): void {
    const n = b.length;
    if (this.pos + n > this.buf.length) this.ensure(n);
    if (n <= 16) {
      const buf = this.buf;
      const p = this.pos;
      for (let i = 0; i < n; i++) buf[p + i] = b[i]!;
    } else {
      this.buf.set(b, this.pos);
    }
    this.pos += n;
  }

  // --- constructed ----------------------------------------------------------------------------

  /**
   * Open a constructed value. `tag` should have the constructed bit set (0x30, 0xA0|n, berTag(..., true)).
   * Definite (default): one length octet is reserved and patched by join(). Indefinite: 0x80 now,
   * 00 00 at join() — unless nothing was written inside: then the 0x80 becomes a definite length 0.
   */
  fork(t: Tag, indefinite = false): void {
    const start = this.pos;
    this.tag(t);
    if (this.pos + 1 > this.buf.length) this.ensure(1);
    let mark: number;
    if (indefinite) {
      mark = -2 - this.pos;
      this.buf[this.pos++] = 0x80;
    } else {
      mark = this.pos;
      this.buf[this.pos++] = 0;
    }
    const d = this.depthN;
    if (d >= this.open.length) {
      const open = new Int32Array(d * 2);
      open.set(this.open);
      this.open = open;
      const starts = new Int32Array(d * 2);
      starts.set(this.starts);
      this.starts = starts;
    }
    this.open[d] = mark;
    this.starts[d] = start;
    this.depthN = d + 1;
  }

  /** Close the innermost open constructed value. */
  join(): void {
    if (this.depthN === 0) throw new VmstreamError("RANGE", "BER join() without fork()", { offset: this.offset });
    const mark = this.open[--this.depthN]!;
    if (mark < 0) {
      // An empty value gets the definite length 0 instead of 80 00 00: shorter, and libtasn1 4.19
      // fails to decode an empty SEQUENCE OF of indefinite length.
      if (mark <= -2 && -2 - mark === this.pos - 1) {
        this.buf[this.pos - 1] = 0;
        return;
      }
      if (this.pos + 2 > this.buf.length) this.ensure(2);
      this.buf[this.pos++] = 0;
      this.buf[this.pos++] = 0;
      return;
    }
    const start = mark + 1;
    const n = this.pos - start;
    if (n < 128) {
      this.buf[mark] = n;
      return;
    }
    const k = lengthOctets(n);
    this.ensure(k);
    const buf = this.buf;
    buf.copyWithin(start + k, start, this.pos);
    buf[mark] = 0x80 | k;
    for (let i = 0; i < k; i++) buf[mark + 1 + i] = Math.floor(n / 2 ** (8 * (k - 1 - i))) & 0xff;
    this.pos += k;
  }

  /** Whether the innermost open value has an indefinite length (false when none is open). */
  get indefinite(): boolean {
    return this.depthN > 0 && this.open[this.depthN - 1]! < 0;
  }

  // --- primitives -----------------------------------------------------------------------------

  /** INTEGER from a safe integer (minimal two's complement). */
  int(v: number, t: Tag = T_INTEGER): void {
    this.tag(t);
    if (this.pos + 9 > this.buf.length) this.ensure(9);
    const buf = this.buf;
    let p = this.pos;
    if (v >= -128 && v < 128 && (v | 0) === v) {
      buf[p] = 1;
      buf[p + 1] = v;
      this.pos = p + 2;
      return;
    }
    if (v >= -TWO31 && v < TWO31 && (v | 0) === v) {
      const k = v >= -0x8000 && v < 0x8000 ? 2 : v >= -0x800000 && v < 0x800000 ? 3 : 4;
      buf[p++] = k;
      for (let i = k - 1; i >= 0; i--) buf[p++] = v >> (8 * i);
      this.pos = p;
      return;
    }
    if (!Number.isSafeInteger(v)) {
      throw new VmstreamError("RANGE", "INTEGER is not a safe integer", { offset: this.offset, detail: String(v) });
    }
    // 2^31 <= |v| < 2^53: two 32-bit halves of the 64-bit two's complement.
    const hi = Math.floor(v / TWO32);
    this.intHL(hi | 0, v - hi * TWO32, v < 0);
  }

  /** INTEGER from a bigint (any size; 64-bit values without BigInt arithmetic beyond the split). */
  bigint(v: bigint, t: Tag = T_INTEGER): void {
    if (v >= -0x80000000n && v < 0x80000000n) {
      this.int(Number(v), t);
      return;
    }
    if (v >= -0x8000000000000000n && v < 0x10000000000000000n) {
      this.tag(t);
      const u = BigInt.asUintN(64, v);
      this.intHL(Number(u >> 32n) | 0, Number(u & U32), v < 0);
      return;
    }
    // Any other size: hex digits of the two's complement.
    this.tag(t);
    const neg = v < 0n;
    let bytes = Math.ceil((neg ? (-v - 1n).toString(2).length : v.toString(2).length) / 8) + 1;
    let hex = BigInt.asUintN(bytes * 8, v)
      .toString(16)
      .padStart(bytes * 2, "0");
    while (bytes > 1) {
      const b0 = parseInt(hex.slice(0, 2), 16);
      const b1 = parseInt(hex.slice(2, 4), 16);
      if ((b0 === 0 && b1 < 0x80) || (b0 === 0xff && b1 >= 0x80)) {
        hex = hex.slice(2);
        bytes--;
      } else break;
    }
    this.length(bytes);
    this.ensure(bytes);
    for (let i = 0; i < bytes; i++) this.buf[this.pos++] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  }

  /**
   * Length and contents of the INTEGER whose 64-bit two's complement is `hi:lo` (hi as a signed or
   * unsigned 32-bit pattern, lo unsigned); `neg`: the value is negative (else a set top bit means a
   * u64 >= 2^63, which takes a leading 00).
   */
  private intHL(hi: number, lo: number, neg: boolean): void {
    const s = this.scratch;
    s.setUint32(0, hi);
    s.setUint32(4, lo);
    const fill = neg ? 0xff : 0;
    let i = 0;
    // Drop leading octets that only repeat the sign.
    while (i < 7 && s.getUint8(i) === fill && (s.getUint8(i + 1) & 0x80) === (fill & 0x80)) i++;
    const lead = !neg && (s.getUint8(i) & 0x80) !== 0;
    const n = 8 - i + (lead ? 1 : 0);
    this.ensure(1 + n);
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = n;
    if (lead) buf[p++] = 0;
    for (; i < 8; i++) buf[p++] = s.getUint8(i);
    this.pos = p;
  }

  /** BOOLEAN: FF for TRUE, 00 for FALSE. */
  boolean(v: boolean, t: Tag = T_BOOLEAN): void {
    this.tag(t);
    if (this.pos + 2 > this.buf.length) this.ensure(2);
    this.buf[this.pos] = 1;
    this.buf[this.pos + 1] = v ? 0xff : 0;
    this.pos += 2;
  }

  /** NULL (empty contents). */
  null(t: Tag = T_NULL): void {
    this.tag(t);
    if (this.pos >= this.buf.length) this.ensure(1);
    this.buf[this.pos++] = 0;
  }

  /**
   * REAL in the canonical binary form (X.690 8.5.7, as DER/CER require: base 2, F = 0, odd
   * mantissa, minimal exponent): exact for every double, so for every float32 value too.
   */
  real(v: number, t: Tag = T_REAL): void {
    this.tag(t);
    this.ensure(12);
    const buf = this.buf;
    let p = this.pos;
    const s = this.scratch;
    s.setFloat64(0, v);
    const hi = s.getUint32(0);
    const lo = s.getUint32(4);
    const sign = hi >>> 31;
    const e = (hi >>> 20) & 0x7ff;
    const mhi = hi & 0xfffff;
    if (e === 0x7ff) {
      buf[p++] = 1;
      buf[p++] = mhi !== 0 || lo !== 0 ? 0x42 : sign ? 0x41 : 0x40;
      this.pos = p;
      return;
    }
    if (e === 0 && mhi === 0 && lo === 0) {
      if (sign) {
        buf[p++] = 1;
        buf[p++] = 0x43;
      } else {
        buf[p++] = 0;
      }
      this.pos = p;
      return;
    }
    // N = mantissa with the hidden bit, E its exponent; strip N's trailing zero bits into E.
    let nhi = e === 0 ? mhi : mhi | 0x100000;
    let nlo = lo;
    let exp = e === 0 ? -1074 : e - 1075;
    if (nlo === 0) {
      nlo = nhi;
      nhi = 0;
      exp += 32;
    }
    const tz = 31 - Math.clz32(nlo & -nlo);
    if (tz > 0) {
      nlo = ((nlo >>> tz) | (nhi << (32 - tz))) >>> 0;
      nhi = nhi >>> tz;
      exp += tz;
    }
    const mant = nhi * TWO32 + nlo; // < 2^53: exact
    const ek = exp >= -128 && exp < 128 ? 1 : 2;
    const mk = mant < 0x100 ? 1 : mant < 0x10000 ? 2 : mant < 0x1000000 ? 3 : mant < TWO32 ? 4 : mant < 2 ** 40 ? 5 : mant < 2 ** 48 ? 6 : 7;
    buf[p++] = 1 + ek + mk;
    buf[p++] = 0x80 | (sign << 6) | (ek - 1);
    if (ek === 2) buf[p++] = (exp >> 8) & 0xff;
    buf[p++] = exp & 0xff;
    for (let i = mk - 1; i >= 4; i--) buf[p++] = Math.floor(nhi / 2 ** (8 * (i - 4))) & 0xff;
    for (let i = Math.min(mk, 4) - 1; i >= 0; i--) buf[p++] = (nlo >>> (8 * i)) & 0xff;
    this.pos = p;
  }

  /** OCTET STRING, primitive (copied). */
  octets(b: Uint8Array, t: Tag = T_OCTET_STRING): void {
    this.tag(t);
    this.length(b.length);
    this.raw(b);
  }

  /** UTF8String (ASCII written directly, anything else through TextEncoder). */
  utf8(str: string, t: Tag = T_UTF8STRING): void {
    this.tag(t);
    const n = str.length;
    if (n < 128) {
      if (this.pos + 1 + n > this.buf.length) this.ensure(1 + n);
      const buf = this.buf;
      const o = this.pos + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = str.charCodeAt(i);
        if (c >= 0x80) break;
        buf[o + i] = c;
      }
      if (i === n) {
        buf[this.pos] = n;
        this.pos = o + n;
        return;
      }
    }
    const b = utf8.encode(str);
    this.length(b.length);
    this.raw(b);
  }

  // --- output ---------------------------------------------------------------------------------

  /** The bytes written (a view, valid until the next write or reset()). Every forked value must be joined. */
  finish(): Uint8Array {
    if (this.depthN !== 0) {
      throw new VmstreamError("RANGE", "BER value still open", { offset: this.offset, detail: `${this.depthN} constructed value(s) not joined` });
    }
    return this.buf.subarray(0, this.pos);
  }

  /**
   * Hand out (as a copy) the bytes that can no longer change: everything before the first open
   * definite-length value, i.e. everything while only indefinite values are open. For streaming.
   */
  take(): Uint8Array {
    let stop = this.pos;
    for (let i = 0; i < this.depthN; i++) {
      if (this.open[i]! >= 0) {
        stop = this.starts[i]!;
        break;
      }
    }
    const out = this.buf.slice(0, stop);
    if (stop > 0) {
      this.buf.copyWithin(0, stop, this.pos);
      this.pos -= stop;
      for (let i = 0; i < this.depthN; i++) {
        const m = this.open[i]!;
        if (m >= 0) this.open[i] = m - stop;
        else if (m <= -2) this.open[i] = -2 - m - stop >= 0 ? m + stop : -1;
        this.starts[i] = Math.max(0, this.starts[i]! - stop);
      }
      this.taken += stop;
    }
    return out;
  }

  /** Forget everything (keeps the buffer). */
  reset(): void {
    this.pos = 0;
    this.depthN = 0;
    this.taken = 0;
  }
}

/** Octets needed for a long-form length `n` (n >= 128). */
function lengthOctets(n: number): number {
  let k = 1;
  while (n >= 2 ** (8 * k)) k++;
  return k;
}
