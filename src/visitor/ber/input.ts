// BerInputVisitor: reads device state from BER and checks every visit against the stream (what it
// reports: docs/ber.md, "What the input visitor checks"). Versions outside the local range are the
// engine's to report: pass the stream's version (peekStruct()) to loadState.
import { BerReader } from "../../ber/reader.js";
import { T_INTEGER, T_SEQUENCE, T_UTF8STRING } from "../../ber/writer.js";
import { nameText } from "../base.js";
import type { Name } from "../visitor.js";
import { BerInputCursor, FAIL, NONE } from "./cursor.js";
import {
  BOOL,
  DONE,
  ELEMS,
  FIELDS,
  FLOAT32,
  FLOAT64,
  INT8,
  INT16,
  INT32,
  INT64,
  type IntegerType,
  OCTETS,
  STRING,
  SUBS,
  T_ARRAY,
  T_LIST,
  T_NULLPTR,
  TAG_SUBSECTION,
  TAG_VMSTATE,
  UINT8,
  UINT16,
  UINT32,
  UINT64,
  type ValueType,
} from "./tags.js";

export interface BerInputOptions {
  /** Absolute offset of byte 0 (for error messages). */
  readonly baseOffset?: number;
  /** Maximum nesting of constructed values (default 512). */
  readonly maxDepth?: number;
  /** Identifier of the root struct (default {@link TAG_VMSTATE}); a single identifier octet. */
  readonly rootTag?: number;
}

const EMPTY = new Uint8Array(0);
const readBoolean = (r: BerReader): boolean => r.boolean();
const readInt = (r: BerReader): number => r.int();
const readBigInt = (r: BerReader): bigint => r.bigint();
const readReal = (r: BerReader): number => r.real();
const readUtf8 = (r: BerReader): string => r.utf8();
/** Whether an integer read is in the range of this side's type (a function each for number and bigint: faster). */
const inRange = (type: IntegerType<number>, x: number): boolean => x >= type.min && x <= type.max;
const inRangeBig = (type: IntegerType<bigint>, x: bigint): boolean => x >= type.min && x <= type.max;
/** Whether a REAL read for a float32 is exact in binary32 (NaN is). */
const exactFloat32 = (_type: ValueType, x: number): boolean => Math.fround(x) === x || Number.isNaN(x);

/**
 * Reads device state from BER and checks it against the local description as the engine walks it.
 * Every difference fails with code MISMATCH and the path of the field (first error sticks).
 */
export class BerInputVisitor extends BerInputCursor {
  readonly direction = "input" as const;
  /** End of the Subsection whose header nextSubsection() consumed. */
  private pendingSub = NONE;
  private readonly rootTag: number;

  constructor(input: Uint8Array | BerReader, options: BerInputOptions = {}) {
    super(input instanceof BerReader ? input : new BerReader(input, options));
    this.rootTag = options.rootTag ?? TAG_VMSTATE;
  }

  /** Whether every byte has been read. */
  atEnd(): boolean {
    return this.r.pos >= this.r.end;
  }

  /**
   * The VMState name and version of the struct that starts at the read position, without consuming
   * it (undefined when the next value is not a VMState): pass the version to loadState.
   */
  peekStruct(): { name: string; version: number } | undefined {
    const r = this.r;
    const p = r.pos;
    const d = r.depth;
    try {
      if (!r.peekHeader()) return undefined;
      r.header();
      if (r.id !== this.rootTag) return undefined;
      r.enter();
      r.header();
      const name = r.utf8();
      r.header();
      const version = r.int();
      return { name, version };
    } catch {
      return undefined;
    } finally {
      r.pos = p;
      r.depth = d;
    }
  }

  // --- structure ------------------------------------------------------------------------------

  override startStruct(name: Name, vmsdName: string, version: number): void {
    this.guard(name, undefined, () => this.openStruct(name, vmsdName, version));
    super.startStruct(name, vmsdName, version);
  }

  private openStruct(name: Name, vmsdName: string, version: number): void {
    const r = this.r;
    const fe = this.value(name, `struct ${vmsdName}`);
    if (fe === FAIL) return;
    if (r.id !== (this.kinds.length === 0 ? this.rootTag : TAG_VMSTATE)) {
      this.typeMismatch(name, `struct ${vmsdName}`);
      return;
    }
    const vmEnd = r.enter();
    r.header();
    if (r.id !== T_UTF8STRING) r.raise("BER VMState without a name", undefined, r.start);
    const at = r.start;
    if (!r.contentsEqual(vmsdName)) {
      this.mismatch(name, "struct type mismatch", `stream has struct ${r.utf8()}, this side expects struct ${vmsdName}`, at);
      return;
    }
    r.pos += r.len;
    r.header();
    if (r.id !== T_INTEGER) r.raise("BER VMState without a version", undefined, r.start);
    const sv = r.int();
    if (sv !== version) {
      this.mismatch(name, "version mismatch", `stream has ${vmsdName} version ${sv}, this side expects version ${version}`, r.start);
      return;
    }
    r.header();
    if (r.id !== T_SEQUENCE) r.raise("BER VMState without fields", undefined, r.start);
    const seqEnd = r.enter();
    this.push(FIELDS, seqEnd, vmEnd, fe);
  }

  /** Fields must all have been read: otherwise the first one left is a field this side does not have. */
  private endFields(): boolean {
    const r = this.r;
    const n = this.kinds.length - 1;
    const end = this.seqEnds[n]!;
    this.skipAbsent();
    if (!r.atEnd(end)) {
      const got = this.peekField();
      this.mismatch(got, `unexpected field ${got}`, `the stream has field ${got} after the last field this side expects in ${this.structName()}`, r.pos);
      return false;
    }
    r.leave(end);
    const vmEnd = this.vmEnds[n]!;
    if (r.atEnd(vmEnd)) {
      this.kinds[n] = DONE;
      return true;
    }
    r.header();
    if (r.id !== T_SEQUENCE) r.raise("unexpected element after the fields of a BER VMState", `identifier 0x${r.id.toString(16)}`, r.start);
    this.seqEnds[n] = r.enter();
    this.kinds[n] = SUBS;
    return true;
  }

  /** Close the innermost struct or subsection. */
  private closeStruct(): void {
    const r = this.r;
    const n = this.kinds.length - 1;
    if (this.kinds[n] === FIELDS && !this.endFields()) return;
    if (this.kinds[n] === SUBS) {
      const end = this.seqEnds[n]!;
      if (!r.atEnd(end)) {
        const p = r.pos;
        r.header();
        let what = "";
        if (r.id === TAG_SUBSECTION) {
          r.enter();
          r.header();
          what = ` ${r.utf8()}`;
        }
        r.pos = p;
        this.mismatch(undefined, `unexpected subsection${what}`, `the stream has subsection${what}, this side reads none here`, p);
        return;
      }
      r.leave(end);
    }
    r.leave(this.vmEnds[n]!);
    this.closeField(this.fieldEnds[n]!);
    this.pop();
  }

  override endStruct(): void {
    this.guard(undefined, undefined, () => this.closeStruct());
    super.endStruct();
  }

  nextSubsection(_parentVmsdName: string): { name: string; version: number } | undefined {
    return this.guard(undefined, undefined, () => {
      const r = this.r;
      const n = this.kinds.length - 1;
      if (n < 0 || this.kinds[n] === ELEMS) return undefined;
      if (this.kinds[n] === FIELDS && !this.endFields()) return undefined;
      if (this.kinds[n] !== SUBS) return undefined;
      if (r.atEnd(this.seqEnds[n]!)) return undefined;
      r.header();
      if (r.id !== TAG_SUBSECTION) r.raise("expected a BER Subsection", `identifier 0x${r.id.toString(16)}`, r.start);
      const subEnd = r.enter();
      r.header();
      if (r.id !== T_UTF8STRING) r.raise("BER Subsection without a name", undefined, r.start);
      const name = r.utf8();
      r.header();
      if (r.id !== T_INTEGER) r.raise("BER Subsection without a version", undefined, r.start);
      const version = r.int();
      this.pendingSub = subEnd;
      return { name, version };
    });
  }

  override startSubsection(name: string, version: number): void {
    super.startSubsection(name, version);
    this.guard(undefined, undefined, () => {
      const r = this.r;
      if (this.pendingSub === NONE) r.raise("subsection started without nextSubsection()", name, r.pos, "INTERNAL");
      const vmEnd = this.pendingSub;
      this.pendingSub = NONE;
      r.header();
      if (r.id !== T_SEQUENCE) r.raise("BER Subsection without fields", undefined, r.start);
      this.push(FIELDS, r.enter(), vmEnd, NONE);
    });
  }

  override endSubsection(): void {
    this.guard(undefined, undefined, () => this.closeStruct());
    super.endSubsection();
  }

  override startArray(name: Name, count: number, elemSize: number, elemType: string): number {
    const n = this.guard(name, count, () => this.openArray(name, count));
    super.startArray(name, count, elemSize, elemType);
    return n;
  }

  private openArray(name: Name, count: number): number {
    const r = this.r;
    const list = count < 0;
    const expect = list ? "list" : "array";
    const fe = this.value(name, expect);
    if (fe === FAIL) return count;
    if (r.id !== (list ? T_LIST : T_ARRAY)) {
      this.typeMismatch(name, expect);
      return count;
    }
    const end = r.enter();
    let n = count;
    if (!list) {
      n = r.count(end);
      if (n !== count) {
        this.mismatch(name, "array length mismatch", `stream has ${n} elements, this side expects ${count}`, r.start);
        return n;
      }
    }
    this.push(ELEMS, end, NONE, fe);
    return n;
  }

  override endArray(): void {
    this.guard(undefined, undefined, () => {
      const r = this.r;
      const end = this.seqEnd;
      if (!r.atEnd(end)) {
        this.mismatch(undefined, "more elements in the stream", "the stream has elements this side does not read", r.pos);
      } else {
        r.leave(end);
        this.closeField(this.fieldEnds[this.fieldEnds.length - 1]!);
        this.pop();
      }
    });
    super.endArray();
  }

  /**
   * A gated field. The stream records the sender's decision: the field itself, or a Field holding
   * the gated-out marker. Returns what the stream holds; a difference from this side's `present` is
   * a MISMATCH. When the next field has another name, returns `present`: a field this side includes
   * is then checked by its own visit (which reports it missing by name), as it may write nothing at
   * all (a buffer of size 0 is not visited).
   */
  override optional(name: Name, present: boolean): boolean {
    return this.guard(name, present, () => {
      if (this.top !== FIELDS || this.listAtEnd()) return present;
      const want = nameText(name);
      if (this.peekField() !== want) return present;
      if (this.peekedAbsent) {
        const r = this.r;
        const fe = this.enterField();
        r.skipElement();
        r.header();
        r.null();
        this.closeField(fe);
        if (present) {
          this.mismatch(
            name,
            `field ${want} left out by the stream`,
            `the sender's version or test gate left field ${want} out, this side's includes it`,
            r.pos,
          );
        }
        return false;
      }
      if (!present) {
        this.mismatch(name, `unexpected field ${want}`, `the stream has field ${want}, this side's version or test gate leaves it out`, this.r.pos);
      }
      return true;
    });
  }

  listNext(name: Name, _more: boolean): boolean {
    return this.guard(name, false, () => !this.listAtEnd());
  }

  nullPointer(name: Name, isNull: boolean): boolean {
    return this.guard(name, isNull, () => {
      const r = this.r;
      if (this.top === FIELDS) {
        // A NULL pointer as a named field (not produced by the engine, accepted for symmetry).
        if (this.listAtEnd() || this.peekField() !== nameText(name)) return false;
        const p = r.pos;
        const fe = this.value(name, "NULL pointer");
        if (fe === FAIL) return isNull;
        if (r.id !== T_NULLPTR) {
          r.pos = p;
          r.depth--;
          return false;
        }
        r.null();
        this.closeField(fe);
        return true;
      }
      if (this.listAtEnd()) return false;
      const p = r.pos;
      r.header();
      if (r.id === T_NULLPTR) {
        r.null();
        return true;
      }
      r.pos = p;
      return false;
    });
  }

  // --- scalars --------------------------------------------------------------------------------

  bool(name: Name, v: boolean): boolean {
    return this.scalar(name, BOOL, v, readBoolean);
  }
  int8(name: Name, v: number): number {
    return this.scalar(name, INT8, v, readInt, inRange);
  }
  int16(name: Name, v: number): number {
    return this.scalar(name, INT16, v, readInt, inRange);
  }
  int32(name: Name, v: number): number {
    return this.scalar(name, INT32, v, readInt, inRange);
  }
  uint8(name: Name, v: number): number {
    return this.scalar(name, UINT8, v, readInt, inRange);
  }
  uint16(name: Name, v: number): number {
    return this.scalar(name, UINT16, v, readInt, inRange);
  }
  uint32(name: Name, v: number): number {
    return this.scalar(name, UINT32, v, readInt, inRange);
  }
  int64(name: Name, v: bigint): bigint {
    return this.scalar(name, INT64, v, readBigInt, inRangeBig);
  }
  uint64(name: Name, v: bigint): bigint {
    return this.scalar(name, UINT64, v, readBigInt, inRangeBig);
  }
  float32(name: Name, v: number): number {
    return this.scalar(name, FLOAT32, v, readReal, exactFloat32);
  }
  float64(name: Name, v: number): number {
    return this.scalar(name, FLOAT64, v, readReal);
  }
  str(name: Name, v: string): string {
    return this.scalar(name, STRING, v, readUtf8);
  }
  buffer(name: Name, _bytes: Uint8Array | undefined, len: number): Uint8Array {
    return this.guard(name, EMPTY, () => {
      const fe = this.scalarValue(name, OCTETS.tag, `buffer of ${len} bytes`);
      if (fe === FAIL) return EMPTY;
      const r = this.r;
      const at = r.start;
      const b = r.octets();
      if (b.length !== len) {
        this.mismatch(name, "buffer size mismatch", `stream has ${b.length} bytes, this side expects ${len}`, at);
        return EMPTY;
      }
      this.closeField(fe);
      return b;
    });
  }

  /**
   * Scalar `name` of `type`, read by `decode`; BAD_VALUE when `fits` says the type does not hold it.
   * Returns `fallback` after a difference (error set). This is guard() written out: a closure per
   * scalar made loads of a scalar-heavy state about a third slower (measured).
   */
  private scalar<V extends ValueType, T>(name: Name, type: V, fallback: T, decode: (r: BerReader) => T, fits?: (type: V, x: T) => boolean): T {
    if (this.err) return fallback;
    try {
      const fe = this.scalarValue(name, type.tag, type.name);
      if (fe === FAIL) return fallback;
      const x = decode(this.r);
      if (fits !== undefined && !fits(type, x)) {
        this.mismatch(name, `value out of range for ${type.name}`, `the stream has ${String(x)}`, this.r.start, "BAD_VALUE");
        return fallback;
      }
      this.closeField(fe);
      return x;
    } catch (e) {
      this.latch(e, name);
      return fallback;
    }
  }
}
