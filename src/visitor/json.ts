// JSON introspection of device state: JsonVisitor turns a walk into a plain value tree that
// JSON.stringify can print, and JsonInputVisitor reads such a tree back, checking it against the
// description. Tree shape, modes and checks: docs/visitors.md, "JSON".
import { VmstreamError } from "../io/errors.js";
import { BaseVisitor } from "./base.js";
import type { Name, ScalarInfo } from "./visitor.js";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A subsection node: its version, fields and nested subsections. */
export interface JsonSubsectionNode {
  version: number;
  fields: { [name: string]: JsonValue };
  subsections?: { [name: string]: JsonSubsectionNode };
}

/** A struct node (root, nested struct or array element). */
export interface JsonStructNode extends JsonSubsectionNode {
  vmsd: string;
}

export type JsonMode = "values" | "typed";

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Lowercase hex of bytes, two digits each. */
export function toHex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += HEX[b[i]!]!;
  return s;
}

/** Bytes of a hex string (two digits a byte, either case); undefined when it is not one. */
export function fromHex(s: string): Uint8Array | undefined {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) return undefined;
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
  return out;
}

/** A float as JSON: the number, or "NaN" / "Infinity" / "-Infinity". */
export function floatToJson(v: number): number | string {
  return Number.isFinite(v) ? v : String(v);
}

type OutFrame =
  | { readonly kind: "struct"; readonly node: JsonSubsectionNode; readonly seen: Map<string, number> }
  | { readonly kind: "array"; readonly arr: JsonValue[] };

/** The key a field gets in `fields`: its name, or `name[k]` for its k-th repeat (k >= 1). */
function dedupe(seen: Map<string, number>, name: string, consume: boolean): string {
  const k = seen.get(name) ?? 0;
  if (consume) seen.set(name, k + 1);
  return k === 0 ? name : `${name}[${k}]`;
}

/** Output visitor building the JSON tree of docs/visitors.md. The result is `root` once the walk ends. */
export class JsonVisitor extends BaseVisitor {
  readonly direction = "output" as const;
  readonly mode: JsonMode;
  private rootNode: JsonStructNode | undefined = undefined;
  private readonly frames: OutFrame[] = [];

  constructor(options: { mode?: JsonMode } = {}) {
    super();
    this.mode = options.mode ?? "values";
  }

  /** The root struct node (after a walk). */
  get root(): JsonStructNode {
    if (!this.rootNode) throw new VmstreamError("INTERNAL", "JsonVisitor: nothing was visited");
    return this.rootNode;
  }

  private put(name: Name, value: JsonValue): void {
    const top = this.frames[this.frames.length - 1];
    if (!top) return;
    if (top.kind === "array") {
      if (typeof name === "number") top.arr[name] = value;
      else top.arr.push(value);
    } else {
      top.node.fields[dedupe(top.seen, String(name), true)] = value;
    }
  }

  private inArray(): boolean {
    return this.frames[this.frames.length - 1]?.kind === "array";
  }

  private leaf(name: Name, type: string, value: JsonValue, info: ScalarInfo | undefined): void {
    if (this.mode === "typed" && !this.inArray()) {
      const node: { [k: string]: JsonValue } = { type };
      if (info?.info && info.info !== type) node.info = info.info;
      node.value = value;
      this.put(name, node);
    } else {
      this.put(name, value);
    }
  }

  override startStruct(name: Name, vmsdName: string, version: number): void {
    super.startStruct(name, vmsdName, version);
    const node: JsonStructNode = { vmsd: vmsdName, version, fields: {} };
    if (this.frames.length === 0) this.rootNode = node;
    else this.put(name, node as unknown as JsonValue);
    this.frames.push({ kind: "struct", node, seen: new Map() });
  }

  override endStruct(): void {
    super.endStruct();
    this.frames.pop();
  }

  override startArray(name: Name, count: number, elemSize: number, elemType: string): number {
    super.startArray(name, count, elemSize, elemType);
    const arr: JsonValue[] = [];
    this.put(name, this.mode === "typed" ? { type: "array", elemType, elemSize, value: arr } : arr);
    this.frames.push({ kind: "array", arr });
    return count;
  }

  override endArray(): void {
    super.endArray();
    this.frames.pop();
  }

  override startSubsection(name: string, version: number): void {
    super.startSubsection(name, version);
    const node: JsonSubsectionNode = { version, fields: {} };
    const top = this.frames[this.frames.length - 1];
    if (top?.kind === "struct") (top.node.subsections ??= {})[name] = node;
    this.frames.push({ kind: "struct", node, seen: new Map() });
  }

  override endSubsection(): void {
    super.endSubsection();
    this.frames.pop();
  }

  override optional(name: Name, present: boolean): boolean {
    // An absent field uses up its name's occurrence, so a later field of the same name keeps its key.
    const top = this.frames[this.frames.length - 1];
    if (!present && top?.kind === "struct") dedupe(top.seen, String(name), true);
    return present;
  }

  nextSubsection(): undefined {
    return undefined;
  }
  listNext(_name: Name, more: boolean): boolean {
    return more;
  }
  nullPointer(name: Name, isNull: boolean): boolean {
    if (isNull) this.put(name, null);
    return isNull;
  }
  bool(name: Name, v: boolean, info?: ScalarInfo): boolean {
    this.leaf(name, "bool", v, info);
    return v;
  }
  int8(name: Name, v: number, info?: ScalarInfo): number {
    this.leaf(name, "int8", v, info);
    return v;
  }
  int16(name: Name, v: number, info?: ScalarInfo): number {
    this.leaf(name, "int16", v, info);
    return v;
  }
  int32(name: Name, v: number, info?: ScalarInfo): number {
    this.leaf(name, "int32", v, info);
    return v;
  }
  int64(name: Name, v: bigint, info?: ScalarInfo): bigint {
    this.leaf(name, "int64", v.toString(), info);
    return v;
  }
  uint8(name: Name, v: number, info?: ScalarInfo): number {
    this.leaf(name, "uint8", v, info);
    return v;
  }
  uint16(name: Name, v: number, info?: ScalarInfo): number {
    this.leaf(name, "uint16", v, info);
    return v;
  }
  uint32(name: Name, v: number, info?: ScalarInfo): number {
    this.leaf(name, "uint32", v, info);
    return v;
  }
  uint64(name: Name, v: bigint, info?: ScalarInfo): bigint {
    this.leaf(name, "uint64", v.toString(), info);
    return v;
  }
  float32(name: Name, v: number, info?: ScalarInfo): number {
    this.leaf(name, "float32", floatToJson(v), info);
    return v;
  }
  float64(name: Name, v: number, info?: ScalarInfo): number {
    this.leaf(name, "float64", floatToJson(v), info);
    return v;
  }
  buffer(name: Name, bytes: Uint8Array | undefined, len: number, info?: ScalarInfo): Uint8Array {
    const b = bytes ?? new Uint8Array(len);
    if (this.mode === "typed" && !this.inArray()) {
      const node: { [k: string]: JsonValue } = { type: "buffer" };
      if (info?.info) node.info = info.info;
      node.size = len;
      node.value = toHex(b);
      this.put(name, node);
    } else {
      this.put(name, toHex(b));
    }
    return b;
  }
  str(name: Name, v: string, info?: ScalarInfo): string {
    this.leaf(name, "str", v, info);
    return v;
  }
}

// ---------------------------------------------------------------------------------------------

type InFrame =
  | { readonly kind: "struct"; readonly node: JsonSubsectionNode | undefined; readonly seen: Map<string, number>; sub: number }
  | { readonly kind: "array"; readonly arr: readonly JsonValue[] | undefined };

function isObject(v: unknown): v is { [key: string]: JsonValue } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A typed-mode wrapper's value; anything else as is. */
function unwrap(v: JsonValue | undefined): JsonValue | undefined {
  return isObject(v) && "type" in v && "value" in v && !("fields" in v) ? v.value : v;
}

const INT_RANGE: Readonly<Record<string, readonly [number, number]>> = {
  int8: [-0x80, 0x7f],
  int16: [-0x8000, 0x7fff],
  int32: [-0x80000000, 0x7fffffff],
  uint8: [0, 0xff],
  uint16: [0, 0xffff],
  uint32: [0, 0xffffffff],
};
const BIG_RANGE: Readonly<Record<string, readonly [bigint, bigint]>> = {
  int64: [-(1n << 63n), (1n << 63n) - 1n],
  uint64: [0n, (1n << 64n) - 1n],
};

/**
 * Reads the tree JsonVisitor writes (either mode) back into state: `loadState(new
 * JsonInputVisitor(json), vmsd, state, json.version)`. Errors stick; check `error` after the walk.
 */
export class JsonInputVisitor extends BaseVisitor {
  readonly direction = "input" as const;
  private readonly frames: InFrame[] = [];

  constructor(readonly json: JsonStructNode) {
    super();
  }

  private mismatch(name: Name | undefined, summary: string, detail?: string, code = "MISMATCH"): void {
    this.fail(new VmstreamError(code, summary, { path: this.path(name), ...(detail !== undefined ? { detail } : {}) }));
  }

  private top(): InFrame | undefined {
    return this.frames[this.frames.length - 1];
  }

  /** The value of `name` in the current container (consuming the name's repeat counter), or undefined after failing. */
  private get(name: Name): JsonValue | undefined {
    if (this.err) return undefined;
    const top = this.top();
    if (!top) return undefined;
    let v: JsonValue | undefined;
    if (top.kind === "array") {
      v = top.arr && typeof name === "number" ? top.arr[name] : undefined;
    } else {
      const key = dedupe(top.seen, String(name), true);
      v = top.node && Object.hasOwn(top.node.fields, key) ? top.node.fields[key] : undefined;
    }
    if (v === undefined) this.mismatch(name, "field missing from the JSON");
    return v;
  }

  override startStruct(name: Name, vmsdName: string, version: number): void {
    super.startStruct(name, vmsdName, version);
    const v = this.frames.length === 0 ? this.json : this.get(name);
    let node: JsonSubsectionNode | undefined;
    if (v !== undefined && !this.err) {
      if (!isObject(v) || !isObject(v.fields)) this.mismatch(undefined, "expected a struct node", `for ${vmsdName}`);
      else if (v.vmsd !== vmsdName) this.mismatch(undefined, "struct differs", `JSON has ${String(v.vmsd)}, description ${vmsdName}`);
      else if (v.version !== version)
        this.mismatch(undefined, `${vmsdName}: version differs`, `JSON has ${String(v.version)}, walked at ${version}`, "BAD_VERSION");
      else node = v as unknown as JsonSubsectionNode;
    }
    this.frames.push({ kind: "struct", node, seen: new Map(), sub: 0 });
  }

  override endStruct(): void {
    super.endStruct();
    this.frames.pop();
  }

  override startArray(name: Name, count: number, elemSize: number, elemType: string): number {
    const v = unwrap(this.get(name));
    let arr: JsonValue[] | undefined;
    if (v !== undefined && !this.err) {
      if (!Array.isArray(v)) this.mismatch(name, "expected an array");
      else if (count >= 0 && v.length !== count) this.mismatch(name, "array length differs", `JSON has ${v.length} elements, description ${count}`);
      else arr = v;
    }
    const n = arr ? arr.length : Math.max(count, 0);
    super.startArray(name, count < 0 ? count : n, elemSize, elemType);
    this.frames.push({ kind: "array", arr });
    return n;
  }

  override endArray(): void {
    super.endArray();
    this.frames.pop();
  }

  override optional(name: Name, present: boolean): boolean {
    const top = this.top();
    if (this.err || !top || top.kind !== "struct" || !top.node) return present;
    const key = dedupe(top.seen, String(name), false);
    if (Object.hasOwn(top.node.fields, key)) {
      if (!present) this.mismatch(name, "field present in the JSON but absent here");
      return true;
    }
    // Absent from the JSON: right when the gate says absent (the name's occurrence is used up, as
    // on output); when the gate says present the field's own visit reports it missing — unless it
    // visits nothing (a zero-length buffer), which the JSON could not show either.
    if (!present) dedupe(top.seen, String(name), true);
    return present;
  }

  nextSubsection(_parentVmsdName: string): { name: string; version: number } | undefined {
    const top = this.top();
    if (this.err || !top || top.kind !== "struct" || !top.node?.subsections) return undefined;
    const names = Object.keys(top.node.subsections);
    if (top.sub >= names.length) return undefined;
    const name = names[top.sub++]!;
    const sub = top.node.subsections[name];
    if (!isObject(sub) || typeof sub.version !== "number" || !isObject(sub.fields)) {
      this.mismatch(name, "expected a subsection node");
      return undefined;
    }
    return { name, version: sub.version };
  }

  override startSubsection(name: string, version: number): void {
    super.startSubsection(name, version);
    const parent = this.top();
    const node = parent?.kind === "struct" ? parent.node?.subsections?.[name] : undefined;
    this.frames.push({ kind: "struct", node, seen: new Map(), sub: 0 });
  }

  override endSubsection(): void {
    super.endSubsection();
    this.frames.pop();
  }

  listNext(name: Name, _more: boolean): boolean {
    const top = this.top();
    return !this.err && top?.kind === "array" && top.arr !== undefined && typeof name === "number" && name < top.arr.length;
  }

  nullPointer(name: Name, _isNull: boolean): boolean {
    const top = this.top();
    if (this.err || top?.kind !== "array" || !top.arr || typeof name !== "number") return false;
    return top.arr[name] === null;
  }

  private int(name: Name, type: string, fallback: number): number {
    const v = unwrap(this.get(name));
    if (v === undefined) return fallback;
    const [lo, hi] = INT_RANGE[type]!;
    if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) {
      this.mismatch(name, `not a ${type}`, JSON.stringify(v), "RANGE");
      return fallback;
    }
    return v;
  }

  private big(name: Name, type: string, fallback: bigint): bigint {
    const v = unwrap(this.get(name));
    if (v === undefined) return fallback;
    let b: bigint | undefined;
    if (typeof v === "string" && /^-?[0-9]+$/.test(v)) b = BigInt(v);
    else if (typeof v === "number" && Number.isSafeInteger(v)) b = BigInt(v);
    const [lo, hi] = BIG_RANGE[type]!;
    if (b === undefined || b < lo || b > hi) {
      this.mismatch(name, `not a ${type}`, JSON.stringify(v), "RANGE");
      return fallback;
    }
    return b;
  }

  private float(name: Name, type: string, fallback: number): number {
    const v = unwrap(this.get(name));
    if (v === undefined) return fallback;
    if (typeof v === "number") return type === "float32" ? Math.fround(v) : v;
    if (v === "NaN") return NaN;
    if (v === "Infinity") return Infinity;
    if (v === "-Infinity") return -Infinity;
    this.mismatch(name, `not a ${type}`, JSON.stringify(v), "BAD_VALUE");
    return fallback;
  }

  bool(name: Name, v: boolean): boolean {
    const j = unwrap(this.get(name));
    if (j === undefined) return v;
    if (typeof j === "boolean") return j;
    if (j === 0 || j === 1) return j === 1;
    this.mismatch(name, "not a bool", JSON.stringify(j), "BAD_VALUE");
    return v;
  }
  int8(name: Name, v: number): number {
    return this.int(name, "int8", v);
  }
  int16(name: Name, v: number): number {
    return this.int(name, "int16", v);
  }
  int32(name: Name, v: number): number {
    return this.int(name, "int32", v);
  }
  int64(name: Name, v: bigint): bigint {
    return this.big(name, "int64", v);
  }
  uint8(name: Name, v: number): number {
    return this.int(name, "uint8", v);
  }
  uint16(name: Name, v: number): number {
    return this.int(name, "uint16", v);
  }
  uint32(name: Name, v: number): number {
    return this.int(name, "uint32", v);
  }
  uint64(name: Name, v: bigint): bigint {
    return this.big(name, "uint64", v);
  }
  float32(name: Name, v: number): number {
    return this.float(name, "float32", v);
  }
  float64(name: Name, v: number): number {
    return this.float(name, "float64", v);
  }
  buffer(name: Name, bytes: Uint8Array | undefined, len: number): Uint8Array {
    const fallback = bytes ?? new Uint8Array(len);
    const j = unwrap(this.get(name));
    if (j === undefined) return fallback;
    const b = typeof j === "string" ? fromHex(j) : undefined;
    if (!b) {
      this.mismatch(name, "not a hex string", undefined, "BAD_VALUE");
      return fallback;
    }
    if (b.length !== len) {
      this.mismatch(name, "buffer length differs", `JSON has ${b.length} bytes, description ${len}`);
      return fallback;
    }
    return b;
  }
  str(name: Name, v: string): string {
    const j = unwrap(this.get(name));
    if (j === undefined) return v;
    if (typeof j !== "string") {
      this.mismatch(name, "not a string", JSON.stringify(j), "BAD_VALUE");
      return v;
    }
    return j;
  }
}
