// The document QEMU 7.2's scripts/analyze-migration.py prints with `-d state`, byte for byte: one
// key per section, device values from an AnalyzeVisitor walk (of a vmdesc-built description or of
// `analyzeView(registered)`), RAM section sizes, Python's JSON text. The rules: docs/visitors.md,
// "analyze-migration.py's document" (and wire-format §10.2).
import { VmstreamError } from "../io/errors.js";
import type { ByteReader } from "../io/reader.js";
import { ByteWriter } from "../io/writer.js";
import { ANALYZE_BLOB_MARK, type AnalyzeObject, type AnalyzeValue, AnalyzeVisitor } from "../visitor/analyze.js";
import type { Visitor } from "../visitor/visitor.js";
import { WireInputVisitor, WireOutputVisitor } from "../visitor/wire.js";
import { loadState, saveState } from "../vmstate/engine.js";
import type { CustomField, Field, State, VMStateDescription } from "../vmstate/types.js";

export type { AnalyzeObject, AnalyzeValue } from "../visitor/analyze.js";

// ---------------------------------------------------------------------------------------------
// Device sections

/**
 * A registered description reshaped for analyze output: field names as the vmdesc writes them
 * (`cur_offset[1]`, `config[0]`: a name used more than once in one field list gets `[k]`, k counting
 * all its uses), and every field whose QEMU type analyze-migration.py cannot look into (tmp,
 * vstruct, bitmap, qtailq/qlist, gtree, custom types such as "pci irq state") bracketed as an
 * opaque region that prints as one hex string. The state keys, gates and checks are the original
 * ones, so it loads the same bytes into the same state.
 */
export function analyzeView(vmsd: VMStateDescription): VMStateDescription {
  let view = views.get(vmsd);
  if (!view) {
    const names = jsonNames(vmsd.fields);
    const fields: Field[] = [];
    vmsd.fields.forEach((f, i) => {
      const name = names[i]!;
      const key = f.key ?? f.name;
      if (opaque(f)) {
        fields.push(blobSentinel(name, f, i, true), { ...f, name, key } as Field, blobSentinel(name, f, i, false));
      } else {
        fields.push(reshape(f, name, key));
      }
    });
    view = { ...vmsd, fields, ...(vmsd.subsections ? { subsections: vmsd.subsections.map(analyzeView) } : {}) };
    views.set(vmsd, view);
  }
  return view;
}
const views = new WeakMap<VMStateDescription, VMStateDescription>();

/** Names as the vmdesc writes them (the engine's rule, §4.4). */
function jsonNames(fields: readonly Field[]): string[] {
  const total = new Map<string, number>();
  for (const f of fields) total.set(f.name, (total.get(f.name) ?? 0) + 1);
  const seen = new Map<string, number>();
  return fields.map((f) => {
    const k = seen.get(f.name) ?? 0;
    seen.set(f.name, k + 1);
    return total.get(f.name)! > 1 ? `${f.name}[${k}]` : f.name;
  });
}

function opaque(f: Field): boolean {
  switch (f.kind) {
    case "tmp":
    case "custom":
    case "bitmap":
    case "list":
    case "gtree":
      return true;
    case "struct":
      return f.structVersion !== undefined;
    default:
      return false;
  }
}

function reshape(f: Field, name: string, key: string): Field {
  switch (f.kind) {
    case "struct":
    case "structArray":
      return { ...f, name, key, vmsd: analyzeView(f.vmsd) };
    case "pointerArray":
      return { ...f, name, key, elem: typeof f.elem === "string" ? f.elem : analyzeView(f.elem) };
    default:
      return { ...f, name, key } as Field;
  }
}

/**
 * The zero-byte markers around an opaque field: the opening one visits
 * `startStruct(name, ANALYZE_BLOB_MARK)`, the closing one `endStruct()`. Both carry the field's
 * version / test gate, so they are present exactly when it is.
 */
function blobSentinel(name: string, f: Field, i: number, open: boolean): CustomField {
  return {
    kind: "custom",
    name,
    key: `\u0000analyze-${open ? "open" : "close"}-${i}`,
    info: ANALYZE_BLOB_MARK,
    size: 0,
    ...(f.version !== undefined ? { version: f.version } : {}),
    ...(f.test !== undefined ? { test: f.test } : {}),
    visit(v: Visitor, n: string): undefined {
      if (open) v.startStruct(n, ANALYZE_BLOB_MARK, 0);
      else v.endStruct();
      return undefined;
    },
  };
}

/** A device's analyze value and the state loaded with it. */
export interface AnalyzedDevice {
  readonly value: AnalyzeObject;
  readonly state: State;
}

/**
 * Read one device section's payload from `r` (positioned at the payload, sticky or throwing) with
 * `vmsd` at the section's `version`, and render it. `vmsd` is a vmdesc-built description or
 * `analyzeView(registered)`. Throws the walk's VmstreamError.
 */
export function analyzeDevice(r: ByteReader, vmsd: VMStateDescription, version: number, idstr: string = vmsd.name): AnalyzedDevice {
  const v = new AnalyzeVisitor(new WireInputVisitor(r));
  const state: State = {};
  loadState(v, vmsd, state, version, idstr);
  const err = v.error ?? r.error;
  if (err) throw err;
  return { value: v.result ?? new Map(), state };
}

/** Render a state without a stream (a save walk into a scratch buffer): what the script would print for its bytes. */
export function analyzeStateValue(vmsd: VMStateDescription, state: State, idstr: string = vmsd.name): AnalyzeObject {
  const v = new AnalyzeVisitor(new WireOutputVisitor(new ByteWriter()));
  saveState(v, vmsd, state, idstr);
  if (v.error) throw v.error;
  return v.result ?? new Map();
}

// ---------------------------------------------------------------------------------------------
// Live sections

/** A RAMBlock as the MEM_SIZE record lists it. */
export type RamBlockSize = readonly [name: string, usedLength: bigint | number];

/** The script's RAM value: `{"section sizes": {"<block>": "0x%016x", ...}}` (a repeated name keeps its first place, last value). */
export function ramSectionValue(blocks: Iterable<RamBlockSize>): AnalyzeObject {
  const sizes: AnalyzeObject = new Map();
  for (const [name, len] of blocks) {
    const n = BigInt(len);
    if (n < 0n) throw new VmstreamError("RANGE", "a RAM block length cannot be negative", { detail: `${name}: ${n}` });
    sizes.set(name, "0x" + n.toString(16).padStart(16, "0"));
  }
  return new Map<string, AnalyzeValue>([["section sizes", sizes]]);
}

/** The script's value for an spapr/htab section. */
export const HTAB_VALUE = "";

// ---------------------------------------------------------------------------------------------
// The document

/** The whole `-d state` document, built section by section in stream order. */
export class AnalyzeDocument {
  private readonly sections = new Map<number, { readonly idstr: string; readonly value: AnalyzeValue }>();

  /** Any section's value (as the script: a section id seen again replaces the value, keeping its place). */
  set(sectionId: number, idstr: string, value: AnalyzeValue): this {
    this.sections.set(sectionId >>> 0, { idstr, value });
    return this;
  }

  device(sectionId: number, idstr: string, value: AnalyzeObject): this {
    return this.set(sectionId, idstr, value);
  }

  ram(sectionId: number, blocks: Iterable<RamBlockSize>, idstr = "ram"): this {
    return this.set(sectionId, idstr, ramSectionValue(blocks));
  }

  htab(sectionId: number, idstr = "spapr/htab"): this {
    return this.set(sectionId, idstr, HTAB_VALUE);
  }

  has(sectionId: number): boolean {
    return this.sections.has(sectionId >>> 0);
  }

  /** The document as an ordered object `"<idstr> (<section_id>)" -> value`. */
  toValue(): AnalyzeObject {
    const out: AnalyzeObject = new Map();
    for (const [id, { idstr, value }] of this.sections) out.set(`${idstr} (${id})`, value);
    return out;
  }

  /** The script's output text, trailing newline included. */
  format(): string {
    return formatAnalyzeJson(this.toValue());
  }
}

// ---------------------------------------------------------------------------------------------
// Text

export interface FormatOptions {
  /** Spaces per level (default 4, the script's). */
  readonly indent?: number;
  /** End with "\n", as `print` does (default true). */
  readonly newline?: boolean;
}

/** A value accepted by the formatter: analyze values, or plain JSON (objects keep their key order). */
export type FormattableJson =
  | AnalyzeValue
  | null
  | number
  | readonly FormattableJson[]
  | { readonly [k: string]: FormattableJson }
  | ReadonlyMap<string, FormattableJson>;

/**
 * Python's `json.JSONEncoder(indent=4, separators=(',', ': ')).encode(v)` plus a newline: the exact
 * text analyze-migration.py prints. Maps and plain objects keep their order; numbers print as
 * integers do in Python (non-integers as JavaScript writes them).
 */
export function formatAnalyzeJson(v: FormattableJson, options: FormatOptions = {}): string {
  const step = options.indent ?? 4;
  const out: string[] = [];
  write(v, 0);
  if (options.newline ?? true) out.push("\n");
  return out.join("");

  function write(x: FormattableJson, level: number): void {
    if (x === null) out.push("null");
    else if (typeof x === "string") out.push(pyQuote(x));
    else if (typeof x === "boolean") out.push(x ? "true" : "false");
    else if (typeof x === "number") out.push(Number.isFinite(x) ? String(x) : Number.isNaN(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity");
    else if (Array.isArray(x)) {
      if (x.length === 0) {
        out.push("[]");
        return;
      }
      const inner = "\n" + " ".repeat((level + 1) * step);
      out.push("[");
      for (let i = 0; i < x.length; i++) {
        out.push(i ? "," + inner : inner);
        write(x[i] as FormattableJson, level + 1);
      }
      out.push("\n" + " ".repeat(level * step) + "]");
    } else {
      const entries: Iterable<[string, FormattableJson]> = x instanceof Map ? x.entries() : Object.entries(x as Record<string, FormattableJson>);
      const inner = "\n" + " ".repeat((level + 1) * step);
      let first = true;
      for (const [k, val] of entries) {
        out.push(first ? "{" + inner : "," + inner);
        first = false;
        out.push(pyQuote(k), ": ");
        write(val, level + 1);
      }
      out.push(first ? "{}" : "\n" + " ".repeat(level * step) + "}");
    }
  }
}

const SHORT: Readonly<Record<number, string>> = { 0x22: '\\"', 0x5c: "\\\\", 0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t", 0x08: "\\b", 0x0c: "\\f" };

/** Python's json string with ensure_ascii: escapes for everything outside 0x20..0x7e, lowercase hex, UTF-16 units. */
export function pyQuote(s: string): string {
  let plain = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) {
      plain = false;
      break;
    }
  }
  if (plain) return '"' + s + '"';
  let o = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const short = SHORT[c];
    if (short !== undefined) o += short;
    else if (c < 0x20 || c > 0x7e) o += "\\u" + c.toString(16).padStart(4, "0");
    else o += s[i];
  }
  return o + '"';
}

/** An analyze value as plain JSON objects (for JSON.stringify or deep comparisons; integer-like keys reorder as in any JS object). */
export function analyzeToJson(v: AnalyzeValue): unknown {
  if (typeof v === "string" || typeof v === "boolean") return v;
  if (Array.isArray(v)) return v.map(analyzeToJson);
  const o: Record<string, unknown> = {};
  for (const [k, x] of v) Object.defineProperty(o, k, { value: analyzeToJson(x), enumerable: true, writable: true, configurable: true });
  return o;
}
