// BerOutputVisitor: writes device state as the BER of docs/vmstate.asn1 as the engine walks it
// (docs/ber.md: "Device state" for the layout, "Encoding choices" for the length forms).
import { BerWriter, T_SEQUENCE, type Tag } from "../../ber/writer.js";
import { VmstreamError } from "../../io/errors.js";
import { BaseVisitor, nameText } from "../base.js";
import type { Name, ScalarInfo } from "../visitor.js";
import {
  BOOL,
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
  T_ABSENT,
  T_ARRAY,
  T_LIST,
  T_NULLPTR,
  TAG_SUBSECTION,
  TAG_VMSTATE,
  UINT8,
  UINT16,
  UINT32,
  UINT64,
  VALUE_TYPES,
} from "./tags.js";

/** Types whose name says all (the scalar value types, buffers, strings, structs): not written as a field's info. */
const PLAIN = new Set([...VALUE_TYPES.slice(0, 13), "struct", ""]);

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

  /**
   * Open the Field wrapper when inside a struct's fields; returns whether one was opened, for
   * closeField() after the value. (Written out at each value: a write callback per scalar was slower.)
   */
  private openField(name: Name, indefinite: boolean): boolean {
    const k = this.top;
    if (k === ELEMS) return false;
    if (k !== FIELDS) {
      this.fail(new VmstreamError("UNSUPPORTED", "field after the subsections of a struct", { path: this.path(name) }));
    }
    this.w.fork(T_SEQUENCE, indefinite);
    this.w.utf8(nameText(name));
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
    this.push(FIELDS, wr, undefined);
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
    this.push(FIELDS, false, undefined);
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
    this.push(ELEMS, wr, elemType);
    return super.startArray(name, count, elemSize, elemType);
  }

  override endArray(): void {
    this.w.join();
    this.kinds.pop();
    this.closeField(this.wrapped.pop()!, this.infos.pop());
    super.endArray();
  }

  private push(kind: number, wrapped: boolean, info: string | undefined): void {
    this.kinds.push(kind);
    this.wrapped.push(wrapped);
    this.infos.push(info);
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

  bool(name: Name, v: boolean, info?: ScalarInfo): boolean {
    const wr = this.openField(name, this.indefF);
    this.w.boolean(!!v, BOOL.tag);
    this.closeField(wr, info?.info);
    return v;
  }
  int8(name: Name, v: number, info?: ScalarInfo): number {
    return this.int(INT8, name, v, info);
  }
  int16(name: Name, v: number, info?: ScalarInfo): number {
    return this.int(INT16, name, v, info);
  }
  int32(name: Name, v: number, info?: ScalarInfo): number {
    return this.int(INT32, name, v, info);
  }
  uint8(name: Name, v: number, info?: ScalarInfo): number {
    return this.int(UINT8, name, v, info);
  }
  uint16(name: Name, v: number, info?: ScalarInfo): number {
    return this.int(UINT16, name, v, info);
  }
  uint32(name: Name, v: number, info?: ScalarInfo): number {
    return this.int(UINT32, name, v, info);
  }
  int64(name: Name, v: bigint, info?: ScalarInfo): bigint {
    return this.bigint(INT64, name, v, info);
  }
  uint64(name: Name, v: bigint, info?: ScalarInfo): bigint {
    return this.bigint(UINT64, name, v, info);
  }
  float32(name: Name, v: number, info?: ScalarInfo): number {
    // The QEMU wire rounds to binary32 the same way.
    const wr = this.openField(name, this.indefF);
    this.w.real(Math.fround(v), FLOAT32.tag);
    this.closeField(wr, info?.info);
    return v;
  }
  float64(name: Name, v: number, info?: ScalarInfo): number {
    const wr = this.openField(name, this.indefF);
    this.w.real(v, FLOAT64.tag);
    this.closeField(wr, info?.info);
    return v;
  }
  buffer(name: Name, bytes: Uint8Array | undefined, len: number, info?: ScalarInfo): Uint8Array {
    let b = bytes ?? new Uint8Array(len);
    if (b.length !== len) {
      this.fail(
        new VmstreamError("RANGE", "buffer length differs from the description", { path: this.path(name), detail: `${b.length} bytes, ${len} described` }),
      );
      const fixed = new Uint8Array(len);
      fixed.set(b.subarray(0, len));
      b = fixed;
    }
    const wr = this.openField(name, this.indefF);
    this.w.octets(b, OCTETS.tag);
    this.closeField(wr, info?.info);
    return bytes ?? b;
  }
  str(name: Name, v: string, info?: ScalarInfo): string {
    const wr = this.openField(name, this.indefF);
    this.w.utf8(v, STRING.tag);
    this.closeField(wr, info?.info);
    return v;
  }

  /** An integer up to 32 bits. One the type does not hold is written cut to its width (error RANGE set). */
  private int(type: IntegerType<number>, name: Name, v: number, info: ScalarInfo | undefined): number {
    let x = v;
    if (!(v >= type.min && v <= type.max && Number.isInteger(v))) {
      this.range(name, type.name, v);
      x = type.wrap(v);
    }
    const wr = this.openField(name, this.indefF);
    this.w.int(x, type.tag);
    this.closeField(wr, info?.info);
    return v;
  }

  private bigint(type: IntegerType<bigint>, name: Name, v: bigint, info: ScalarInfo | undefined): bigint {
    let x = v;
    if (typeof v !== "bigint" || v < type.min || v > type.max) {
      this.range(name, type.name, v);
      x = typeof v === "bigint" ? type.wrap(v) : 0n;
    }
    const wr = this.openField(name, this.indefF);
    this.w.bigint(x, type.tag);
    this.closeField(wr, info?.info);
    return v;
  }
}
