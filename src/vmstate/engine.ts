// The one engine that walks a VMState description with any visitor (QEMU's vmstate.c, as a walk):
// the same code saves (output visitor) and loads (input visitor), and — on a save — writes the
// vmdesc JSON QEMU 7.2 writes in the same walk (wire-format §4), sizes measured on the output.
import { VmstreamError } from "../io/errors.js";
import { INT_WIDTH, type Name, type Visitor } from "../visitor/visitor.js";
import type { QemuJsonWriter } from "./json-writer.js";
import type { Count, CustomField, Field, ScalarFieldType, State, VMStateDescription } from "./types.js";

/** Where a save writes its vmdesc JSON: a writer positioned inside the object that gets `vmsd_name`, and the output position in bytes. */
export interface VmdescSink {
  readonly json: QemuJsonWriter;
  pos(): number;
}

/**
 * Given to a custom field that describes its own elements (`describesElements`) on a save that writes
 * the vmdesc: lists built from a vmdesc (from-vmdesc-fields.ts) write their objects as QEMU wrote them.
 */
export interface ElementDescriber {
  /**
   * Open the object of element `i` of `n`: `"array_len": n` when `mode` is "array_len", `"index": i`
   * when "index", neither when "single"; `struct` opens its "struct" body.
   */
  start(i: number, n: number, mode: "array_len" | "index" | "single", struct: boolean): void;
  /** Close the element's object with its size measured on the output. */
  end(): void;
  /** Save a nested struct, its body written into the open object (its "struct" body, or the element's own object for tmp / vstruct / list bodies). */
  saveStruct(v: Visitor, vmsd: VMStateDescription, s: State, name: Name): void;
}

/** A custom field whose `visit` takes an {@link ElementDescriber} (present only when the vmdesc is being written). */
export interface DescribingCustomField extends CustomField {
  readonly describesElements: true;
  visit(v: Visitor, name: string, value: unknown, describe?: ElementDescriber): unknown;
}

/** Save `s` with `v` at the description's own version. `name` is the root's name (a section's idstr). */
export function saveState(v: Visitor, vmsd: VMStateDescription, s: State, name: Name = vmsd.name, vmdesc?: VmdescSink): void {
  walkStruct(v, vmsd, s, vmsd.version, name, vmdesc);
}

/** Load into `s` with `v`; `version` is the version the stream says it was saved at. */
export function loadState(v: Visitor, vmsd: VMStateDescription, s: State, version: number, name: Name = vmsd.name): void {
  if (!checkVersion(v, vmsd, version)) return;
  walkStruct(v, vmsd, s, version, name, undefined);
}

/** Save or load, whichever direction `v` has. */
export function visitState(v: Visitor, vmsd: VMStateDescription, s: State, version = vmsd.version, name: Name = vmsd.name): void {
  if (v.direction === "output") saveState(v, vmsd, s, name);
  else loadState(v, vmsd, s, version, name);
}

/** The wire size of a description when it is fixed (no variable counts, gates, subsections or lists), else undefined. */
export function fixedWireSize(vmsd: VMStateDescription): number | undefined {
  let cached = fixedSizes.get(vmsd);
  if (cached === undefined) {
    cached = computeFixedSize(vmsd) ?? -1;
    fixedSizes.set(vmsd, cached);
  }
  return cached < 0 ? undefined : cached;
}

// ---------------------------------------------------------------------------------------------

function fail(v: Visitor, code: string, summary: string, detail?: string, field?: Name): void {
  v.fail(new VmstreamError(code, summary, { path: v.path(field), ...(detail !== undefined ? { detail } : {}) }));
}

function checkVersion(v: Visitor, vmsd: VMStateDescription, version: number): boolean {
  if (version > vmsd.version) {
    fail(v, "BAD_VERSION", `${vmsd.name}: version ${version} is too new`, `this side knows versions ${vmsd.minimumVersion ?? 0}..${vmsd.version}`);
    return false;
  }
  if (version < (vmsd.minimumVersion ?? 0)) {
    fail(v, "BAD_VERSION", `${vmsd.name}: version ${version} is too old`, `this side knows versions ${vmsd.minimumVersion ?? 0}..${vmsd.version}`);
    return false;
  }
  return true;
}

function walkStruct(v: Visitor, vmsd: VMStateDescription, s: State, version: number, name: Name, d: VmdescSink | undefined): void {
  v.startStruct(name, vmsd.name, version);
  walkBody(v, vmsd, s, version, d);
  v.endStruct();
}

/** Fields, then subsections, then post-load: what QEMU does for one description at any depth. */
function walkBody(v: Visitor, vmsd: VMStateDescription, s: State, version: number, d: VmdescSink | undefined): void {
  const out = v.direction === "output";
  if (out) vmsd.preSave?.(s);
  else vmsd.preLoad?.(s);
  if (d) {
    d.json.str("vmsd_name", vmsd.name);
    d.json.int("version", version);
    d.json.startArray("fields");
  }
  const names = descNames(vmsd);
  const fields = vmsd.fields;
  for (let i = 0; i < fields.length && !v.error; i++) {
    const f = fields[i]!;
    const present = f.test ? f.test(s, version) : (f.version ?? 0) <= version;
    if (f.kind === "validate") {
      if (!out && present) {
        const why = f.check(s, version);
        if (typeof why === "string") fail(v, "BAD_VALUE", `${vmsd.name}: validation ${f.name} failed`, why, f.name);
      }
      continue;
    }
    const gated = f.test !== undefined || (f.version ?? 0) > 0;
    if (gated ? !v.optional(f.name, present) : !present) continue;
    walkField(v, f, s, d ? names[i]! : "", d);
  }
  if (d) d.json.endArray();
  walkSubsections(v, vmsd, s, d);
  if (!out && !v.error && vmsd.postLoad) {
    const why = vmsd.postLoad(s, version);
    if (typeof why === "string") fail(v, "BAD_VALUE", `${vmsd.name}: post-load check failed`, why);
  }
}

function walkSubsections(v: Visitor, vmsd: VMStateDescription, s: State, d: VmdescSink | undefined): void {
  const subs = vmsd.subsections ?? [];
  if (v.direction === "output") {
    let started = false;
    for (const sub of subs) {
      if (v.error) return;
      if (sub.needed && !sub.needed(s)) continue;
      if (d && !started) {
        d.json.startArray("subsections");
        started = true;
      }
      d?.json.startObject();
      v.startSubsection(sub.name, sub.version);
      walkBody(v, sub, s, sub.version, d);
      v.endSubsection();
      d?.json.endObject();
    }
    if (started) d!.json.endArray();
    return;
  }
  for (;;) {
    if (v.error) return;
    const next = v.nextSubsection(vmsd.name);
    if (!next) return;
    const sub = subsectionsByName(vmsd).get(next.name);
    if (!sub) {
      fail(v, "UNKNOWN_SUBSECTION", `${vmsd.name}: unknown subsection ${next.name}`);
      return;
    }
    if (!checkVersion(v, sub, next.version)) return;
    v.startSubsection(sub.name, next.version);
    walkBody(v, sub, s, next.version, undefined);
    v.endSubsection();
  }
}

function count(c: Count, s: State): number {
  let n: number;
  if (typeof c === "number") n = c;
  else if (typeof c === "function") n = c(s);
  else n = Number(s[c.field] ?? 0) * (c.multiply ?? 1);
  // QEMU holds counts in a C int: anything negative or absurd walks no elements.
  return Number.isInteger(n) && n > 0 ? n : 0;
}

/** Bytes of each scalar type on the wire. */
export const SCALAR_SIZE: Readonly<Record<ScalarFieldType, number>> = { ...INT_WIDTH, bool: 1, float32: 4, float64: 8 };

function zeroOf(type: ScalarFieldType): unknown {
  return type === "int64" || type === "uint64" ? 0n : type === "bool" ? false : 0;
}

/** Visit one scalar of `type`. `info` carries the QEMU type name for the describing visitors. */
function visitScalar(v: Visitor, type: ScalarFieldType, name: Name, val: unknown, info?: { info?: string }): unknown {
  switch (type) {
    case "bool":
      return v.bool(name, (val as boolean) ?? false, info);
    case "uint8":
      return v.uint8(name, (val as number) ?? 0, info);
    case "uint16":
      return v.uint16(name, (val as number) ?? 0, info);
    case "uint32":
      return v.uint32(name, (val as number) ?? 0, info);
    case "uint64":
      return v.uint64(name, (val as bigint) ?? 0n, info);
    case "int8":
      return v.int8(name, (val as number) ?? 0, info);
    case "int16":
      return v.int16(name, (val as number) ?? 0, info);
    case "int32":
      return v.int32(name, (val as number) ?? 0, info);
    case "int64":
      return v.int64(name, (val as bigint) ?? 0n, info);
    case "float32":
      return v.float32(name, (val as number) ?? 0, info);
    case "float64":
      return v.float64(name, (val as number) ?? 0, info);
  }
}

/** The vmdesc "type" of a field. */
function descType(f: Field): string {
  switch (f.kind) {
    case "scalar":
    case "array":
      return f.info ?? f.type;
    case "buffer":
      return f.info ?? "buffer";
    case "unused":
      return "unused_buffer";
    case "struct":
      return f.structVersion !== undefined ? "vstruct" : "struct";
    case "structArray":
      return "struct";
    case "pointerArray":
      return f.info ?? (typeof f.elem === "string" ? f.elem : "struct");
    case "bitmap":
      return "bitmap";
    case "tmp":
      return "tmp";
    case "list":
      return f.info;
    case "gtree":
      return "gtree";
    case "custom":
      return f.info;
    case "validate":
      return "";
  }
}

/** QEMU compresses an array in the vmdesc (one object + array_len) unless a test gate could make elements differ. */
function canCompress(f: Field): boolean {
  if (f.test) return false;
  const vmsd = f.kind === "struct" || f.kind === "structArray" ? f.vmsd : f.kind === "pointerArray" && typeof f.elem !== "string" ? f.elem : undefined;
  if (!vmsd) return true;
  return !vmsd.subsections?.length && vmsd.fields.every(canCompress);
}

/** Field names as the vmdesc writes them: `name[k]` when the name occurs more than once in the list. */
function descNames(vmsd: VMStateDescription): readonly string[] {
  let names = nameCache.get(vmsd);
  if (!names) {
    const total = new Map<string, number>();
    for (const f of vmsd.fields) total.set(f.name, (total.get(f.name) ?? 0) + 1);
    const seen = new Map<string, number>();
    names = vmsd.fields.map((f) => {
      const k = seen.get(f.name) ?? 0;
      seen.set(f.name, k + 1);
      return total.get(f.name)! > 1 ? `${f.name}[${k}]` : f.name;
    });
    nameCache.set(vmsd, names);
  }
  return names;
}
const nameCache = new WeakMap<VMStateDescription, readonly string[]>();

/** A description's subsections by name (the first of a name, as a search from the start finds): one lookup per subsection read. */
function subsectionsByName(vmsd: VMStateDescription): ReadonlyMap<string, VMStateDescription> {
  let byName = subsectionCache.get(vmsd);
  if (!byName) {
    byName = new Map();
    for (const sub of vmsd.subsections ?? []) if (!byName.has(sub.name)) byName.set(sub.name, sub);
    subsectionCache.set(vmsd, byName);
  }
  return byName;
}
const subsectionCache = new WeakMap<VMStateDescription, Map<string, VMStateDescription>>();
const fixedSizes = new WeakMap<VMStateDescription, number>();

/** Opens the vmdesc object of element `i` of `n`; returns the output position it starts at. */
function descStart(d: VmdescSink, f: Field, name: string, i: number, n: number, compress: boolean, wrapStruct: boolean): number {
  d.json.startObject();
  d.json.str("name", name);
  if (n > 1) {
    if (compress) d.json.int("array_len", n);
    else d.json.int("index", i);
  }
  d.json.str("type", descType(f));
  if (wrapStruct) d.json.startObject("struct");
  return d.pos();
}

function descEnd(d: VmdescSink, start: number, wrapStruct: boolean): void {
  if (wrapStruct) d.json.endObject();
  d.json.int("size", d.pos() - start);
  d.json.endObject();
}

function walkField(v: Visitor, f: Exclude<Field, { kind: "validate" }>, s: State, dname: string, d: VmdescSink | undefined): void {
  const out = v.direction === "output";
  const key = f.key ?? f.name;
  switch (f.kind) {
    case "scalar": {
      const at = d && descStart(d, f, dname, 0, 1, true, false);
      const local = s[key];
      const got = visitScalar(v, f.type, f.name, local, f);
      if (d) descEnd(d, at!, false);
      if (out || v.error) return;
      if (f.check === "equal" && local !== undefined && got !== local) {
        fail(v, "MISMATCH", `${f.name}: value differs from this side's`, `stream ${String(got)}, here ${String(local)}`, f.name);
      } else if (f.check === "le" && local !== undefined && ((got as number) < 0 || (got as number) > (local as number))) {
        fail(v, "BAD_VALUE", `${f.name}: value out of range`, `stream ${String(got)}, allowed 0..${String(local)}`, f.name);
      } else {
        s[key] = got;
      }
      return;
    }
    case "array": {
      const n = count(f.count, s);
      const start = f.start ?? 0;
      const arr: unknown[] = s[key] ?? (s[key] = []);
      const m = v.startArray(f.name, n, SCALAR_SIZE[f.type], descType(f));
      const compress = canCompress(f);
      let dd = d;
      for (let i = 0; i < m && !v.error; i++) {
        const at = dd && descStart(dd, f, dname, i, n, compress, false);
        const got = visitScalar(v, f.type, i, arr[start + i] ?? zeroOf(f.type), f);
        if (!out) arr[start + i] = got;
        if (dd) {
          descEnd(dd, at!, false);
          if (compress) dd = undefined;
        }
      }
      v.endArray();
      return;
    }
    case "buffer": {
      // One element of n bytes; QEMU describes it (size 0 included) like any other field.
      const n = count(f.size, s);
      const start = f.start ?? 0;
      const at = d && descStart(d, f, dname, 0, 1, true, false);
      if (out) {
        const buf: Uint8Array | undefined = s[key];
        const bytes = buf === undefined ? new Uint8Array(n) : buf.subarray(start, start + n);
        if (bytes.length !== n) {
          fail(v, "RANGE", `${f.name}: buffer holds ${buf!.length} bytes, ${start + n} needed`);
          return;
        }
        v.buffer(f.name, bytes, n, f);
      } else {
        const got = v.buffer(f.name, undefined, n, f);
        // An empty buffer leaves the state as it was (no key appears for zero bytes).
        if (!v.error && n > 0) {
          if (start === 0 && (s[key] === undefined || s[key].length === n)) s[key] = got.slice();
          else {
            let buf: Uint8Array | undefined = s[key];
            if (!buf || buf.length < start + n) {
              const grown = new Uint8Array(start + n);
              if (buf) grown.set(buf.subarray(0, Math.min(buf.length, start + n)));
              buf = grown;
            }
            buf.set(got, start);
            s[key] = buf;
          }
        }
      }
      if (d) descEnd(d, at!, false);
      return;
    }
    case "unused": {
      const at = d && descStart(d, f, dname, 0, 1, true, false);
      v.buffer(f.name, out ? new Uint8Array(f.size) : undefined, f.size, UNUSED_INFO);
      if (d) descEnd(d, at!, false);
      return;
    }
    case "struct": {
      const sub: State = s[key] ?? (s[key] = {});
      const vstruct = f.structVersion !== undefined;
      const ver = vstruct ? f.structVersion! : f.vmsd.version;
      const at = d && descStart(d, f, dname, 0, 1, true, !vstruct);
      if (vstruct && !out && !checkVersion(v, f.vmsd, ver)) return;
      walkStruct(v, f.vmsd, sub, ver, f.name, d);
      if (d) descEnd(d, at!, !vstruct);
      return;
    }
    case "structArray": {
      const n = count(f.count, s);
      const arr: State[] = s[key] ?? (s[key] = []);
      const elemSize = f.elemSize ?? fixedWireSize(f.vmsd) ?? 0;
      const m = v.startArray(f.name, n, elemSize, "struct");
      const compress = canCompress(f);
      let dd = d;
      for (let i = 0; i < m && !v.error; i++) {
        const at = dd && descStart(dd, f, dname, i, n, compress, true);
        walkStruct(v, f.vmsd, arr[i] ?? (arr[i] = {}), f.vmsd.version, i, dd);
        if (dd) {
          descEnd(dd, at!, true);
          if (compress) dd = undefined;
        }
      }
      v.endArray();
      return;
    }
    case "pointerArray": {
      const n = count(f.count, s);
      const arr: unknown[] = s[key] ?? (s[key] = []);
      const isStruct = typeof f.elem !== "string";
      const elemSize = f.elemSize ?? (isStruct ? (fixedWireSize(f.elem as VMStateDescription) ?? 0) : SCALAR_SIZE[f.elem as ScalarFieldType]);
      const m = v.startArray(f.name, n, elemSize, descType(f));
      const compress = canCompress(f);
      let dd = d;
      for (let i = 0; i < m && !v.error; i++) {
        const at = dd && descStart(dd, f, dname, i, n, compress, isStruct);
        if (v.nullPointer(i, arr[i] === null)) {
          arr[i] = null;
        } else if (isStruct) {
          const vmsd = f.elem as VMStateDescription;
          walkStruct(v, vmsd, (arr[i] as State | undefined) ?? (arr[i] = {}), vmsd.version, i, dd);
        } else {
          const got = visitScalar(v, f.elem as ScalarFieldType, i, arr[i] ?? zeroOf(f.elem as ScalarFieldType), f);
          if (!out) arr[i] = got;
        }
        if (dd) {
          descEnd(dd, at!, isStruct);
          if (compress) dd = undefined;
        }
      }
      v.endArray();
      return;
    }
    case "bitmap": {
      const words = Math.ceil(count(f.nbits, s) / 64);
      const arr: bigint[] = s[key] ?? (s[key] = []);
      const at = d && descStart(d, f, dname, 0, 1, true, false);
      const m = v.startArray(f.name, words, 8, "bitmap");
      for (let i = 0; i < m && !v.error; i++) {
        const got = v.uint64(i, arr[i] ?? 0n);
        if (!out) arr[i] = got;
      }
      v.endArray();
      if (d) descEnd(d, at!, false);
      return;
    }
    case "tmp": {
      const at = d && descStart(d, f, dname, 0, 1, true, false);
      const tmp = f.toTmp(s);
      walkStruct(v, f.vmsd, tmp, f.vmsd.version, f.name, d);
      if (!out && !v.error) f.fromTmp(s, tmp);
      if (d) descEnd(d, at!, false);
      return;
    }
    case "list": {
      const at = d && descStart(d, f, dname, 0, 1, true, false);
      const arr: State[] = s[key] ?? (s[key] = []);
      if (!out) arr.length = 0;
      v.startArray(f.name, -1, 0, f.info);
      for (let i = 0; !v.error; i++) {
        if (!v.listNext(i, out ? i < arr.length : true)) break;
        walkStruct(v, f.vmsd, arr[i] ?? (arr[i] = {}), f.vmsd.version, i, d);
      }
      v.endArray();
      if (d) descEnd(d, at!, false);
      return;
    }
    case "gtree": {
      const at = d && descStart(d, f, dname, 0, 1, true, false);
      const nodes: [unknown, State][] = s[key] ?? (s[key] = []);
      if (!out) nodes.length = 0;
      const nnodes = v.uint32("nnodes", nodes.length);
      v.startArray(f.name, -1, 0, "gtree");
      let i = 0;
      for (; !v.error; i++) {
        if (!v.listNext(i, out ? i < nodes.length : true)) break;
        if (!out && i >= nnodes) {
          fail(v, "BAD_VALUE", `${f.name}: more tree nodes than the ${nnodes} announced`);
          break;
        }
        const node = nodes[i] ?? (nodes[i] = [f.keyVmsd ? {} : 0n, {}]);
        v.startStruct(i, "gtree node", 0);
        if (f.keyVmsd) walkStruct(v, f.keyVmsd, node[0] as State, f.keyVmsd.version, "key", d);
        else node[0] = v.uint64("key", node[0] as bigint);
        walkStruct(v, f.valueVmsd, node[1], f.valueVmsd.version, "value", d);
        v.endStruct();
      }
      v.endArray();
      if (!out && !v.error && i !== nnodes) fail(v, "BAD_VALUE", `${f.name}: ${i} tree nodes, ${nnodes} announced`);
      if (d) descEnd(d, at!, false);
      return;
    }
    case "custom": {
      if (d && "describesElements" in f && f.describesElements === true) {
        // (d is only given on a save: the state does not change)
        (f as DescribingCustomField).visit(v, f.name, s[key], elementDescriber(d, dname, f.info));
        return;
      }
      const at = d && descStart(d, f, dname, 0, 1, true, false);
      const got = f.visit(v, f.name, s[key]);
      if (!out && !v.error) s[key] = got;
      if (d) descEnd(d, at!, false);
      return;
    }
  }
}

const UNUSED_INFO = { info: "unused_buffer" };

function elementDescriber(d: VmdescSink, name: string, type: string): ElementDescriber {
  const open: { at: number; struct: boolean }[] = [];
  return {
    start(i, n, mode, struct) {
      d.json.startObject();
      d.json.str("name", name);
      if (mode === "array_len") d.json.int("array_len", n);
      else if (mode === "index") d.json.int("index", i);
      d.json.str("type", type);
      if (struct) d.json.startObject("struct");
      open.push({ at: d.pos(), struct });
    },
    end() {
      const o = open.pop()!;
      descEnd(d, o.at, o.struct);
    },
    saveStruct(v, vmsd, s, sname) {
      walkStruct(v, vmsd, s, vmsd.version, sname, d);
    },
  };
}

function computeFixedSize(vmsd: VMStateDescription): number | undefined {
  if (vmsd.subsections?.length) return undefined;
  let size = 0;
  for (const f of vmsd.fields) {
    if (f.test || (f.version ?? 0) > 0) return undefined;
    switch (f.kind) {
      case "scalar":
        size += SCALAR_SIZE[f.type];
        break;
      case "array":
        if (typeof f.count !== "number") return undefined;
        size += f.count * SCALAR_SIZE[f.type];
        break;
      case "buffer":
        if (typeof f.size !== "number") return undefined;
        size += f.size;
        break;
      case "unused":
        size += f.size;
        break;
      case "custom":
        size += f.size;
        break;
      case "validate":
        break;
      case "struct": {
        const n = fixedWireSize(f.vmsd);
        if (n === undefined) return undefined;
        size += n;
        break;
      }
      case "structArray": {
        const n = fixedWireSize(f.vmsd);
        if (n === undefined || typeof f.count !== "number") return undefined;
        size += n * f.count;
        break;
      }
      case "bitmap":
        if (typeof f.nbits !== "number") return undefined;
        size += Math.ceil(f.nbits / 64) * 8;
        break;
      default:
        return undefined;
    }
  }
  return size;
}
