// The QEMU wire visitors: a 1:1 mapping onto QEMU 7.2's qemu_put_*/qemu_get_* calls. Names and
// structure are not sent, so the bytes are exactly QEMU's (wire-format §1, §3).
import { VmstreamError } from "../io/errors.js";
import type { ByteReader } from "../io/reader.js";
import type { ByteWriter } from "../io/writer.js";
import { BaseVisitor } from "./base.js";
import type { Name } from "./visitor.js";

const SUBSECTION = 0x05;
const NULL_MARKER = 0x30;
const EMPTY = new Uint8Array(0);

export class WireOutputVisitor extends BaseVisitor {
  readonly direction = "output" as const;
  constructor(readonly w: ByteWriter) {
    super();
  }

  nextSubsection(): undefined {
    return undefined;
  }

  override startSubsection(name: string, version: number): void {
    super.startSubsection(name, version);
    this.w.u8(SUBSECTION);
    this.w.cstr(name);
    this.w.be32(version >>> 0);
  }

  listNext(_name: Name, more: boolean): boolean {
    this.w.u8(more ? 1 : 0);
    return more;
  }

  nullPointer(_name: Name, isNull: boolean): boolean {
    if (isNull) this.w.u8(NULL_MARKER);
    return isNull;
  }

  bool(_n: Name, v: boolean): boolean {
    this.w.u8(v ? 1 : 0);
    return v;
  }
  int8(_n: Name, v: number): number {
    this.w.s8(v);
    return v;
  }
  int16(_n: Name, v: number): number {
    this.w.sbe16(v);
    return v;
  }
  int32(_n: Name, v: number): number {
    this.w.sbe32(v);
    return v;
  }
  int64(_n: Name, v: bigint): bigint {
    this.w.sbe64(v);
    return v;
  }
  uint8(_n: Name, v: number): number {
    this.w.u8(v);
    return v;
  }
  uint16(_n: Name, v: number): number {
    this.w.be16(v);
    return v;
  }
  uint32(_n: Name, v: number): number {
    this.w.be32(v);
    return v;
  }
  uint64(_n: Name, v: bigint): bigint {
    this.w.be64(v);
    return v;
  }
  float32(_n: Name, v: number): number {
    this.w.f32be(v);
    return v;
  }
  float64(_n: Name, v: number): number {
    this.w.f64be(v);
    return v;
  }
  buffer(name: Name, bytes: Uint8Array | undefined, len: number): Uint8Array {
    const b = bytes ?? new Uint8Array(len);
    if (b.length !== len) {
      this.fail(
        new VmstreamError("RANGE", "buffer length differs from the description", { path: this.path(name), detail: `${b.length} bytes, ${len} described` }),
      );
      return b;
    }
    this.w.bytes(b);
    return b;
  }
  str(_n: Name, v: string): string {
    this.w.cstr(v);
    return v;
  }
}

/**
 * How many visits a wire input walk may make: `base` + `perByte` x the bytes it has read so far. Visits that
 * read nothing (a struct, an array, a zero-length buffer, a non-NULL pointer) would otherwise let a description
 * (e.g. from an untrusted vmdesc: millions of empty elements) loop without consuming input. (Gates are not
 * counted: a struct's gates are a fixed number per struct visit, and a vmdesc describes none.)
 */
export interface VisitBudget {
  readonly base: number;
  readonly perByte: number;
}

/**
 * The device sections of QEMU 7.2's streams make at most ~0.15 such visits per byte read (a struct per few
 * fields), so 2 per byte plus 2^16 leaves a wide margin; a hostile walk stops within milliseconds
 * (docs/decoder.md, "Bounds").
 */
export const DEFAULT_VISIT_BUDGET: VisitBudget = Object.freeze({ base: 1 << 16, perByte: 2 });

/**
 * Reads QEMU wire bytes. The reader should be sticky (QEMUFile style): the first error — running
 * out of bytes or a check — sticks, gains the field path, and later visits return zeros. Visits that read
 * nothing are counted against a {@link VisitBudget}; going over it is a LIMIT error.
 */
export class WireInputVisitor extends BaseVisitor {
  readonly direction = "input" as const;
  /** Visits made so far (those that may read nothing). */
  visits = 0;
  constructor(
    readonly r: ByteReader,
    private readonly budget: VisitBudget = DEFAULT_VISIT_BUDGET,
  ) {
    super();
  }

  /** Count one visit: a LIMIT error once the walk has made more than its bytes allow. */
  private spend(name: Name): void {
    const b = this.budget;
    if (++this.visits <= b.base + b.perByte * this.r.pos || this.err) return;
    this.fail(
      new VmstreamError("LIMIT", "the description makes too many visits for the bytes it reads", {
        path: this.path(name),
        detail: `${this.visits} visits after ${this.r.pos} bytes read: at most ${b.base} + ${b.perByte} per byte read (decoder limits visitsBase, visitsPerByte)`,
      }),
    );
  }

  override startStruct(name: Name, vmsdName: string, version: number): void {
    this.spend(name);
    super.startStruct(name, vmsdName, version);
  }

  override startArray(name: Name, count: number, elemSize: number, elemType: string): number {
    this.spend(name);
    return super.startArray(name, count, elemSize, elemType);
  }

  /** Adopt the reader's error (with the path of `name`) after a read. */
  private latch(name: Name): void {
    if (this.r.error && !this.err) this.err = this.r.error.withContext({ path: this.path(name) });
  }

  override fail(error: VmstreamError): void {
    if (this.err) return;
    super.fail(error.offset !== undefined ? error : error.withContext({ offset: this.r.offset }));
  }

  /** QEMU's subsection detection: a peeked 0x05, a length, and a name starting with the parent's name. */
  nextSubsection(parentVmsdName: string): { name: string; version: number } | undefined {
    if (this.err) return undefined;
    const r = this.r;
    if (r.peekU8(0) !== SUBSECTION) return undefined;
    const n = r.peekU8(1);
    if (n < parentVmsdName.length + 1) return undefined;
    const head = r.peek(2 + n);
    if (head.length !== 2 + n) return undefined;
    for (let i = 0; i < parentVmsdName.length; i++) if (head[2 + i] !== parentVmsdName.charCodeAt(i)) return undefined;
    r.skip(1);
    const name = r.cstr();
    // QEMU keeps only the low 8 bits of a subsection's version.
    const version = r.be32() & 0xff;
    this.latch(name);
    return this.err ? undefined : { name, version };
  }

  listNext(name: Name, _more: boolean): boolean {
    const b = this.r.u8();
    this.latch(name);
    return !this.err && b !== 0;
  }

  nullPointer(name: Name, isNull: boolean): boolean {
    this.spend(name);
    if (!isNull) return false;
    const at = this.r.offset;
    const b = this.r.u8();
    this.latch(name);
    if (!this.err && b !== NULL_MARKER) {
      this.fail(
        new VmstreamError("BAD_VALUE", "expected a NULL pointer marker", { offset: at, path: this.path(name), detail: `0x${b.toString(16)} instead of 0x30` }),
      );
    }
    return true;
  }

  bool(name: Name): boolean {
    const v = this.r.u8();
    this.latch(name);
    return v !== 0;
  }
  int8(name: Name): number {
    const v = this.r.s8();
    this.latch(name);
    return v;
  }
  int16(name: Name): number {
    const v = this.r.sbe16();
    this.latch(name);
    return v;
  }
  int32(name: Name): number {
    const v = this.r.sbe32();
    this.latch(name);
    return v;
  }
  int64(name: Name): bigint {
    const v = this.r.sbe64();
    this.latch(name);
    return v;
  }
  uint8(name: Name): number {
    const v = this.r.u8();
    this.latch(name);
    return v;
  }
  uint16(name: Name): number {
    const v = this.r.be16();
    this.latch(name);
    return v;
  }
  uint32(name: Name): number {
    const v = this.r.be32();
    this.latch(name);
    return v;
  }
  uint64(name: Name): bigint {
    const v = this.r.be64();
    this.latch(name);
    return v;
  }
  float32(name: Name): number {
    const v = this.r.f32be();
    this.latch(name);
    return v;
  }
  float64(name: Name): number {
    const v = this.r.f64be();
    this.latch(name);
    return v;
  }
  buffer(name: Name, _bytes: Uint8Array | undefined, len: number): Uint8Array {
    if (len === 0) this.spend(name);
    const v = this.r.bytes(len);
    this.latch(name);
    return this.err ? EMPTY : v;
  }
  str(name: Name): string {
    const v = this.r.cstr(true);
    this.latch(name);
    return v;
  }
}
