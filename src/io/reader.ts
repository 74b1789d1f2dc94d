// ByteReader: the input half of QEMUFile. Bounds-checked big-endian gets on a DataView over a Uint8Array, with
// absolute offsets (`baseOffset`), a throwing or a sticky (QEMUFile) error style, u64 as two u32 halves on the hot
// path, and zero-copy subarrays. docs/io.md, "ByteReader". Browser-safe: Uint8Array, DataView, TextDecoder only.
import { eofError, VmstreamError, type VmstreamErrorCode } from "./errors.js";

const TWO32 = 4294967296;
const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder("utf-8");

export interface ByteReaderOptions {
  /** Absolute stream offset of the first byte (default 0). */
  readonly baseOffset?: number;
  /** Sticky first-error mode instead of throwing (default false). */
  readonly sticky?: boolean;
}

export class ByteReader {
  // All fields are `declare`d and assigned in the constructor with their final types (hot ones first): V8
  // then keeps precise field representations (class-field initialisers made the read loop slower).
  declare private buf: Uint8Array;
  declare private view: DataView;
  /** Read index into the bytes. May be set back to a checkpoint (0 <= pos <= end). */
  declare pos: number;
  /** `end - 8`, or below -8 after a sticky failure: one compare `pos > safe` guards every fixed-width read. */
  declare private safe: number;
  /** Bound for exact checks: `end`, or -1 once a sticky reader has failed (every read then fails fast). */
  declare private lim: number;
  /** Number of bytes (`data.length`). */
  declare end: number;
  /** Absolute stream offset of byte 0. */
  declare baseOffset: number;
  declare readonly sticky: boolean;
  /** Sticky mode: the first error, or undefined. Always undefined in throwing mode. */
  declare error: VmstreamError | undefined;
  /** High half (unsigned u32) of the last {@link be64hl} read. */
  declare hi: number;
  /** Low half (unsigned u32) of the last {@link be64hl} read. */
  declare lo: number;
  /**
   * A peek wanted bytes past the end of the input. A decoder working on a prefix of a stream uses it to know
   * whether an outcome depended only on the bytes it had (QEMU's subsection peek reads ahead).
   */
  declare peekedPastEnd: boolean;

  constructor(bytes: Uint8Array, options: ByteReaderOptions = {}) {
    this.buf = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.safe = bytes.length - 8;
    this.lim = bytes.length;
    this.end = bytes.length;
    this.baseOffset = options.baseOffset ?? 0;
    this.sticky = options.sticky ?? false;
    this.error = undefined;
    this.hi = 0;
    this.lo = 0;
    this.peekedPastEnd = false;
  }

  /** Start over on new input (keeps the mode, clears the error). */
  reset(bytes: Uint8Array, baseOffset = 0): void {
    this.buf = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.safe = bytes.length - 8;
    this.lim = bytes.length;
    this.end = bytes.length;
    this.baseOffset = baseOffset;
    this.error = undefined;
    this.hi = 0;
    this.lo = 0;
    this.peekedPastEnd = false;
  }

  /** The whole input. */
  get data(): Uint8Array {
    return this.buf;
  }

  /** Absolute stream offset of the next byte. */
  get offset(): number {
    return this.baseOffset + this.pos;
  }

  /** Bytes left (0 once a sticky reader has failed). */
  get remaining(): number {
    return this.lim < 0 ? 0 : this.end - this.pos;
  }

  /** No sticky error recorded. */
  get ok(): boolean {
    return this.error === undefined;
  }

  /** Throw the sticky error, if any. */
  check(): void {
    if (this.error !== undefined) throw this.error;
  }

  /**
   * Report an error: throws it (throwing mode), or records it if it is the first and stops all further reads
   * (sticky mode). Higher layers call this for their own errors so both modes work for them too.
   */
  fail(err: VmstreamError): void {
    if (!this.sticky) throw err;
    if (this.error === undefined) this.error = err;
    this.lim = -1;
    this.safe = -9;
  }

  /** Shorthand: fail with a new error at the absolute offset of `pos` (or of the relative index `at`). */
  raise(code: VmstreamErrorCode, summary: string, detail?: string, at: number = this.pos): void {
    this.fail(new VmstreamError(code, summary, { offset: this.baseOffset + at, detail }));
  }

  /** EOF for an `n`-byte read at pos. Returns 0 so hot paths can `return this.short(n)`. */
  private short(n: number): number {
    if (this.lim >= 0) this.fail(eofError(this.baseOffset + this.pos, n, this.end - this.pos));
    return 0;
  }

  /**
   * Slow path of the fixed-width reads (pos > safe: near the end, or failed): true when `n` bytes are there,
   * else fails (EOF) and returns false.
   */
  private has(n: number): boolean {
    if (this.pos + n <= this.lim) return true;
    this.short(n);
    return false;
  }

  // --- unsigned ---------------------------------------------------------------------------------

  u8(): number {
    const p = this.pos;
    if (p > this.safe && !this.has(1)) return 0;
    this.pos = p + 1;
    return this.buf[p]!;
  }

  be16(): number {
    const p = this.pos;
    if (p > this.safe && !this.has(2)) return 0;
    this.pos = p + 2;
    return this.view.getUint16(p);
  }

  /** Unsigned: 0 .. 2^32-1. */
  be32(): number {
    const p = this.pos;
    if (p > this.safe && !this.has(4)) return 0;
    this.pos = p + 4;
    return this.view.getUint32(p);
  }

  /** Hot-path u64: sets `this.hi` and `this.lo` (unsigned u32 halves; both 0 on failure). No BigInt. */
  be64hl(): void {
    const p = this.pos;
    if (p > this.safe && !this.has(8)) {
      this.hi = this.lo = 0;
      return;
    }
    this.pos = p + 8;
    this.hi = this.view.getUint32(p);
    this.lo = this.view.getUint32(p + 4);
  }

  /** API-edge u64 as bigint: 0n .. 2^64-1. */
  be64(): bigint {
    const p = this.pos;
    if (p > this.safe && !this.has(8)) return 0n;
    this.pos = p + 8;
    return (BigInt(this.view.getUint32(p)) << 32n) | BigInt(this.view.getUint32(p + 4));
  }

  /** u64 as a number; fails with RANGE (consuming nothing) when above 2^53-1. */
  be64n(): number {
    const p = this.pos;
    if (p > this.safe && !this.has(8)) return 0;
    const v = this.view.getUint32(p) * TWO32 + this.view.getUint32(p + 4);
    if (v > Number.MAX_SAFE_INTEGER) {
      this.raise("RANGE", "be64 value above 2^53-1 read as a number", `0x${this.hex64(p)}`, p);
      return 0;
    }
    this.pos = p + 8;
    return v;
  }

  // --- signed -----------------------------------------------------------------------------------

  s8(): number {
    const p = this.pos;
    if (p > this.safe && !this.has(1)) return 0;
    this.pos = p + 1;
    return this.view.getInt8(p);
  }

  sbe16(): number {
    const p = this.pos;
    if (p > this.safe && !this.has(2)) return 0;
    this.pos = p + 2;
    return this.view.getInt16(p);
  }

  sbe32(): number {
    const p = this.pos;
    if (p > this.safe && !this.has(4)) return 0;
    this.pos = p + 4;
    return this.view.getInt32(p);
  }

  /** s64 as bigint: -2^63 .. 2^63-1. */
  sbe64(): bigint {
    const p = this.pos;
    if (p > this.safe && !this.has(8)) return 0n;
    this.pos = p + 8;
    return (BigInt(this.view.getInt32(p)) << 32n) | BigInt(this.view.getUint32(p + 4));
  }

  /** s64 as a number; fails with RANGE (consuming nothing) outside the safe integers. */
  sbe64n(): number {
    const p = this.pos;
    if (p > this.safe && !this.has(8)) return 0;
    const v = this.view.getInt32(p) * TWO32 + this.view.getUint32(p + 4);
    if (!Number.isSafeInteger(v)) {
      this.raise("RANGE", "s64 value outside the safe integers read as a number", `0x${this.hex64(p)}`, p);
      return 0;
    }
    this.pos = p + 8;
    return v;
  }

  // --- IEEE 754, big-endian ---------------------------------------------------------------------

  f32be(): number {
    const p = this.pos;
    if (p > this.safe && !this.has(4)) return 0;
    this.pos = p + 4;
    return this.view.getFloat32(p);
  }

  f64be(): number {
    const p = this.pos;
    if (p > this.safe && !this.has(8)) return 0;
    this.pos = p + 8;
    return this.view.getFloat64(p);
  }

  // --- byte runs --------------------------------------------------------------------------------

  /** `n` bytes as a zero-copy subarray of the input. */
  bytes(n: number): Uint8Array {
    const p = this.pos;
    if (!(n >= 0) || n !== Math.floor(n)) {
      this.raise("RANGE", "bad byte count", String(n));
      return EMPTY;
    }
    if (p + n > this.lim) {
      this.short(n);
      return EMPTY;
    }
    this.pos = p + n;
    return this.buf.subarray(p, p + n);
  }

  /** `n` bytes as a fresh copy. */
  bytesCopy(n: number): Uint8Array {
    return this.bytes(n).slice();
  }

  /** Consume `n` bytes. */
  skip(n: number): void {
    this.bytes(n);
  }

  /**
   * QEMU counted string (u8 len + bytes) decoded as UTF-8 (ASCII fast path; invalid UTF-8 becomes U+FFFD,
   * use {@link cstrRaw} for the exact bytes). Like qemu_get_counted_string, length 0 is an error
   * (`EMPTY_STRING`) unless `allowEmpty`. Fails without consuming anything.
   */
  cstr(allowEmpty = false): string {
    const p = this.pos;
    if (p + 1 > this.lim) {
      this.short(1);
      return "";
    }
    const n = this.buf[p]!;
    if (n === 0 && !allowEmpty) {
      this.raise("EMPTY_STRING", "empty counted string", "QEMU requires a non-empty string here", p);
      return "";
    }
    if (p + 1 + n > this.lim) {
      this.short(1 + n);
      return "";
    }
    this.pos = p + 1 + n;
    return decodeText(this.buf, p + 1, n);
  }

  /** Counted string as raw bytes (zero-copy subarray); accepts length 0. */
  cstrRaw(): Uint8Array {
    const p = this.pos;
    if (p + 1 > this.lim) {
      this.short(1);
      return EMPTY;
    }
    const n = this.buf[p]!;
    if (p + 1 + n > this.lim) {
      this.short(1 + n);
      return EMPTY;
    }
    this.pos = p + 1 + n;
    return this.buf.subarray(p + 1, p + 1 + n);
  }

  // --- look-ahead -------------------------------------------------------------------------------

  /** Up to `n` bytes from pos without consuming (fewer at the end; empty after a sticky error). Never fails. */
  peek(n: number): Uint8Array {
    if (this.lim < 0 || !(n > 0)) return EMPTY;
    const want = this.pos + Math.floor(n);
    if (want > this.end) this.peekedPastEnd = true;
    return this.buf.subarray(this.pos, Math.min(this.end, want));
  }

  /** The byte at pos + `at` without consuming, or -1 when there is none (or after a sticky error). */
  peekU8(at = 0): number {
    const i = this.pos + at;
    if (at >= 0 && i < this.lim) return this.buf[i]!;
    if (at >= 0 && this.lim >= 0) this.peekedPastEnd = true;
    return -1;
  }

  // --- limits -----------------------------------------------------------------------------------

  /**
   * Check a length read from the stream against a cap before using it: returns `n`, or fails with `LIMIT`
   * (offset = current position, i.e. just after the length field) and returns 0.
   */
  checkLength(n: number, max: number, what: string): number {
    if (n >= 0 && n <= max) return n;
    this.raise("LIMIT", `${what} length over the limit`, `${n} > ${max}`);
    return 0;
  }

  private hex64(p: number): string {
    return (
      this.view.getUint32(p).toString(16).padStart(8, "0") +
      this.view
        .getUint32(p + 4)
        .toString(16)
        .padStart(8, "0")
    );
  }
}

/** Decode `n` bytes at `o`: ASCII directly, anything else through TextDecoder (UTF-8, non-fatal). */
function decodeText(buf: Uint8Array, o: number, n: number): string {
  for (let i = 0; i < n; i++) {
    if (buf[o + i]! >= 0x80) return utf8.decode(buf.subarray(o, o + n));
  }
  return String.fromCharCode.apply(null, buf.subarray(o, o + n) as unknown as number[]);
}
