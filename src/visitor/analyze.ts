// AnalyzeVisitor: a decorator around any visitor (usually the QEMU wire input visitor) that builds
// the value QEMU 7.2's scripts/analyze-migration.py prints for a device section, each value rendered
// by the script's reader for its type. Readers, shapes and opaque regions: docs/visitors.md,
// "analyze-migration.py's document".

import { VmstreamError } from "../io/errors.js";
import { ByteWriter } from "../io/writer.js";
import { BaseVisitor } from "./base.js";
import { INT_WIDTH, type IntType, type Name, type ScalarInfo, type Visitor } from "./visitor.js";
import { WireOutputVisitor } from "./wire.js";

/** A rendered value: a string (ints and blobs), a boolean, a list, or an ordered object. */
export type AnalyzeValue = string | boolean | AnalyzeValue[] | AnalyzeObject;
export type AnalyzeObject = Map<string, AnalyzeValue>;

/** The `vmsdName` of a startStruct that opens an opaque region (never a real VMState name: it holds a NUL). */
export const ANALYZE_BLOB_MARK = "\u0000analyze-blob";
/** Suffix of a startArray `elemType` that makes a one-element array print as a list. */
export const ANALYZE_LIST_MARK = "\u0000list";

/** Which of analyze-migration.py's readers a QEMU type name gets. */
export type AnalyzeReader = "signed" | "unsigned" | "bool" | "generic";

const READERS: ReadonlyMap<string, AnalyzeReader> = new Map<string, AnalyzeReader>([
  ["bool", "bool"],
  ["int8", "signed"],
  ["int16", "signed"],
  ["int32", "signed"],
  ["int32 equal", "signed"],
  ["int32 le", "signed"],
  ["int64", "signed"],
  ["int64 equal", "signed"],
  ["uint8 equal", "signed"],
  ["uint16 equal", "signed"],
  ["uint8", "unsigned"],
  ["uint16", "unsigned"],
  ["uint32", "unsigned"],
  ["uint32 equal", "unsigned"],
  ["uint64", "unsigned"],
]);

/** The script's reader for a vmdesc type name ("struct" is handled by recursion, everything unknown is "generic"). */
export function analyzeReaderOf(type: string): AnalyzeReader {
  return READERS.get(type) ?? "generic";
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Bytes as the script's generic reader prints them: "00 ff 10". */
export function analyzeHex(b: Uint8Array): string {
  if (b.length === 0) return "";
  const parts = new Array<string>(b.length);
  for (let i = 0; i < b.length; i++) parts[i] = HEX[b[i]!]!;
  return parts.join(" ");
}

/** An integer of `width` bytes (given as its unsigned value) as the script prints it with `reader`. */
export function analyzeInt(reader: AnalyzeReader, width: number, unsigned: bigint): string | boolean {
  const u = BigInt.asUintN(width * 8, unsigned);
  switch (reader) {
    case "bool":
      return width > 0 && u >> BigInt((width - 1) * 8) !== 0n;
    case "unsigned":
      return "0x" + u.toString(16).padStart(width * 2, "0");
    case "signed": {
      const text = "0x" + u.toString(16).padStart(width * 2, "0");
      const s = BigInt.asIntN(width * 8, u);
      return s < 0n ? `${text} (${s})` : text;
    }
    case "generic": {
      const hex = width === 0 ? "" : u.toString(16).padStart(width * 2, "0");
      let out = "";
      for (let i = 0; i < hex.length; i += 2) out += (i ? " " : "") + hex.slice(i, i + 2);
      return out;
    }
  }
}

/** Bytes as the script prints them for a field of `type` (its VMStateInfo name). */
export function analyzeBytes(type: string, b: Uint8Array): string | boolean {
  const reader = analyzeReaderOf(type);
  if (reader === "generic") return analyzeHex(b);
  if (reader === "bool") return b.length > 0 && b[0] !== 0;
  let u = 0n;
  for (let i = 0; i < b.length; i++) u = (u << 8n) | BigInt(b[i]!);
  return analyzeInt(reader, b.length, u);
}

const scratch = new DataView(new ArrayBuffer(8));

type Frame =
  | { readonly kind: "struct"; readonly map: AnalyzeObject }
  | { readonly kind: "array"; readonly key: Name; readonly list: AnalyzeValue[]; readonly asList: boolean; readonly elemType: string };

/** An open opaque region: visits are re-encoded into `wire` until `depth` structs close back to 0. */
interface Blob {
  readonly key: Name;
  readonly wire: WireOutputVisitor;
  readonly writer: ByteWriter;
  depth: number;
}

export class AnalyzeVisitor<V extends Visitor = Visitor> extends BaseVisitor {
  readonly direction: "input" | "output";
  private readonly frames: Frame[] = [];
  private blob: Blob | undefined = undefined;
  private rootValue: AnalyzeObject | undefined = undefined;

  constructor(readonly inner: V) {
    super();
    this.direction = inner.direction;
  }

  /** The rendered root struct (the device object), once the walk has started. */
  get result(): AnalyzeObject | undefined {
    return this.rootValue;
  }

  override get error(): VmstreamError | undefined {
    return this.inner.error;
  }

  override fail(error: VmstreamError): void {
    this.inner.fail(error.path !== undefined ? error : error.withContext({ path: this.path() }));
  }

  // -- placing values ---------------------------------------------------------------------------

  private place(name: Name, value: AnalyzeValue): void {
    const top = this.frames[this.frames.length - 1];
    if (!top) return;
    if (top.kind === "array") top.list.push(value);
    else top.map.set(String(name), value);
  }

  /** The element type of the innermost open array (for NULL markers), if the current position is in one. */
  private elemType(): string | undefined {
    const top = this.frames[this.frames.length - 1];
    return top?.kind === "array" ? top.elemType : undefined;
  }

  private scalarBytes(name: Name, type: string, info: ScalarInfo | undefined, width: number, unsigned: bigint): void {
    if (this.err || this.inner.error) return;
    this.place(name, analyzeInt(analyzeReaderOf(info?.info ?? type), width, unsigned));
  }

  /** Run a re-encoding step; a string that cannot be re-encoded (over 255 bytes) fails the walk instead of throwing. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.fail(VmstreamError.wrap(e, { path: this.path() }, "RANGE"));
    }
  }

  // -- structure --------------------------------------------------------------------------------

  override startStruct(name: Name, vmsdName: string, version: number): void {
    this.inner.startStruct(name, vmsdName, version);
    super.startStruct(name, vmsdName, version);
    if (this.blob) {
      this.blob.depth++;
      this.blob.wire.startStruct(name, vmsdName, version);
      return;
    }
    if (vmsdName === ANALYZE_BLOB_MARK) {
      const writer = new ByteWriter();
      this.blob = { key: name, wire: new WireOutputVisitor(writer), writer, depth: 1 };
      return;
    }
    const map: AnalyzeObject = new Map();
    if (this.frames.length === 0 && this.rootValue === undefined) this.rootValue = map;
    else this.place(name, map);
    this.frames.push({ kind: "struct", map });
  }

  override endStruct(): void {
    this.inner.endStruct();
    super.endStruct();
    const blob = this.blob;
    if (blob) {
      if (--blob.depth > 0) {
        blob.wire.endStruct();
        return;
      }
      this.blob = undefined;
      if (!this.inner.error) this.place(blob.key, analyzeHex(blob.writer.concat()));
      return;
    }
    this.frames.pop();
  }

  override startArray(name: Name, count: number, elemSize: number, elemType: string): number {
    const n = this.inner.startArray(name, count, elemSize, elemType);
    super.startArray(name, count < 0 ? count : n, elemSize, elemType);
    if (this.blob) {
      this.blob.wire.startArray(name, n, elemSize, elemType);
      return n;
    }
    const forced = elemType.endsWith(ANALYZE_LIST_MARK);
    const type = forced ? elemType.slice(0, -ANALYZE_LIST_MARK.length) : elemType;
    this.frames.push({ kind: "array", key: name, list: [], asList: forced || n !== 1, elemType: type });
    return n;
  }

  override endArray(): void {
    this.inner.endArray();
    super.endArray();
    if (this.blob) {
      this.blob.wire.endArray();
      return;
    }
    const top = this.frames.pop();
    if (top?.kind !== "array") return;
    if (top.asList) {
      if (top.list.length > 0) this.place(top.key, top.list);
    } else if (top.list.length > 0) {
      this.place(top.key, top.list[0]!);
    }
  }

  override startSubsection(name: string, version: number): void {
    this.inner.startSubsection(name, version);
    super.startSubsection(name, version);
    if (this.blob) {
      this.guard(() => this.blob!.wire.startSubsection(name, version));
      return;
    }
    const map: AnalyzeObject = new Map();
    this.place(name, map);
    this.frames.push({ kind: "struct", map });
  }

  override endSubsection(): void {
    this.inner.endSubsection();
    super.endSubsection();
    if (this.blob) {
      this.blob.wire.endSubsection();
      return;
    }
    this.frames.pop();
  }

  override optional(name: Name, present: boolean): boolean {
    return this.inner.optional(name, present);
  }

  nextSubsection(parentVmsdName: string): { name: string; version: number } | undefined {
    return this.inner.nextSubsection(parentVmsdName);
  }

  listNext(name: Name, more: boolean): boolean {
    const got = this.inner.listNext(name, more);
    if (this.blob && !this.inner.error) this.blob.wire.listNext(name, got);
    return got;
  }

  nullPointer(name: Name, isNull: boolean): boolean {
    const got = this.inner.nullPointer(name, isNull);
    if (!got || this.inner.error) return got;
    if (this.blob) this.blob.wire.nullPointer(name, true);
    // The 0x30 marker is one byte; the script reads it with the element type's reader at size 1.
    else this.place(name, analyzeBytes(this.elemType() ?? "struct", NULL_MARKER));
    return got;
  }

  // -- values -----------------------------------------------------------------------------------

  private int<T extends number | bigint>(type: IntType, name: Name, got: T, info: ScalarInfo | undefined): T {
    if (this.inner.error) return got;
    const width = INT_WIDTH[type];
    if (this.blob) {
      (this.blob.wire[type] as (n: Name, v: T) => T).call(this.blob.wire, name, got);
      return got;
    }
    // An output walk may be handed a non-integer number: DataView (the wire writer) truncates it, and so does this.
    const big = typeof got === "bigint" ? got : BigInt(Number.isFinite(got) ? Math.trunc(got as number) : 0);
    this.scalarBytes(name, type, info, width, BigInt.asUintN(width * 8, big));
    return got;
  }

  bool(name: Name, v: boolean, info?: ScalarInfo): boolean {
    const got = this.inner.bool(name, v, info);
    if (this.inner.error) return got;
    if (this.blob) this.blob.wire.bool(name, got);
    else this.scalarBytes(name, "bool", info, 1, got ? 1n : 0n);
    return got;
  }
  int8(name: Name, v: number, info?: ScalarInfo): number {
    return this.int("int8", name, this.inner.int8(name, v, info), info);
  }
  int16(name: Name, v: number, info?: ScalarInfo): number {
    return this.int("int16", name, this.inner.int16(name, v, info), info);
  }
  int32(name: Name, v: number, info?: ScalarInfo): number {
    return this.int("int32", name, this.inner.int32(name, v, info), info);
  }
  int64(name: Name, v: bigint, info?: ScalarInfo): bigint {
    return this.int("int64", name, this.inner.int64(name, v, info), info);
  }
  uint8(name: Name, v: number, info?: ScalarInfo): number {
    return this.int("uint8", name, this.inner.uint8(name, v, info), info);
  }
  uint16(name: Name, v: number, info?: ScalarInfo): number {
    return this.int("uint16", name, this.inner.uint16(name, v, info), info);
  }
  uint32(name: Name, v: number, info?: ScalarInfo): number {
    return this.int("uint32", name, this.inner.uint32(name, v, info), info);
  }
  uint64(name: Name, v: bigint, info?: ScalarInfo): bigint {
    return this.int("uint64", name, this.inner.uint64(name, v, info), info);
  }
  float32(name: Name, v: number, info?: ScalarInfo): number {
    const got = this.inner.float32(name, v, info);
    if (this.inner.error) return got;
    if (this.blob) this.blob.wire.float32(name, got);
    else {
      scratch.setFloat32(0, got);
      this.scalarBytes(name, "float32", info, 4, BigInt(scratch.getUint32(0)));
    }
    return got;
  }
  float64(name: Name, v: number, info?: ScalarInfo): number {
    const got = this.inner.float64(name, v, info);
    if (this.inner.error) return got;
    if (this.blob) this.blob.wire.float64(name, got);
    else {
      scratch.setFloat64(0, got);
      this.scalarBytes(name, "float64", info, 8, scratch.getBigUint64(0));
    }
    return got;
  }
  buffer(name: Name, bytes: Uint8Array | undefined, len: number, info?: ScalarInfo): Uint8Array {
    const got = this.inner.buffer(name, bytes, len, info);
    if (this.inner.error) return got;
    if (this.blob) this.blob.wire.buffer(name, got, got.length);
    else this.place(name, analyzeBytes(info?.info ?? "buffer", got));
    return got;
  }
  str(name: Name, v: string, info?: ScalarInfo): string {
    const got = this.inner.str(name, v, info);
    if (this.inner.error) return got;
    if (this.blob) {
      this.guard(() => this.blob!.wire.str(name, got));
      return got;
    }
    // Not a QEMU VMState type: shown as its wire bytes (u8 length + UTF-8), like any unknown type.
    this.guard(() => {
      const w = new ByteWriter();
      w.cstr(got);
      this.place(name, analyzeBytes(info?.info ?? "str", w.concat()));
    });
    return got;
  }
}

const NULL_MARKER = new Uint8Array([0x30]);
