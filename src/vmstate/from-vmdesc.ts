// A VMState description built from a device's entry of the stream's own vmdesc JSON (wire-format
// §4): walked with the wire input visitor and the engine at the section's version, it consumes
// exactly the bytes QEMU wrote for that device — without any built-in knowledge of the device —
// and re-saves them byte for byte. This is how analyze-migration.py reads device sections, with
// the vmdesc treated as UNTRUSTED input: every entry is checked and anything malformed is a
// VmstreamError "BAD_VMDESC" with the JSON path of the entry (never a TypeError).
//
// Rules (§4.4):
// - a field object stands for the element(s) QEMU wrote, in order;
// - `"array_len": N` -> N elements of that shape (element 0's size), a list;
// - a run of `"index": 0, 1, ...` objects of one name (and one type) -> one list, element i from
//   object i (each may have its own shape: the structs of a non-compressible array can differ by
//   subsections, a NULL entry is 1 byte);
// - `"type": "struct"` -> a nested description from the `struct` body (vmsd_name, version, fields,
//   subsections), walked at that version (nested versions are not on the wire);
// - integer types, bool, the `_EQUAL` types, "int32 le", "timer" -> the scalar of their wire type,
//   the QEMU type name kept as `info` (and the load-time checks of the equal / le types);
// - EVERYTHING else (buffer, unused_buffer, pci config, pci irq state, CPU_Double_U, float64, tmp,
//   vstruct, qtailq, qlist, gtree, bitmap, capability, target types, unknown names) -> an octet
//   stream of `size` bytes. For tmp / vstruct / qtailq / qlist / gtree objects `size` covers the
//   whole thing (list markers included); their nested vmsd keys (possibly duplicated, §13 trap 23)
//   are not used to read, as the script does. CPU_Double_U and float64 stay bytes so that NaN
//   payloads re-save exactly;
// - subsections -> subsections of the description, always sent on save, each with its 0x05 / name
//   / version header; on load every listed subsection must come, in the listed order. They are
//   found the way QEMU's loader finds them (peek 0x05 + a name starting with the parent's name,
//   §3.8), so a stream QEMU itself could not load because of that heuristic — a struct directly
//   followed by another header with its prefix — fails here too, where the script, which trusts
//   the vmdesc's list, may read it. A subsection whose name does not start with its parent's name
//   could never be loaded by QEMU and is refused as BAD_VMDESC;
// - the top-level version is the entry's `version` (a section version above it is refused; an
//   old-style entry has none and takes any), nested and subsection versions are their entries';
// - a field name used twice keeps its JSON name (`cur_offset[1]` ...) but the state keys are made
//   unique (`name#1`), and names that would touch Object.prototype (`__proto__`, `constructor`...)
//   get a `#` prefix as state keys;
// - a save that writes the vmdesc (the stream encoder) writes each entry again in the form it had:
//   an array_len list as one object for element 0, an index run as one object per element, a NULL
//   entry with size 1, sizes measured on the output as QEMU measures them. tmp / vstruct / qtailq /
//   qlist bodies are written back by walking their bytes with the nested body (per element for a
//   list, whose JSON repeats the keys: parsing keeps one copy, right when the elements have one
//   shape) — only when those bytes are exactly that body and re-save identically; else the object
//   has no body and differs from the stream's, which the converter then copies (docs/vmstate.md);
// - NULL entries of arrays of pointers (VMS_ARRAY_OF_POINTER, §3.1 step 4): QEMU 7.2 writes the
//   element's normal type with `"size": 1` (a struct gets an empty `"struct": {}`); such an element
//   is the one byte 0x30, which the load checks. A 1-byte element of a wider integer type, or an
//   empty struct body of size 1, is read that way.
//
// KNOWN VMDESC LIE (QEMU 7.2, fixed upstream in 2025; wire-format §4.4, §13): when an array of
// pointers is compressible and its element 0 is not NULL, the vmdesc says `array_len: N` with
// element 0's size, but every NULL element after it is ONE byte (0x30) on the wire. No reader of
// the vmdesc can know where those are: analyze-migration.py silently misparses the rest of the
// section. Here, when the array sits inside a struct, the struct's declared `size` no longer adds
// up and the conversion fails with BAD_VMDESC (`checkStructSizes`, default on); at the top level of
// a device nothing in the vmdesc can tell, and the walk misreads the section like the script does
// (reading N-1 elements too many bytes: usually the section footer check then fails). None of the
// x86 `pc` / ppc64 `pseries` fixtures has such an array: every one of their sections reads back
// exactly.
import { VmstreamError } from "../io/errors.js";
import { ANALYZE_LIST_MARK } from "../visitor/analyze.js";
import type { Name, ScalarInfo, Visitor } from "../visitor/visitor.js";
import { ByteReader } from "../io/reader.js";
import { ByteWriter } from "../io/writer.js";
import { WireInputVisitor, WireOutputVisitor } from "../visitor/wire.js";
import { loadState, saveState, visitState, type DescribingCustomField, type ElementDescriber } from "./engine.js";
import type { CustomField, Field, ScalarFieldType, State, VMStateDescription } from "./types.js";
import type { Vmdesc, VmdescDevice } from "./vmdesc.js";

export type { Vmdesc, VmdescBody, VmdescDevice, VmdescField, VmdescLegacyDevice, VmdescVmstateDevice } from "./vmdesc.js";

/** Caps on what an (untrusted) vmdesc may ask for. */
export interface VmdescLimits {
  /** Deepest nesting of structs and subsections (default 64). */
  readonly maxDepth?: number;
  /** Largest `size` of one field object in bytes (default 256 MiB). */
  readonly maxFieldSize?: number;
  /** Largest `array_len` (default 2^24). */
  readonly maxArrayLen?: number;
  /** Most element visits one device may cost, all arrays expanded (default 2^26). */
  readonly maxElements?: number;
  /**
   * Check that each struct's declared `size` equals the bytes its body describes (default true). A
   * difference means the vmdesc does not describe the wire (e.g. the NULL-pointer lie above).
   */
  readonly checkStructSizes?: boolean;
}

const DEFAULTS: Required<VmdescLimits> = {
  maxDepth: 64,
  maxFieldSize: 256 * 1024 * 1024,
  maxArrayLen: 1 << 24,
  maxElements: 1 << 26,
  checkStructSizes: true,
};

/** A description from a vmdesc device entry, and the number of payload bytes it describes. */
export interface VmdescConversion {
  readonly vmsd: VMStateDescription;
  /** Payload bytes the vmdesc describes for this device (what the walk consumes when the vmdesc is truthful). */
  readonly wireSize: number;
}

/** Version given to a device whose vmdesc entry has none (old-style sections): any section version loads. */
export const ANY_VERSION = 0xffffffff;

/**
 * The description of one device from its vmdesc entry. Walk it with `loadState(v, vmsd, s,
 * sectionVersion, idstr)`. Throws VmstreamError "BAD_VMDESC" (path: the JSON path below `path`).
 */
export function descriptionFromVmdesc(device: VmdescDevice | unknown, limits: VmdescLimits = {}, path = "vmdesc"): VMStateDescription {
  return convertVmdescDevice(device, limits, path).vmsd;
}

/** {@link descriptionFromVmdesc}, with the payload size the entry describes. */
export function convertVmdescDevice(device: VmdescDevice | unknown, limits: VmdescLimits = {}, path = "vmdesc"): VmdescConversion {
  const ctx = new Ctx({ ...DEFAULTS, ...definedOnly(limits) });
  if (!isObject(device)) bad(path, "a device entry must be an object");
  const name = own(device, "name");
  if (typeof name !== "string") bad(`${path}.name`, "the device name must be a string");
  const inst = own(device, "instance_id");
  if (!isU32(inst)) bad(`${path}.instance_id`, "instance_id must be an integer in 0..2^32-1", show(inst));
  const vmsdName = own(device, "vmsd_name");
  let version = ANY_VERSION;
  let descName = name;
  if (vmsdName !== undefined) {
    if (typeof vmsdName !== "string") bad(`${path}.vmsd_name`, "vmsd_name must be a string");
    descName = vmsdName;
    const ver = own(device, "version");
    if (!isU32(ver)) bad(`${path}.version`, "version must be an integer in 0..2^32-1", show(ver));
    version = ver;
  } else {
    const size = own(device, "size");
    if (size !== undefined && !isSize(size, ctx)) bad(`${path}.size`, "size must be an integer in 0..maxFieldSize", show(size));
  }
  const body = convertBody(device, path, 0, ctx, descName, version);
  const declared = own(device, "size");
  if (vmsdName === undefined && typeof declared === "number" && ctx.limits.checkStructSizes && declared !== body.size) {
    bad(`${path}.size`, "the device's size differs from what its fields describe", `size ${declared}, fields ${body.size} bytes`);
  }
  return { vmsd: body.vmsd, wireSize: body.size };
}

/** Every device of a parsed vmdesc, in stream order (path `vmdesc.devices[i]`). */
export function descriptionsFromVmdesc(vmdesc: Vmdesc | unknown, limits: VmdescLimits = {}): VMStateDescription[] {
  if (!isObject(vmdesc)) bad("vmdesc", "the vmdesc must be an object");
  const devices = own(vmdesc, "devices");
  if (!Array.isArray(devices)) bad("vmdesc.devices", "devices must be an array");
  return devices.map((d, i) => descriptionFromVmdesc(d, limits, `vmdesc.devices[${i}]`));
}

/**
 * Parse a vmdesc JSON text (as found in the trailer). Duplicate keys keep the last value, as
 * Python's json module does; nested tmp/qtailq bodies are not looked into. Throws BAD_VMDESC.
 */
export function parseVmdesc(text: string): Vmdesc {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new VmstreamError("BAD_VMDESC", "the vmdesc is not valid JSON", { path: "vmdesc", detail: e instanceof Error ? e.message : String(e), cause: e });
  }
  if (!isObject(v)) bad("vmdesc", "the vmdesc must be an object");
  const ps = own(v, "page_size");
  if (!isU32(ps)) bad("vmdesc.page_size", "page_size must be an integer in 0..2^32-1", show(ps));
  if (!Array.isArray(own(v, "devices"))) bad("vmdesc.devices", "devices must be an array");
  return v as unknown as Vmdesc;
}

// ---------------------------------------------------------------------------------------------
// Conversion

class Ctx {
  elements = 0;
  constructor(readonly limits: Required<VmdescLimits>) {}

  cost(n: number, path: string): void {
    this.elements += n;
    if (this.elements > this.limits.maxElements) {
      bad(path, "the vmdesc describes too many elements", `more than ${this.limits.maxElements} (maxElements)`);
    }
  }
}

function bad(path: string, summary: string, detail?: string): never {
  throw new VmstreamError("BAD_VMDESC", summary, { path, ...(detail !== undefined ? { detail } : {}) });
}

function definedOnly(o: VmdescLimits): VmdescLimits {
  const r: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) r[k] = v;
  return r as VmdescLimits;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** An own property (never one inherited from Object.prototype). */
function own(o: Record<string, unknown>, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(o, key) ? o[key] : undefined;
}

function isU32(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= 0xffffffff;
}

function isSize(x: unknown, ctx: Ctx): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= ctx.limits.maxFieldSize;
}

function show(x: unknown): string {
  try {
    const s = JSON.stringify(x);
    if (s === undefined) return String(x);
    return s.length > 60 ? s.slice(0, 57) + "..." : s;
  } catch {
    return typeof x;
  }
}

const utf8 = new TextEncoder();

/** Scalar types: JSON type -> wire type (+ load check). Their width is the wire type's. */
const SCALARS: ReadonlyMap<string, { readonly type: ScalarFieldType; readonly check?: "equal" | "le" }> = new Map<string, { type: ScalarFieldType; check?: "equal" | "le" }>([
  ["bool", { type: "bool" }],
  ["int8", { type: "int8" }],
  ["int16", { type: "int16" }],
  ["int32", { type: "int32" }],
  ["int64", { type: "int64" }],
  ["uint8", { type: "uint8" }],
  ["uint16", { type: "uint16" }],
  ["uint32", { type: "uint32" }],
  ["uint64", { type: "uint64" }],
  ["uint8 equal", { type: "uint8", check: "equal" }],
  ["uint16 equal", { type: "uint16", check: "equal" }],
  ["int32 equal", { type: "int32", check: "equal" }],
  ["uint32 equal", { type: "uint32", check: "equal" }],
  // QEMU 7.2's VMSTATE_UINT64_EQUAL is named "int64 equal".
  ["int64 equal", { type: "uint64", check: "equal" }],
  // "le" = less or equal; big-endian like every int.
  ["int32 le", { type: "int32", check: "le" }],
  ["timer", { type: "int64" }],
]);

const WIDTH: Readonly<Record<ScalarFieldType, number>> = {
  bool: 1, int8: 1, uint8: 1, int16: 2, uint16: 2, int32: 4, uint32: 4, int64: 8, uint64: 8, float32: 4, float64: 8,
};

/** One element as the vmdesc describes it. */
type Elem =
  | { readonly k: "scalar"; readonly type: ScalarFieldType; readonly json: string; readonly info: ScalarInfo; readonly check?: "equal" | "le"; readonly size: number }
  | { readonly k: "buffer"; readonly json: string; readonly info: ScalarInfo; readonly size: number; readonly inline?: Inline }
  | { readonly k: "struct"; readonly vmsd: VMStateDescription; readonly size: number; readonly cost: number }
  | { readonly k: "null"; readonly json: string; readonly size: 1 };

/** State keys of one state object (a body and its subsections share it). */
class Keys {
  private readonly used = new Set<string>();
  take(name: string): string {
    const base = name in Object.prototype ? `#${name}` : name;
    let k = base;
    for (let i = 1; this.used.has(k); i++) k = `${base}#${i}`;
    this.used.add(k);
    return k;
  }
}

interface Body {
  readonly vmsd: VMStateDescription;
  /** Wire bytes of the body (fields and subsections). */
  readonly size: number;
  /** Visits it costs. */
  readonly cost: number;
}

function convertBody(o: Record<string, unknown>, path: string, depth: number, ctx: Ctx, name: string, version: number, keys = new Keys()): Body {
  if (depth > ctx.limits.maxDepth) bad(path, "the vmdesc nests too deep", `more than ${ctx.limits.maxDepth} levels (maxDepth)`);
  const rawFields = own(o, "fields");
  if (!Array.isArray(rawFields)) bad(`${path}.fields`, "fields must be an array");
  const fields: Field[] = [];
  let size = 0;
  let cost = 0;
  /** Names seen so far in this field list. */
  const seen = new Set<string>();

  for (let i = 0; i < rawFields.length; ) {
    const fpath = `${path}.fields[${i}]`;
    const e = checkField(rawFields[i], fpath, ctx);
    if (e.arrayLen !== undefined) {
      if (seen.has(e.name)) bad(fpath, "a list restarts a name already used", `${e.name} (analyze-migration.py refuses this too)`);
      const elem = convertElem(e.raw, e.type, e.size, fpath, depth, ctx);
      const n = e.arrayLen;
      ctx.cost(n, fpath);
      fields.push(elementsField(e.name, keys.take(e.name), () => elem, n, "array_len", e.type, elem.size * n));
      size += elem.size * n;
      cost += n * (1 + elemCost(elem));
      ctx.cost(n * elemCost(elem), fpath);
      seen.add(e.name);
      i++;
      continue;
    }
    if (e.index !== undefined) {
      if (e.index !== 0) bad(`${fpath}.index`, "index entries must start at 0", `${e.name}: index ${e.index}`);
      if (seen.has(e.name)) bad(fpath, "a list restarts a name already used", `${e.name} (analyze-migration.py refuses this too)`);
      const elems: Elem[] = [];
      let j = i;
      for (; j < rawFields.length; j++) {
        const jpath = `${path}.fields[${j}]`;
        const f = j === i ? e : checkFieldIfObject(rawFields[j], jpath, ctx);
        if (!f || f.name !== e.name || f.index === undefined) break;
        if (f.index !== elems.length) bad(`${jpath}.index`, "index entries must be consecutive", `${e.name}: index ${f.index}, expected ${elems.length}`);
        // One VMStateField: one type for all its elements (a NULL entry keeps the type too).
        if (f.type !== e.type) bad(`${jpath}.type`, "index entries of one field must have one type", `${e.name}: ${show(f.type)} after ${show(e.type)}`);
        const elem = convertElem(f.raw, f.type, f.size, jpath, depth, ctx);
        ctx.cost(1, jpath);
        elems.push(elem);
        size += elem.size;
        cost += 1 + elemCost(elem);
      }
      fields.push(elementsField(e.name, keys.take(e.name), (k) => elems[k]!, elems.length, "index", e.type, elems.reduce((a, x) => a + x.size, 0)));
      seen.add(e.name);
      i = j;
      continue;
    }
    const elem = convertElem(e.raw, e.type, e.size, fpath, depth, ctx);
    ctx.cost(1, fpath);
    fields.push(singleField(e.name, keys.take(e.name), elem, e.type));
    size += elem.size;
    cost += 1 + elemCost(elem);
    seen.add(e.name);
    i++;
  }

  const subs: VMStateDescription[] = [];
  const rawSubs = own(o, "subsections");
  if (rawSubs !== undefined) {
    if (!Array.isArray(rawSubs)) bad(`${path}.subsections`, "subsections must be an array");
    const names = new Set<string>();
    rawSubs.forEach((raw, k) => {
      const spath = `${path}.subsections[${k}]`;
      if (!isObject(raw)) bad(spath, "a subsection must be an object");
      const sname = own(raw, "vmsd_name");
      if (typeof sname !== "string") bad(`${spath}.vmsd_name`, "vmsd_name must be a string");
      const slen = utf8.encode(sname).length;
      if (slen === 0 || slen > 255) bad(`${spath}.vmsd_name`, "a subsection name must be 1..255 bytes", show(sname));
      if (!sname.startsWith(name) || slen < utf8.encode(name).length + 1) {
        bad(`${spath}.vmsd_name`, "a subsection name must start with its parent's name", `${show(sname)} under ${show(name)} (QEMU could not load it)`);
      }
      if (names.has(sname)) bad(`${spath}.vmsd_name`, "a subsection is listed twice", show(sname));
      names.add(sname);
      const sver = own(raw, "version");
      if (!isU32(sver)) bad(`${spath}.version`, "version must be an integer in 0..2^32-1", show(sver));
      ctx.cost(1, spath);
      const sub = convertBody(raw, spath, depth + 1, ctx, sname, sver, keys);
      subs.push(sub.vmsd);
      size += 2 + slen + 4 + sub.size;
      cost += 1 + sub.cost;
    });
  }

  return { vmsd: withSubsectionChecks(name, version, fields, subs), size, cost };
}

interface CheckedField {
  readonly raw: Record<string, unknown>;
  readonly name: string;
  readonly type: string;
  readonly size: number;
  readonly arrayLen?: number;
  readonly index?: number;
}

function checkFieldIfObject(x: unknown, path: string, ctx: Ctx): CheckedField | undefined {
  return isObject(x) ? checkField(x, path, ctx) : undefined;
}

function checkField(x: unknown, path: string, ctx: Ctx): CheckedField {
  if (!isObject(x)) bad(path, "a field must be an object");
  const name = own(x, "name");
  if (typeof name !== "string") bad(`${path}.name`, "the field name must be a string");
  const type = own(x, "type");
  if (typeof type !== "string") bad(`${path}.type`, "the field type must be a string");
  const size = own(x, "size");
  if (!isSize(size, ctx)) bad(`${path}.size`, "size must be an integer in 0..maxFieldSize", `${show(size)} (maxFieldSize ${ctx.limits.maxFieldSize})`);
  const arrayLen = own(x, "array_len");
  const index = own(x, "index");
  if (arrayLen !== undefined && index !== undefined) bad(path, "a field cannot have both array_len and index");
  if (arrayLen !== undefined && !(typeof arrayLen === "number" && Number.isInteger(arrayLen) && arrayLen >= 1 && arrayLen <= ctx.limits.maxArrayLen)) {
    bad(`${path}.array_len`, "array_len must be an integer in 1..maxArrayLen", `${show(arrayLen)} (maxArrayLen ${ctx.limits.maxArrayLen})`);
  }
  if (index !== undefined && !isU32(index)) bad(`${path}.index`, "index must be an integer in 0..2^32-1", show(index));
  return {
    raw: x, name, type, size,
    ...(arrayLen !== undefined ? { arrayLen: arrayLen as number } : {}),
    ...(index !== undefined ? { index: index as number } : {}),
  };
}

function elemCost(e: Elem): number {
  return e.k === "struct" ? e.cost : 0;
}

function convertElem(raw: Record<string, unknown>, type: string, size: number, path: string, depth: number, ctx: Ctx): Elem {
  if (type === "struct") {
    const body = own(raw, "struct");
    if (!isObject(body)) bad(`${path}.struct`, "a struct field needs a struct object");
    if (own(body, "fields") === undefined) {
      if (size === 1 && Object.keys(body).length === 0) return { k: "null", json: type, size: 1 };
      bad(`${path}.struct`, "a struct body without fields", "only a NULL pointer entry (size 1, \"struct\": {}) has none");
    }
    const vname = own(body, "vmsd_name");
    if (typeof vname !== "string") bad(`${path}.struct.vmsd_name`, "vmsd_name must be a string");
    const ver = own(body, "version");
    if (!isU32(ver)) bad(`${path}.struct.version`, "version must be an integer in 0..2^32-1", show(ver));
    const b = convertBody(body, `${path}.struct`, depth + 1, ctx, vname, ver);
    if (ctx.limits.checkStructSizes && b.size !== size) {
      bad(`${path}.size`, "the struct's size differs from what its body describes",
        `size ${size}, body ${b.size} bytes (a compressed array of pointers with NULL entries? wire-format §4.4)`);
    }
    return { k: "struct", vmsd: b.vmsd, size: b.size, cost: b.cost };
  }
  const scalar = SCALARS.get(type);
  if (scalar) {
    const width = WIDTH[scalar.type];
    if (size === width) return { k: "scalar", type: scalar.type, json: type, info: { info: type }, size, ...(scalar.check ? { check: scalar.check } : {}) };
    if (size === 1) return { k: "null", json: type, size: 1 };
    bad(`${path}.size`, `a ${type} is ${width} bytes`, `size ${size}`);
  }
  const inline = INLINE_BODY.has(type) ? inlineBody(raw, type, size, path, depth, ctx) : undefined;
  return { k: "buffer", json: type, info: { info: type }, size, ...(inline ? { inline } : {}) };
}

/** Types whose nested VMState body QEMU writes inside the field's own object (no "struct" key). */
/** qtailq / qlist write it once per element, after a 0x01 marker, and end with 0x00. */
const INLINE_BODY = new Set(["tmp", "vstruct", "qtailq", "qlist"]);

/** The nested body of a tmp / vstruct / qtailq / qlist object. */
interface Inline {
  readonly vmsd: VMStateDescription;
  readonly list: boolean;
}

/**
 * The nested body of a tmp / vstruct / qtailq / qlist object, when it is well formed and (tmp,
 * vstruct) adds up to the object's size; else undefined (the field stays plain bytes, as before).
 * It is used only to write the vmdesc object again (see visitElem): reading and analysis keep the
 * bytes, as analyze-migration.py does. A list's JSON repeats the body keys once per element and
 * parsing keeps the last copy: the walk writes that one for every element, which is QEMU's text
 * whenever the elements have one shape (else the text differs and the stream's is kept).
 */
function inlineBody(raw: Record<string, unknown>, type: string, size: number, path: string, depth: number, ctx: Ctx): Inline | undefined {
  const list = type === "qtailq" || type === "qlist";
  const vname = own(raw, "vmsd_name");
  const ver = own(raw, "version");
  if (typeof vname !== "string" || !isU32(ver) || !Array.isArray(own(raw, "fields"))) return undefined;
  const spent = ctx.elements;
  try {
    const b = convertBody(raw, path, depth + 1, ctx, vname, ver);
    return list || b.size === size ? { vmsd: b.vmsd, list } : undefined;
  } catch (e) {
    if (!(e instanceof VmstreamError)) throw e;
    ctx.elements = spent;
    return undefined;
  }
}

const EMPTY = new Uint8Array(0);

/** A field of one element (no list). */
function singleField(name: string, key: string, e: Elem, json: string): Field {
  switch (e.k) {
    case "scalar":
      return {
        kind: "scalar", name, key, type: e.type,
        ...(json !== e.type ? { info: json } : {}),
        ...(e.check ? { check: e.check } : {}),
      };
    case "buffer":
      if (e.inline) return inlineField(name, key, e);
      if (e.size > 0) return { kind: "buffer", name, key, size: e.size, ...(json !== "buffer" ? { info: json } : {}) };
      // A zero-length object still exists in the vmdesc (and analyze-migration.py prints ""); the
      // engine's buffer sends nothing for size 0, so visit it here.
      return {
        kind: "custom", name, key, info: json, size: 0,
        visit: (v: Visitor, n: string) => {
          v.buffer(n, EMPTY, 0, { info: json });
          return EMPTY;
        },
      } satisfies CustomField;
    case "struct":
      return { kind: "struct", name, key, vmsd: e.vmsd };
    case "null":
      return elementsField(name, key, () => e, 1, "single", json, 1);
  }
}

/**
 * A tmp / vstruct / qtailq / qlist field with a usable nested body: read, analyzed and saved as its
 * bytes (like any buffer); only a save that writes the vmdesc walks the body (visitElem).
 */
function inlineField(name: string, key: string, e: Extract<Elem, { k: "buffer" }>): DescribingCustomField {
  return {
    kind: "custom", name, key, info: e.json, size: e.size, describesElements: true,
    visit(v: Visitor, fname: string, value: unknown, describe?: ElementDescriber): unknown {
      describe?.start(0, 1, "single", false);
      const got = visitElem(v, e, fname, value, describe);
      describe?.end();
      return got;
    },
  };
}

/**
 * A list of `n` elements (element i described by `elem(i)`), walked as one array. `form`: how the
 * vmdesc wrote it — "array_len" (one object for all), "index" (one object each) or "single" (one
 * object, no list: a lone NULL entry). A vmdesc list stays a list even with one element. On a save
 * that writes the vmdesc, the objects are written back in the same form, element sizes measured on
 * the output as QEMU measures them, so the regenerated text is the stream's.
 */
function elementsField(name: string, key: string, elem: (i: number) => Elem, n: number, form: "array_len" | "index" | "single", json: string, size: number): DescribingCustomField {
  const elemType = form !== "single" && n === 1 ? json + ANALYZE_LIST_MARK : json;
  const elemSize = n > 0 ? elem(0).size : 0;
  return {
    kind: "custom", name, key, info: json, size, describesElements: true,
    visit(v: Visitor, fname: string, value: unknown, describe?: ElementDescriber): unknown[] {
      const prev: unknown[] = Array.isArray(value) ? value : [];
      const out: unknown[] = [];
      const m = Math.min(v.startArray(fname, n, elemSize, elemType), n);
      for (let i = 0; i < m && !v.error; i++) {
        // "array_len": QEMU describes element 0 only
        const d = describe && (form !== "array_len" || i === 0) ? describe : undefined;
        d?.start(i, n, form, json === "struct");
        out.push(visitElem(v, elem(i), i, prev[i], d));
        d?.end();
      }
      v.endArray();
      return out;
    },
  };
}

function visitElem(v: Visitor, e: Elem, i: Name, prev: unknown, describe?: ElementDescriber): unknown {
  switch (e.k) {
    case "scalar": {
      const got = visitScalar(v, e.type, i, prev, e.info);
      if (v.direction === "input" && !v.error && prev !== undefined && prev !== null) {
        if (e.check === "equal" && got !== prev) {
          v.fail(new VmstreamError("MISMATCH", `element ${i}: value differs from this side's`, { path: v.path(), detail: `stream ${String(got)}, here ${String(prev)}` }));
        } else if (e.check === "le" && ((got as number) < 0 || (got as number) > (prev as number))) {
          v.fail(new VmstreamError("BAD_VALUE", `element ${i}: value out of range`, { path: v.path(), detail: `stream ${String(got)}, allowed 0..${String(prev)}` }));
        }
      }
      return got;
    }
    case "buffer": {
      if (v.direction === "output") {
        const b = prev instanceof Uint8Array && prev.length === e.size ? prev : new Uint8Array(e.size);
        if (describe && e.inline) {
          // Writing the vmdesc: walk the bytes as the nested body so that its object is written
          // the way QEMU writes it (sizes measured on the output); bytes the body does not read
          // exactly are written as they are, without the body (the vmdesc then differs).
          const states = bodyStates(e.inline, b);
          if (states) {
            writeBodies(v, e.inline, states, (t, k) => describe.saveStruct(v, e.inline!.vmsd, t, k));
            return b;
          }
        }
        return v.buffer(i, b, e.size, e.info);
      }
      return v.buffer(i, undefined, e.size, e.info).slice();
    }
    case "struct": {
      const s: State = isObject(prev) ? (prev as State) : {};
      if (describe) describe.saveStruct(v, e.vmsd, s, i);
      else visitState(v, e.vmsd, s, e.vmsd.version, i);
      return s;
    }
    case "null":
      v.nullPointer(i, true);
      return null;
  }
}

/**
 * `bytes` read as the nested body (a list: element by element), or undefined unless they are
 * exactly that and writing the states again gives the same bytes (so the wire never changes).
 */
function bodyStates(inline: Inline, bytes: Uint8Array): State[] | undefined {
  const r = new ByteReader(bytes, { sticky: true });
  const v = new WireInputVisitor(r);
  const states: State[] = [];
  for (;;) {
    if (inline.list) {
      const marker = r.u8();
      if (r.error || marker > 1) return undefined;
      if (marker === 0) break;
    }
    const t: State = {};
    loadState(v, inline.vmsd, t, inline.vmsd.version);
    if (v.error) return undefined;
    states.push(t);
    if (!inline.list) break;
  }
  if (r.error || r.remaining !== 0) return undefined;
  const w = new ByteWriter();
  const o = new WireOutputVisitor(w);
  writeBodies(o, inline, states, (t, k) => saveState(o, inline.vmsd, t, k));
  const again = w.concat();
  return !o.error && again.length === bytes.length && again.every((x, k) => x === bytes[k]) ? states : undefined;
}

/** The bodies as QEMU writes them: one, or a list of them with 0x01 before each and 0x00 after. */
function writeBodies(v: Visitor, inline: Inline, states: readonly State[], save: (t: State, k: number) => void): void {
  states.forEach((t, k) => {
    if (inline.list) v.listNext(k, true);
    save(t, k);
  });
  if (inline.list) v.listNext(states.length, false);
}

function visitScalar(v: Visitor, type: ScalarFieldType, name: Name, val: unknown, info: ScalarInfo): unknown {
  switch (type) {
    case "bool": return v.bool(name, typeof val === "boolean" ? val : false, info);
    case "uint8": return v.uint8(name, typeof val === "number" ? val : 0, info);
    case "uint16": return v.uint16(name, typeof val === "number" ? val : 0, info);
    case "uint32": return v.uint32(name, typeof val === "number" ? val : 0, info);
    case "uint64": return v.uint64(name, typeof val === "bigint" ? val : 0n, info);
    case "int8": return v.int8(name, typeof val === "number" ? val : 0, info);
    case "int16": return v.int16(name, typeof val === "number" ? val : 0, info);
    case "int32": return v.int32(name, typeof val === "number" ? val : 0, info);
    case "int64": return v.int64(name, typeof val === "bigint" ? val : 0n, info);
    case "float32": return v.float32(name, typeof val === "number" ? val : 0, info);
    case "float64": return v.float64(name, typeof val === "number" ? val : 0, info);
  }
}

/**
 * The description of a body, with the load-time check that the subsections the vmdesc lists all
 * came, in the listed order (the engine, like QEMU, would otherwise accept any subset in any order,
 * and the bytes of a missing one would be read as whatever follows).
 */
function withSubsectionChecks(name: string, version: number, fields: Field[], subs: VMStateDescription[]): VMStateDescription {
  if (subs.length === 0) return { name, version, minimumVersion: 0, fields };
  const expected = subs.map((s) => s.name);
  const arrived = new WeakMap<State, string[]>();
  const tracked = subs.map((sub) => {
    const own = sub.preLoad;
    return {
      ...sub,
      preLoad(s: State): void {
        arrived.get(s)?.push(sub.name);
        own?.(s);
      },
    } as VMStateDescription;
  });
  return {
    name, version, minimumVersion: 0, fields, subsections: tracked,
    preLoad(s: State): void {
      arrived.set(s, []);
    },
    postLoad(s: State): string | void {
      const got = arrived.get(s) ?? [];
      arrived.delete(s);
      if (got.length !== expected.length || got.some((x, i) => x !== expected[i])) {
        return `the stream has subsections [${got.join(", ")}], the vmdesc lists [${expected.join(", ")}]`;
      }
    },
  };
}
