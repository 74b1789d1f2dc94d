// TraceVisitor: a decorator around any visitor (input or output) that records every visit (path,
// kind, type, the value the inner visitor returned) and otherwise delegates; the instrument of
// symmetry testing (src/vmstate/symmetry.ts). Entries and value normalisation: docs/visitors.md,
// "The visit trace".
import type { VmstreamError } from "../io/errors.js";
import { BaseVisitor } from "./base.js";
import { toHex } from "./json.js";
import type { Name, ScalarInfo, ScalarType, Visitor } from "./visitor.js";

export type TraceValue = string | number | boolean | null;

export type TraceKind =
  | "startStruct"
  | "endStruct"
  | "startArray"
  | "endArray"
  | "startSubsection"
  | "endSubsection"
  | "optional"
  | "listNext"
  | "nullPointer"
  | "scalar"
  | "buffer"
  | "str";

export interface TraceEntry {
  readonly kind: TraceKind;
  /**
   * The trace path, as the pretty visitor prints it (`PIIX3.PCIDevice.config(256)(1)`,
   * `i8259.last_irr`). For a start entry: the path including what it opens; for an end entry: the
   * same path as its start.
   */
  readonly path: string;
  /**
   * The description-level path of the field: the trace path without counts, sizes and element
   * indexes (`PIIX3.PCIDevice.config`, `slirp.bootp.bootp_clients.macaddr`). Used for coverage.
   */
  readonly field: string;
  /**
   * startStruct: the VMState name; startArray: the element type; startSubsection: its name;
   * scalar: the wire type; buffer: "buffer"; str: "str". Absent otherwise.
   */
  readonly type?: string;
  /** The QEMU VMStateInfo name, when the visit carried one. */
  readonly info?: string;
  /**
   * startStruct / startSubsection: the version walked; startArray: the element count returned
   * (-1 for lists); optional / listNext / nullPointer: the answer; scalar / buffer / str: the
   * value returned (normalised). Absent for end entries.
   */
  readonly value?: TraceValue;
}

export interface TraceOptions {
  /** Called with each entry; entries are still collected unless `collect` is false. */
  readonly onEntry?: (e: TraceEntry) => void;
  /** Collect entries in `entries` (default true). */
  readonly collect?: boolean;
}

/** One entry as a line of text (`startArray PIIX3.PCIDevice.config(256)(1) uint8 = 256`), for diffs and messages. */
export function formatTraceEntry(e: TraceEntry): string {
  let s = `${e.kind} ${e.path}`;
  if (e.type !== undefined) s += ` ${e.type}`;
  if (e.info !== undefined) s += ` [${e.info}]`;
  if (e.value !== undefined) s += ` = ${typeof e.value === "string" ? JSON.stringify(e.value) : Object.is(e.value, -0) ? "-0" : String(e.value)}`;
  return s;
}

export class TraceVisitor<V extends Visitor = Visitor> extends BaseVisitor {
  readonly direction: "input" | "output";
  readonly entries: TraceEntry[] = [];
  /** Description-level path components (null for an element, which adds nothing). */
  private readonly fields: (string | null)[] = [];
  private readonly onEntry: ((e: TraceEntry) => void) | undefined;
  private readonly collect: boolean;

  constructor(
    readonly inner: V,
    options: TraceOptions = {},
  ) {
    super();
    this.direction = inner.direction;
    this.onEntry = options.onEntry;
    this.collect = options.collect ?? true;
  }

  override get error(): VmstreamError | undefined {
    return this.inner.error;
  }

  override fail(error: VmstreamError): void {
    this.inner.fail(error.path !== undefined ? error : error.withContext({ path: this.path() }));
  }

  /** The description-level path of the current position, or of `name` inside it. */
  fieldPath(name?: Name): string {
    const parts: string[] = [];
    for (const f of this.fields) if (f !== null) parts.push(f);
    if (typeof name === "string") parts.push(name);
    return parts.join(".");
  }

  private record(kind: TraceKind, path: string, field: string, type?: string, value?: TraceValue, info?: ScalarInfo): void {
    const e: { -readonly [K in keyof TraceEntry]: TraceEntry[K] } = { kind, path, field };
    if (type !== undefined) e.type = type;
    if (info?.info !== undefined) e.info = info.info;
    if (value !== undefined) e.value = value;
    if (this.collect) this.entries.push(e);
    this.onEntry?.(e);
  }

  private end(kind: TraceKind): void {
    this.record(kind, this.path(), this.fieldPath());
  }

  override startStruct(name: Name, vmsdName: string, version: number): void {
    this.inner.startStruct(name, vmsdName, version);
    super.startStruct(name, vmsdName, version);
    this.fields.push(typeof name === "number" ? null : vmsdName);
    this.record("startStruct", this.path(), this.fieldPath(), vmsdName, version);
  }

  override endStruct(): void {
    this.end("endStruct");
    this.inner.endStruct();
    super.endStruct();
    this.fields.pop();
  }

  override startArray(name: Name, count: number, elemSize: number, elemType: string): number {
    const n = this.inner.startArray(name, count, elemSize, elemType);
    super.startArray(name, count < 0 ? count : n, elemSize, elemType);
    this.fields.push(typeof name === "number" ? null : name);
    this.record("startArray", this.path(), this.fieldPath(), elemType, n);
    return n;
  }

  override endArray(): void {
    this.end("endArray");
    this.inner.endArray();
    super.endArray();
    this.fields.pop();
  }

  override startSubsection(name: string, version: number): void {
    this.inner.startSubsection(name, version);
    super.startSubsection(name, version);
    this.fields.push(name);
    this.record("startSubsection", this.path(), this.fieldPath(), name, version);
  }

  override endSubsection(): void {
    this.end("endSubsection");
    this.inner.endSubsection();
    super.endSubsection();
    this.fields.pop();
  }

  override optional(name: Name, present: boolean): boolean {
    const got = this.inner.optional(name, present);
    this.record("optional", this.path(name), this.fieldPath(name), undefined, got);
    return got;
  }

  nextSubsection(parentVmsdName: string): { name: string; version: number } | undefined {
    // Not recorded: on input it is followed by startSubsection, which is (the output side has no
    // counterpart to a "no more subsections" answer).
    return this.inner.nextSubsection(parentVmsdName);
  }

  listNext(name: Name, more: boolean): boolean {
    const got = this.inner.listNext(name, more);
    this.record("listNext", this.path(name), this.fieldPath(name), undefined, got);
    return got;
  }

  nullPointer(name: Name, isNull: boolean): boolean {
    const got = this.inner.nullPointer(name, isNull);
    this.record("nullPointer", this.path(name), this.fieldPath(name), undefined, got);
    return got;
  }

  private scalar<T extends number | bigint | boolean>(type: ScalarType, name: Name, got: T, info: ScalarInfo | undefined): T {
    this.record("scalar", this.path(name), this.fieldPath(name), type, typeof got === "bigint" ? got.toString() : (got as number | boolean), info);
    return got;
  }

  bool(name: Name, v: boolean, info?: ScalarInfo): boolean {
    return this.scalar("bool", name, this.inner.bool(name, v, info), info);
  }
  int8(name: Name, v: number, info?: ScalarInfo): number {
    return this.scalar("int8", name, this.inner.int8(name, v, info), info);
  }
  int16(name: Name, v: number, info?: ScalarInfo): number {
    return this.scalar("int16", name, this.inner.int16(name, v, info), info);
  }
  int32(name: Name, v: number, info?: ScalarInfo): number {
    return this.scalar("int32", name, this.inner.int32(name, v, info), info);
  }
  int64(name: Name, v: bigint, info?: ScalarInfo): bigint {
    return this.scalar("int64", name, this.inner.int64(name, v, info), info);
  }
  uint8(name: Name, v: number, info?: ScalarInfo): number {
    return this.scalar("uint8", name, this.inner.uint8(name, v, info), info);
  }
  uint16(name: Name, v: number, info?: ScalarInfo): number {
    return this.scalar("uint16", name, this.inner.uint16(name, v, info), info);
  }
  uint32(name: Name, v: number, info?: ScalarInfo): number {
    return this.scalar("uint32", name, this.inner.uint32(name, v, info), info);
  }
  uint64(name: Name, v: bigint, info?: ScalarInfo): bigint {
    return this.scalar("uint64", name, this.inner.uint64(name, v, info), info);
  }
  float32(name: Name, v: number, info?: ScalarInfo): number {
    return this.scalar("float32", name, this.inner.float32(name, v, info), info);
  }
  float64(name: Name, v: number, info?: ScalarInfo): number {
    return this.scalar("float64", name, this.inner.float64(name, v, info), info);
  }
  buffer(name: Name, bytes: Uint8Array | undefined, len: number, info?: ScalarInfo): Uint8Array {
    const got = this.inner.buffer(name, bytes, len, info);
    this.record("buffer", this.path(name), this.fieldPath(name), "buffer", toHex(got), info);
    return got;
  }
  str(name: Name, v: string, info?: ScalarInfo): string {
    const got = this.inner.str(name, v, info);
    this.record("str", this.path(name), this.fieldPath(name), "str", got, info);
    return got;
  }
}
