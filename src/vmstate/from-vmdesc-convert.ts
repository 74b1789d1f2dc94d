// Checking a vmdesc body and converting it into a description; the entry points are in
// from-vmdesc.ts, the rules in docs/vmstate.md ("Descriptions from a stream's vmdesc, and their
// vmdesc written again"). Every value is checked before use; limits cap what an untrusted vmdesc
// may cost.
import { VmstreamError } from "../io/errors.js";
import { SCALAR_SIZE } from "./engine.js";
import { elementsField, type InlineBody, singleField, type VmdescElement } from "./from-vmdesc-fields.js";
import type { Field, ScalarFieldType, State, VMStateDescription } from "./types.js";

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
   * difference means the vmdesc does not describe the wire (e.g. QEMU 7.2's NULL-pointer lie, docs/vmstate.md).
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

/** The limits of one conversion, and what it has cost so far. */
export class ConversionContext {
  elements = 0;
  readonly limits: Required<VmdescLimits>;
  constructor(limits: VmdescLimits) {
    this.limits = { ...DEFAULTS, ...definedOnly(limits) };
  }

  cost(n: number, path: string): void {
    this.elements += n;
    if (this.elements > this.limits.maxElements) {
      bad(path, "the vmdesc describes too many elements", `more than ${this.limits.maxElements} (maxElements)`);
    }
  }
}

/** Throw BAD_VMDESC for the vmdesc object at `path`. */
export function bad(path: string, summary: string, detail?: string): never {
  throw new VmstreamError("BAD_VMDESC", summary, { path, ...(detail !== undefined ? { detail } : {}) });
}

function definedOnly(o: VmdescLimits): VmdescLimits {
  const r: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) r[k] = v;
  return r as VmdescLimits;
}

export function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** An own property (never one inherited from Object.prototype). */
export function own(o: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(o, key) ? o[key] : undefined;
}

export function isU32(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= 0xffffffff;
}

export function isSize(x: unknown, ctx: ConversionContext): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= ctx.limits.maxFieldSize;
}

export function show(x: unknown): string {
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
const SCALARS: ReadonlyMap<string, { readonly type: ScalarFieldType; readonly check?: "equal" | "le" }> = new Map<
  string,
  { type: ScalarFieldType; check?: "equal" | "le" }
>([
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

/** A converted body, with its wire size and what walking it costs. */
export interface ConvertedBody {
  readonly vmsd: VMStateDescription;
  /** Wire bytes of the body (fields and subsections). */
  readonly size: number;
  /** Visits it costs. */
  readonly cost: number;
}

/** Check a body (`fields`, `subsections`) and convert it into the description `name` at `version`. */
export function convertBody(
  o: Record<string, unknown>,
  path: string,
  depth: number,
  ctx: ConversionContext,
  name: string,
  version: number,
  keys = new Keys(),
): ConvertedBody {
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
      const elems: VmdescElement[] = [];
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
      fields.push(
        elementsField(
          e.name,
          keys.take(e.name),
          (k) => elems[k]!,
          elems.length,
          "index",
          e.type,
          elems.reduce((a, x) => a + x.size, 0),
        ),
      );
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

function checkFieldIfObject(x: unknown, path: string, ctx: ConversionContext): CheckedField | undefined {
  return isObject(x) ? checkField(x, path, ctx) : undefined;
}

function checkField(x: unknown, path: string, ctx: ConversionContext): CheckedField {
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
    raw: x,
    name,
    type,
    size,
    ...(arrayLen !== undefined ? { arrayLen: arrayLen as number } : {}),
    ...(index !== undefined ? { index: index as number } : {}),
  };
}

function elemCost(e: VmdescElement): number {
  return e.k === "struct" ? e.cost : 0;
}

function convertElem(raw: Record<string, unknown>, type: string, size: number, path: string, depth: number, ctx: ConversionContext): VmdescElement {
  if (type === "struct") {
    const body = own(raw, "struct");
    if (!isObject(body)) bad(`${path}.struct`, "a struct field needs a struct object");
    if (own(body, "fields") === undefined) {
      if (size === 1 && Object.keys(body).length === 0) return { k: "null", json: type, size: 1 };
      bad(`${path}.struct`, "a struct body without fields", 'only a NULL pointer entry (size 1, "struct": {}) has none');
    }
    const vname = own(body, "vmsd_name");
    if (typeof vname !== "string") bad(`${path}.struct.vmsd_name`, "vmsd_name must be a string");
    const ver = own(body, "version");
    if (!isU32(ver)) bad(`${path}.struct.version`, "version must be an integer in 0..2^32-1", show(ver));
    const b = convertBody(body, `${path}.struct`, depth + 1, ctx, vname, ver);
    if (ctx.limits.checkStructSizes && b.size !== size) {
      bad(
        `${path}.size`,
        "the struct's size differs from what its body describes",
        `size ${size}, body ${b.size} bytes (a compressed array of pointers with NULL entries? wire-format §4.4)`,
      );
    }
    return { k: "struct", vmsd: b.vmsd, size: b.size, cost: b.cost };
  }
  const scalar = SCALARS.get(type);
  if (scalar) {
    const width = SCALAR_SIZE[scalar.type];
    if (size === width) return { k: "scalar", type: scalar.type, json: type, info: { info: type }, size, ...(scalar.check ? { check: scalar.check } : {}) };
    if (size === 1) return { k: "null", json: type, size: 1 };
    bad(`${path}.size`, `a ${type} is ${width} bytes`, `size ${size}`);
  }
  const inline = INLINE_BODY.has(type) ? inlineBody(raw, type, size, path, depth, ctx) : undefined;
  return { k: "buffer", json: type, info: { info: type }, size, ...(inline ? { inline } : {}) };
}

/**
 * Types whose nested VMState body QEMU writes inside the field's own object (no "struct" key);
 * qtailq / qlist write it once per element, after a 0x01 marker, and end with 0x00.
 */
const INLINE_BODY = new Set(["tmp", "vstruct", "qtailq", "qlist"]);

/**
 * The nested body of a tmp / vstruct / qtailq / qlist object, when it is well formed and (tmp,
 * vstruct) adds up to the object's size; else undefined (the field stays plain bytes, as before).
 * It is used only to write the vmdesc object again (visitElem, from-vmdesc-fields.ts): reading and analysis keep the
 * bytes, as analyze-migration.py does. A list's JSON repeats the body keys once per element and
 * parsing keeps the last copy: the walk writes that one for every element, which is QEMU's text
 * whenever the elements have one shape (else the text differs and the stream's is kept).
 */
function inlineBody(raw: Record<string, unknown>, type: string, size: number, path: string, depth: number, ctx: ConversionContext): InlineBody | undefined {
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
    name,
    version,
    minimumVersion: 0,
    fields,
    subsections: tracked,
    preLoad(s: State): void {
      arrived.set(s, []);
    },
    postLoad(s: State): string | void {
      const got = arrived.get(s) ?? [];
      arrived.delete(s);
      if (got.length !== expected.length || got.some((x, i) => x !== expected[i])) {
        return `the stream has subsections ${listText(got)}, the vmdesc lists ${listText(expected)}`;
      }
    },
  };
}

/** `[a, b, c]`, the first few names only when there are many (a message stays short whatever the input). */
function listText(names: readonly string[]): string {
  const shown = 8;
  return names.length <= shown ? `[${names.join(", ")}]` : `[${names.slice(0, shown).join(", ")}, ... (${names.length} in all)]`;
}
