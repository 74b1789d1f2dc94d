// The BER visitors: the self-describing form of device state (docs/vmstate.asn1, docs/ber.md).
//
// A struct is `VMState ::= [APPLICATION 18] SEQUENCE { name, version, fields SEQUENCE OF Field,
// subsections SEQUENCE OF Subsection OPTIONAL }`; a field is `SEQUENCE { name UTF8String, value,
// info UTF8String OPTIONAL }` whose value's context tag says the type ([0] int8 .. [7] uint64, [8]
// bool, [9] float32, [10] float64, [11] octets, [12] string, [13] NULL pointer, [14] array, [15] list,
// [16] absent: a gated field the sender's gate left out) or is a nested VMState. Array and list
// elements are values without a Field wrapper.
//
// The input visitor checks every visit against the stream and reports each difference between the
// stream and the local description with code MISMATCH and the field path: type and width, array
// length, buffer size, a missing or an extra field (by name), a gated field present on one side only,
// a struct's VMState name and version. Versions outside the local [minimum, version] are the
// engine's to report (BAD_VERSION): pass the stream's version (peekStruct()) to loadState.
import { BerReader } from "../ber/reader.js";
import { BerWriter, CLASS_APPLICATION, CONSTRUCTED, T_INTEGER, T_SEQUENCE, T_UTF8STRING, type Tag } from "../ber/writer.js";
import { VmstreamError } from "../io/errors.js";
import { BaseVisitor, nameText } from "./base.js";
import type { Name, ScalarInfo } from "./visitor.js";

// --- tags (identifier octets) ---------------------------------------------------------------------

/** [APPLICATION 18] VMState, constructed. */
export const TAG_VMSTATE = CLASS_APPLICATION | CONSTRUCTED | 18;
/** [APPLICATION 5] Subsection, constructed. */
export const TAG_SUBSECTION = CLASS_APPLICATION | CONSTRUCTED | 5;

const T_INT8 = 0x80;
const T_INT16 = 0x81;
const T_INT32 = 0x82;
const T_INT64 = 0x83;
const T_UINT8 = 0x84;
const T_UINT16 = 0x85;
const T_UINT32 = 0x86;
const T_UINT64 = 0x87;
const T_BOOL = 0x88;
const T_FLOAT32 = 0x89;
const T_FLOAT64 = 0x8a;
const T_OCTETS = 0x8b;
const T_STRING = 0x8c;
const T_NULLPTR = 0x8d;
/** [16] NULL: a field the sender's version or test gate left out. */
const T_ABSENT = 0x90;
const T_ARRAY = 0xae;
const T_LIST = 0xaf;

/** The value types by context tag number, for messages. */
const VALUE_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool", "float32", "float64", "buffer", "string", "NULL pointer", "array", "list", "no value (the sender's version or test gate left the field out)"];

/** Types whose name says all: not written as a field's info. */
const PLAIN = new Set(["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool", "float32", "float64", "struct", "buffer", "string", ""]);

const MAX_U64 = 0xffffffffffffffffn;
const MIN_I64 = -0x8000000000000000n;
const MAX_I64 = 0x7fffffffffffffffn;
const EMPTY = new Uint8Array(0);

/** Frame kinds. */
const FIELDS = 0;
const SUBS = 1;
const DONE = 2;
const ELEMS = 3;

/** No Field wrapper around a value. */
const NONE = -2;
/** A value could not be positioned (the error is set). */
const FAIL = -3;

/**
 * Length forms for constructed values.
 * - "auto" (default): indefinite for structs, subsections, arrays, lists and the field lists (their
 *   size is not known when their header is written: the output can be handed out while it is being
 *   written), definite for a field holding a primitive value (known as soon as it is written).
 * - "definite": every length definite and minimal (fork/join; DER-like).
 * - "indefinite": every constructed value indefinite, the fields of primitive values too.
 */
export type BerLengths = "auto" | "definite" | "indefinite";

export interface BerOutputOptions {
  readonly lengths?: BerLengths;
  /** Write into this writer (e.g. inside a stream the caller frames); default a new one. */
  readonly writer?: BerWriter;
  /**
   * Identifier of the root struct (default {@link TAG_VMSTATE}); e.g. [APPLICATION 7] for the
   * stream's Configuration, which is a StateBody under its own tag.
   */
  readonly rootTag?: Tag;
}

/** Writes device state as BER. The bytes: `v.w.finish()` (or `v.w.take()` while streaming). */
export class BerOutputVisitor extends BaseVisitor {
  readonly direction = "output" as const;
  readonly w: BerWriter;
  /** Indefinite length for containers (structs, arrays, lists, field lists) / for fields of primitives. */
  private readonly indefC: boolean;
  private readonly indefF: boolean;
  private readonly rootTag: Tag;
  // Frames, parallel arrays (no object per frame): kind, whether a Field wrapper is open, info to close with.
  private readonly kinds: number[] = [];
  private readonly wrapped: boolean[] = [];
  private readonly infos: (string | undefined)[] = [];

  constructor(options: BerOutputOptions = {}) {
    super();
    this.w = options.writer ?? new BerWriter();
    const lengths = options.lengths ?? "auto";
    this.indefC = lengths !== "definite";
    this.indefF = lengths === "indefinite";
    this.rootTag = options.rootTag ?? TAG_VMSTATE;
  }

  private get top(): number {
    const n = this.kinds.length;
    return n === 0 ? ELEMS : this.kinds[n - 1]!;
  }

  /** Open the Field wrapper when inside a struct's fields; returns whether one was opened. */
  private openField(name: Name, indefinite: boolean): boolean {
    const k = this.top;
    if (k === ELEMS) return false;
    if (k !== FIELDS) {
      this.fail(new VmstreamError("UNSUPPORTED", "field after the subsections of a struct", { path: this.path(name) }));
    }
    this.w.fork(T_SEQUENCE, indefinite);
    this.w.utf8(typeof name === "number" ? nameText(name) : name);
    return true;
  }

  private closeField(wrapped: boolean, info: string | undefined): void {
    if (!wrapped) return;
    if (info !== undefined && !PLAIN.has(info)) this.w.utf8(info);
    this.w.join();
  }

  private range(name: Name, type: string, v: unknown): void {
    this.fail(new VmstreamError("RANGE", `value out of range for ${type}`, { path: this.path(name), detail: String(v) }));
  }

  // --- structure ------------------------------------------------------------------------------

  override startStruct(name: Name, vmsdName: string, version: number): void {
    const wr = this.openField(name, this.indefC);
    const w = this.w;
    w.fork(this.kinds.length === 0 ? this.rootTag : TAG_VMSTATE, this.indefC);
    w.utf8(vmsdName);
    w.int(version >>> 0);
    w.fork(T_SEQUENCE, this.indefC);
    this.kinds.push(FIELDS);
    this.wrapped.push(wr);
    this.infos.push(undefined);
    super.startStruct(name, vmsdName, version);
  }

  override endStruct(): void {
    this.w.join(); // fields or subsections
    this.w.join(); // VMState
    this.kinds.pop();
    this.closeField(this.wrapped.pop()!, this.infos.pop());
    super.endStruct();
  }

  override startSubsection(name: string, version: number): void {
    const n = this.kinds.length - 1;
    const w = this.w;
    if (n >= 0 && this.kinds[n] === FIELDS) {
      w.join();
      w.fork(T_SEQUENCE, this.indefC);
      this.kinds[n] = SUBS;
    } else if (n < 0 || this.kinds[n] !== SUBS) {
      this.fail(new VmstreamError("UNSUPPORTED", "subsection outside a struct", { path: this.path(name) }));
    }
    w.fork(TAG_SUBSECTION, this.indefC);
    w.utf8(name);
    w.int(version >>> 0);
    w.fork(T_SEQUENCE, this.indefC);
    this.kinds.push(FIELDS);
    this.wrapped.push(false);
    this.infos.push(undefined);
    super.startSubsection(name, version);
  }

  override endSubsection(): void {
    this.w.join();
    this.w.join();
    this.kinds.pop();
    this.wrapped.pop();
    this.infos.pop();
    super.endSubsection();
  }

  override startArray(name: Name, count: number, elemSize: number, elemType: string): number {
    const wr = this.openField(name, this.indefC);
    this.w.fork(count < 0 ? T_LIST : T_ARRAY, this.indefC);
    this.kinds.push(ELEMS);
    this.wrapped.push(wr);
    this.infos.push(elemType);
    return super.startArray(name, count, elemSize, elemType);
  }

  override endArray(): void {
    this.w.join();
    this.kinds.pop();
    this.closeField(this.wrapped.pop()!, this.infos.pop());
    super.endArray();
  }

  nextSubsection(): undefined {
    return undefined;
  }

  /** A gated field: when absent, a Field holding [16] NULL records that the gate left it out. */
  override optional(name: Name, present: boolean): boolean {
    if (!present && this.top === FIELDS) {
      const wr = this.openField(name, this.indefF);
      this.w.null(T_ABSENT);
      this.closeField(wr, undefined);
    }
    return present;
  }

  listNext(_name: Name, more: boolean): boolean {
    return more;
  }

  nullPointer(name: Name, isNull: boolean): boolean {
    if (isNull) {
      const wr = this.openField(name, this.indefF);
      this.w.null(T_NULLPTR);
      this.closeField(wr, undefined);
    }
    return isNull;
  }

  // --- scalars --------------------------------------------------------------------------------

  private intField(name: Name, t: number, v: number, info: ScalarInfo | undefined): void {
    const wr = this.openField(name, this.indefF);
    this.w.int(v, t);
    this.closeField(wr, info?.info);
  }

  bool(name: Name, v: boolean, info?: ScalarInfo): boolean {
    const wr = this.openField(name, this.indefF);
    this.w.boolean(!!v, T_BOOL);
    this.closeField(wr, info?.info);
    return v;
  }
  int8(name: Name, v: number, info?: ScalarInfo): number {
    const x = (v << 24) >> 24;
    if (x !== v) this.range(name, "int8", v);
    this.intField(name, T_INT8, x, info);
    return v;
  }
  int16(name: Name, v: number, info?: ScalarInfo): number {
    const x = (v << 16) >> 16;
    if (x !== v) this.range(name, "int16", v);
    this.intField(name, T_INT16, x, info);
    return v;
  }
  int32(name: Name, v: number, info?: ScalarInfo): number {
    const x = v | 0;
    if (x !== v) this.range(name, "int32", v);
    this.intField(name, T_INT32, x, info);
    return v;
  }
  uint8(name: Name, v: number, info?: ScalarInfo): number {
    const x = v & 0xff;
    if (x !== v) this.range(name, "uint8", v);
    this.intField(name, T_UINT8, x, info);
    return v;
  }
  uint16(name: Name, v: number, info?: ScalarInfo): number {
    const x = v & 0xffff;
    if (x !== v) this.range(name, "uint16", v);
    this.intField(name, T_UINT16, x, info);
    return v;
  }
  uint32(name: Name, v: number, info?: ScalarInfo): number {
    const x = v >>> 0;
    if (x !== v) this.range(name, "uint32", v);
    this.intField(name, T_UINT32, x, info);
    return v;
  }
  int64(name: Name, v: bigint, info?: ScalarInfo): bigint {
    let x = v;
    if (typeof v !== "bigint" || v < MIN_I64 || v > MAX_I64) {
      this.range(name, "int64", v);
      x = typeof v === "bigint" ? BigInt.asIntN(64, v) : 0n;
    }
    const wr = this.openField(name, this.indefF);
    this.w.bigint(x, T_INT64);
    this.closeField(wr, info?.info);
    return v;
  }
  uint64(name: Name, v: bigint, info?: ScalarInfo): bigint {
    let x = v;
    if (typeof v !== "bigint" || v < 0n || v > MAX_U64) {
      this.range(name, "uint64", v);
      x = typeof v === "bigint" ? BigInt.asUintN(64, v) : 0n;
    }
    const wr = this.openField(name, this.indefF);
    this.w.bigint(x, T_UINT64);
    this.closeField(wr, info?.info);
    return v;
  }
  float32(name: Name, v: number, info?: ScalarInfo): number {
    const wr = this.openField(name, this.indefF);
    // The QEMU wire rounds to binary32 the same way.
    this.w.real(Math.fround(v), T_FLOAT32);
    this.closeField(wr, info?.info);
    return v;
  }
  float64(name: Name, v: number, info?: ScalarInfo): number {
    const wr = this.openField(name, this.indefF);
    this.w.real(v, T_FLOAT64);
    this.closeField(wr, info?.info);
    return v;
  }
  buffer(name: Name, bytes: Uint8Array | undefined, len: number, info?: ScalarInfo): Uint8Array {
    let b = bytes ?? new Uint8Array(len);
    if (b.length !== len) {
      this.fail(new VmstreamError("RANGE", "buffer length differs from the description", { path: this.path(name), detail: `${b.length} bytes, ${len} described` }));
      const fixed = new Uint8Array(len);
      fixed.set(b.subarray(0, len));
      b = fixed;
    }
    const wr = this.openField(name, this.indefF);
    this.w.octets(b, T_OCTETS);
    this.closeField(wr, info?.info);
    return bytes ?? b;
  }
  str(name: Name, v: string, info?: ScalarInfo): string {
    const wr = this.openField(name, this.indefF);
    this.w.utf8(v, T_STRING);
    this.closeField(wr, info?.info);
    return v;
  }
}

export interface BerInputOptions {
  /** Absolute offset of byte 0 (for error messages). */
  readonly baseOffset?: number;
  /** Maximum nesting of constructed values (default 512). */
  readonly maxDepth?: number;
  /** Identifier of the root struct (default {@link TAG_VMSTATE}); a single identifier octet. */
  readonly rootTag?: number;
}

/**
 * Reads device state from BER and checks it against the local description as the engine walks it.
 * Every difference fails with code MISMATCH and the path of the field (first error sticks).
 */
export class BerInputVisitor extends BaseVisitor {
  readonly direction = "input" as const;
  readonly r: BerReader;
  // Frames, parallel arrays: kind, end of the current list (fields, subsections or elements), end of
  // the VMState or Subsection, end of the Field wrapper (NONE when there is none).
  private readonly kinds: number[] = [];
  private readonly seqEnds: number[] = [];
  private readonly vmEnds: number[] = [];
  private readonly fieldEnds: number[] = [];
  /** End of the Subsection whose header nextSubsection() consumed. */
  private pendingSub = NONE;
  private readonly rootTag: number;

  constructor(input: Uint8Array | BerReader, options: BerInputOptions = {}) {
    super();
    this.r = input instanceof BerReader ? input : new BerReader(input, options);
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

  override fail(error: VmstreamError): void {
    if (this.err) return;
    super.fail(error.offset !== undefined ? error : error.withContext({ offset: this.r.offset }));
  }

  /** Adopt a thrown error (reader errors: malformed or truncated BER) with the path of `name`. */
  private latch(e: unknown, name?: Name): void {
    this.fail(VmstreamError.wrap(e, { path: this.path(name), offset: this.r.offset }));
  }

  private mismatch(name: Name | undefined, summary: string, detail: string, at: number, code = "MISMATCH"): void {
    this.fail(new VmstreamError(code, summary, { path: this.path(name), detail, offset: this.r.baseOffset + at }));
  }

  private get top(): number {
    const n = this.kinds.length;
    return n === 0 ? ELEMS : this.kinds[n - 1]!;
  }

  private get seqEnd(): number {
    const n = this.kinds.length;
    return n === 0 ? this.r.end : this.seqEnds[n - 1]!;
  }

  /** Whether the current list (fields or elements) is at its end. At the root: whether the bytes are. */
  private listAtEnd(): boolean {
    const n = this.kinds.length;
    if (n === 0) return this.r.pos >= this.r.end;
    return this.r.atEnd(this.seqEnds[n - 1]!);
  }

  /**
   * Position the reader on the value of field `name` (inside a struct's fields) or on the next
   * element, and read its header. Returns the end of the Field wrapper (NONE for elements) or FAIL.
   * `expect` describes what this side expects, for messages.
   */
  private value(name: Name, expect: string): number {
    const r = this.r;
    const k = this.top;
    if (k === ELEMS) {
      if (this.listAtEnd()) {
        this.mismatch(name, "element missing from the stream", `the stream has no more elements here, this side expects ${expect}`, r.pos);
        return FAIL;
      }
      r.header();
      return NONE;
    }
    if (k !== FIELDS) {
      this.mismatch(name, "field after the subsections", `this side expects ${expect}`, r.pos, "UNSUPPORTED");
      return FAIL;
    }
    const want = typeof name === "number" ? nameText(name) : name;
    for (;;) {
      if (this.listAtEnd()) {
        this.mismatch(name, `field ${want} missing from the stream`, `the stream has no more fields in ${this.structName()}, this side expects ${expect}`, r.pos);
        return FAIL;
      }
      const at = r.pos;
      const fe = this.enterField();
      r.header();
      if (r.id !== T_UTF8STRING) r.raise("BER Field without a name", `identifier 0x${r.id.toString(16)}`, r.start);
      if (r.contentsEqual(want)) {
        r.pos += r.len;
        r.header();
        return fe;
      }
      const got = r.utf8();
      r.header();
      if (got === want) return fe; // a name in the constructed string form
      if (r.id === T_ABSENT) {
        // A field the sender left out, which this side does not have: nothing to read.
        r.null();
        this.closeField(fe);
        continue;
      }
      r.pos = at;
      r.depth--;
      this.nameMismatch(want, got, expect);
      return FAIL;
    }
  }

  /** Skip the Fields that only record a gated-out field (at the end of a struct's fields). */
  private skipAbsent(): void {
    const r = this.r;
    const end = this.seqEnd;
    while (!r.atEnd(end)) {
      const p = r.pos;
      const fe = this.enterField();
      r.skipElement();
      r.header();
      if (r.id !== T_ABSENT) {
        r.pos = p;
        r.depth--;
        return;
      }
      r.null();
      this.closeField(fe);
    }
  }

  /** Read a Field header at the read position and enter it. */
  private enterField(): number {
    const r = this.r;
    r.header();
    if (r.id !== T_SEQUENCE) r.raise("expected a BER Field (SEQUENCE)", `identifier 0x${r.id.toString(16)}`, r.start);
    return r.enter();
  }

  /** After a value: skip the Field's info and leave the Field. */
  private closeField(fe: number): void {
    if (fe === NONE) return;
    const r = this.r;
    if (!r.atEnd(fe)) {
      r.header();
      if (r.id !== T_UTF8STRING) r.raise("unexpected element in a BER Field", `identifier 0x${r.id.toString(16)}`, r.start);
      r.skip();
    }
    r.leave(fe);
  }

  /** The VMState name of the innermost struct (from the path). */
  private structName(): string {
    return this.stack[this.stack.length - 1] ?? "the struct";
  }

  /** Set by peekField(): whether the Field holds the gated-out marker. */
  private peekedAbsent = false;

  /** The name of the field that starts at the read position (pos restored); sets peekedAbsent. */
  private peekField(): string {
    const r = this.r;
    const p = r.pos;
    const d = r.depth;
    try {
      this.enterField();
      r.header();
      const name = r.utf8();
      r.header();
      this.peekedAbsent = r.id === T_ABSENT;
      return name;
    } finally {
      r.pos = p;
      r.depth = d;
    }
  }

  /** The stream has field `got` where this side expects `want`: missing or extra? Look ahead for `want`. */
  private nameMismatch(want: string, got: string, expect: string): void {
    const r = this.r;
    const p = r.pos;
    const d = r.depth;
    const end = this.seqEnd;
    let later = false;
    try {
      while (!r.atEnd(end)) {
        const fe = this.enterField();
        r.header();
        if (r.contentsEqual(want)) {
          later = true;
          break;
        }
        r.pos = r.start;
        r.skipElement();
        while (!r.atEnd(fe)) r.skipElement();
        r.leave(fe);
      }
    } catch {
      // A malformed tail: report the name mismatch as a missing field.
    } finally {
      r.pos = p;
      r.depth = d;
    }
    if (later) {
      this.mismatch(got, `unexpected field ${got}`, `the stream has field ${got} before ${want}, this side does not expect it`, p);
    } else {
      this.mismatch(want, `field ${want} missing from the stream`, `this side expects ${expect}, the stream has field ${got} here`, p);
    }
  }

  /** What the value whose header was just read is, for messages (pos unchanged). */
  private streamType(): string {
    const r = this.r;
    const id = r.id;
    if (r.cls === 0x80 && r.tagNo < VALUE_TYPES.length) return VALUE_TYPES[r.tagNo]!;
    if (id === TAG_VMSTATE) {
      const p = r.pos;
      const d = r.depth;
      try {
        r.enter();
        r.header();
        return `struct ${r.utf8()}`;
      } catch {
        return "struct";
      } finally {
        r.pos = p;
        r.depth = d;
      }
    }
    return `an element with identifier 0x${id.toString(16)}`;
  }

  private typeMismatch(name: Name, expect: string): void {
    const got = this.streamType();
    this.mismatch(name, "type mismatch", `stream has ${got}, this side expects ${expect}`, this.r.start);
  }

  /** Read the value of a scalar field of identifier `t`; FAIL on a mismatch (error set). */
  private scalar(name: Name, t: number, type: string): number {
    const fe = this.value(name, type);
    if (fe === FAIL) return FAIL;
    if (this.r.id !== t) {
      this.typeMismatch(name, type);
      return FAIL;
    }
    return fe;
  }

  private outOfRange(name: Name, type: string, v: unknown): void {
    this.mismatch(name, `value out of range for ${type}`, `the stream has ${String(v)}`, this.r.start, "BAD_VALUE");
  }

  private intScalar(name: Name, t: number, type: string, v: number, lo: number, hi: number): number {
    if (this.err) return v;
    try {
      const fe = this.scalar(name, t, type);
      if (fe === FAIL) return v;
      const x = this.r.int();
      if (x < lo || x > hi) {
        this.outOfRange(name, type, x);
        return v;
      }
      this.closeField(fe);
      return x;
    } catch (e) {
      this.latch(e, name);
      return v;
    }
  }

  // --- structure ------------------------------------------------------------------------------

  override startStruct(name: Name, vmsdName: string, version: number): void {
    if (!this.err) {
      try {
        this.openStruct(name, vmsdName, version);
      } catch (e) {
        this.latch(e, name);
      }
    }
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

  private push(kind: number, seqEnd: number, vmEnd: number, fieldEnd: number): void {
    this.kinds.push(kind);
    this.seqEnds.push(seqEnd);
    this.vmEnds.push(vmEnd);
    this.fieldEnds.push(fieldEnd);
  }

  private pop(): void {
    this.kinds.pop();
    this.seqEnds.pop();
    this.vmEnds.pop();
    this.fieldEnds.pop();
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
    if (!this.err) {
      try {
        this.closeStruct();
      } catch (e) {
        this.latch(e);
      }
    }
    super.endStruct();
  }

  nextSubsection(_parentVmsdName: string): { name: string; version: number } | undefined {
    if (this.err) return undefined;
    const r = this.r;
    try {
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
    } catch (e) {
      this.latch(e);
      return undefined;
    }
  }

  override startSubsection(name: string, version: number): void {
    super.startSubsection(name, version);
    if (this.err) return;
    const r = this.r;
    try {
      if (this.pendingSub === NONE) r.raise("subsection started without nextSubsection()", name, r.pos, "INTERNAL");
      const vmEnd = this.pendingSub;
      this.pendingSub = NONE;
      r.header();
      if (r.id !== T_SEQUENCE) r.raise("BER Subsection without fields", undefined, r.start);
      this.push(FIELDS, r.enter(), vmEnd, NONE);
    } catch (e) {
      this.latch(e);
    }
  }

  override endSubsection(): void {
    if (!this.err) {
      try {
        this.closeStruct();
      } catch (e) {
        this.latch(e);
      }
    }
    super.endSubsection();
  }

  override startArray(name: Name, count: number, elemSize: number, elemType: string): number {
    let n = count;
    if (!this.err) {
      try {
        n = this.openArray(name, count);
      } catch (e) {
        this.latch(e, name);
      }
    }
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
    if (!this.err) {
      try {
        const r = this.r;
        const end = this.seqEnd;
        if (!r.atEnd(end)) {
          this.mismatch(undefined, "more elements in the stream", "the stream has elements this side does not read", r.pos);
        } else {
          r.leave(end);
          this.closeField(this.fieldEnds[this.fieldEnds.length - 1]!);
          this.pop();
        }
      } catch (e) {
        this.latch(e);
      }
    }
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
    if (this.err) return present;
    try {
      if (this.top !== FIELDS || this.listAtEnd()) return present;
      const want = typeof name === "number" ? nameText(name) : name;
      if (this.peekField() !== want) return present;
      if (this.peekedAbsent) {
        const r = this.r;
        const fe = this.enterField();
        r.skipElement();
        r.header();
        r.null();
        this.closeField(fe);
        if (present) {
          this.mismatch(name, `field ${want} left out by the stream`, `the sender's version or test gate left field ${want} out, this side's includes it`, r.pos);
        }
        return false;
      }
      if (!present) {
        this.mismatch(name, `unexpected field ${want}`, `the stream has field ${want}, this side's version or test gate leaves it out`, this.r.pos);
      }
      return true;
    } catch (e) {
      this.latch(e, name);
      return present;
    }
  }

  listNext(name: Name, _more: boolean): boolean {
    if (this.err) return false;
    try {
      return !this.listAtEnd();
    } catch (e) {
      this.latch(e, name);
      return false;
    }
  }

  nullPointer(name: Name, isNull: boolean): boolean {
    if (this.err) return isNull;
    const r = this.r;
    try {
      if (this.top === FIELDS) {
        // A NULL pointer as a named field (not produced by the engine, accepted for symmetry).
        if (this.listAtEnd() || this.peekField() !== (typeof name === "number" ? nameText(name) : name)) return false;
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
    } catch (e) {
      this.latch(e, name);
      return isNull;
    }
  }

  // --- scalars --------------------------------------------------------------------------------

  bool(name: Name, v: boolean): boolean {
    if (this.err) return v;
    try {
      const fe = this.scalar(name, T_BOOL, "bool");
      if (fe === FAIL) return v;
      const x = this.r.boolean();
      this.closeField(fe);
      return x;
    } catch (e) {
      this.latch(e, name);
      return v;
    }
  }
  int8(name: Name, v: number): number {
    return this.intScalar(name, T_INT8, "int8", v, -0x80, 0x7f);
  }
  int16(name: Name, v: number): number {
    return this.intScalar(name, T_INT16, "int16", v, -0x8000, 0x7fff);
  }
  int32(name: Name, v: number): number {
    return this.intScalar(name, T_INT32, "int32", v, -0x80000000, 0x7fffffff);
  }
  uint8(name: Name, v: number): number {
    return this.intScalar(name, T_UINT8, "uint8", v, 0, 0xff);
  }
  uint16(name: Name, v: number): number {
    return this.intScalar(name, T_UINT16, "uint16", v, 0, 0xffff);
  }
  uint32(name: Name, v: number): number {
    return this.intScalar(name, T_UINT32, "uint32", v, 0, 0xffffffff);
  }
  int64(name: Name, v: bigint): bigint {
    return this.bigScalar(name, T_INT64, "int64", v, MIN_I64, MAX_I64);
  }
  uint64(name: Name, v: bigint): bigint {
    return this.bigScalar(name, T_UINT64, "uint64", v, 0n, MAX_U64);
  }

  private bigScalar(name: Name, t: number, type: string, v: bigint, lo: bigint, hi: bigint): bigint {
    if (this.err) return v;
    try {
      const fe = this.scalar(name, t, type);
      if (fe === FAIL) return v;
      const x = this.r.bigint();
      if (x < lo || x > hi) {
        this.outOfRange(name, type, x);
        return v;
      }
      this.closeField(fe);
      return x;
    } catch (e) {
      this.latch(e, name);
      return v;
    }
  }

  float32(name: Name, v: number): number {
    if (this.err) return v;
    try {
      const fe = this.scalar(name, T_FLOAT32, "float32");
      if (fe === FAIL) return v;
      const x = this.r.real();
      if (Math.fround(x) !== x && x === x) {
        this.outOfRange(name, "float32", x);
        return v;
      }
      this.closeField(fe);
      return x;
    } catch (e) {
      this.latch(e, name);
      return v;
    }
  }
  float64(name: Name, v: number): number {
    if (this.err) return v;
    try {
      const fe = this.scalar(name, T_FLOAT64, "float64");
      if (fe === FAIL) return v;
      const x = this.r.real();
      this.closeField(fe);
      return x;
    } catch (e) {
      this.latch(e, name);
      return v;
    }
  }
  buffer(name: Name, _bytes: Uint8Array | undefined, len: number): Uint8Array {
    if (this.err) return EMPTY;
    const r = this.r;
    try {
      const fe = this.value(name, `buffer of ${len} bytes`);
      if (fe === FAIL) return EMPTY;
      if ((r.id & 0xdf) !== T_OCTETS) {
        this.typeMismatch(name, `buffer of ${len} bytes`);
        return EMPTY;
      }
      const at = r.start;
      const b = r.octets();
      if (b.length !== len) {
        this.mismatch(name, "buffer size mismatch", `stream has ${b.length} bytes, this side expects ${len}`, at);
        return EMPTY;
      }
      this.closeField(fe);
      return b;
    } catch (e) {
      this.latch(e, name);
      return EMPTY;
    }
  }
  str(name: Name, v: string): string {
    if (this.err) return v;
    const r = this.r;
    try {
      const fe = this.value(name, "string");
      if (fe === FAIL) return v;
      if ((r.id & 0xdf) !== T_STRING) {
        this.typeMismatch(name, "string");
        return v;
      }
      const x = r.utf8();
      this.closeField(fe);
      return x;
    } catch (e) {
      this.latch(e, name);
      return v;
    }
  }
}
