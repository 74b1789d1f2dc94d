// The fields of a description made from a vmdesc: vmdesc lists, NULL entries, zero-length and
// inline-body buffers. They read and save the wire like any field; on a save that writes the vmdesc
// they write their objects in the form QEMU did (docs/vmstate.md, "Descriptions from a stream's
// vmdesc, and their vmdesc written again").
import { VmstreamError } from "../io/errors.js";
import { ByteReader } from "../io/reader.js";
import { ByteWriter } from "../io/writer.js";
import { ANALYZE_LIST_MARK } from "../visitor/analyze.js";
import type { Name, ScalarInfo, Visitor } from "../visitor/visitor.js";
import { WireInputVisitor, WireOutputVisitor } from "../visitor/wire.js";
import { type DescribingCustomField, type ElementDescriber, loadState, saveState, visitState } from "./engine.js";
import type { CustomField, Field, ScalarFieldType, State, VMStateDescription } from "./types.js";

/** One element as the vmdesc describes it. */
export type VmdescElement =
  | {
      readonly k: "scalar";
      readonly type: ScalarFieldType;
      readonly json: string;
      readonly info: ScalarInfo;
      readonly check?: "equal" | "le";
      readonly size: number;
    }
  | { readonly k: "buffer"; readonly json: string; readonly info: ScalarInfo; readonly size: number; readonly inline?: InlineBody }
  | { readonly k: "struct"; readonly vmsd: VMStateDescription; readonly size: number; readonly cost: number }
  | { readonly k: "null"; readonly json: string; readonly size: 1 };

/** The nested body of a tmp / vstruct / qtailq / qlist object. */
export interface InlineBody {
  readonly vmsd: VMStateDescription;
  readonly list: boolean;
}

const EMPTY = new Uint8Array(0);

/** A field of one element (no list). */
export function singleField(name: string, key: string, e: VmdescElement, json: string): Field {
  switch (e.k) {
    case "scalar":
      return {
        kind: "scalar",
        name,
        key,
        type: e.type,
        ...(json !== e.type ? { info: json } : {}),
        ...(e.check ? { check: e.check } : {}),
      };
    case "buffer":
      if (e.inline) return inlineField(name, key, e);
      if (e.size > 0) return { kind: "buffer", name, key, size: e.size, ...(json !== "buffer" ? { info: json } : {}) };
      // A zero-length object still exists in the vmdesc (and analyze-migration.py prints ""); the
      // engine's buffer sends nothing for size 0, so visit it here.
      return {
        kind: "custom",
        name,
        key,
        info: json,
        size: 0,
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
function inlineField(name: string, key: string, e: Extract<VmdescElement, { k: "buffer" }>): DescribingCustomField {
  return {
    kind: "custom",
    name,
    key,
    info: e.json,
    size: e.size,
    describesElements: true,
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
export function elementsField(
  name: string,
  key: string,
  elem: (i: number) => VmdescElement,
  n: number,
  form: "array_len" | "index" | "single",
  json: string,
  size: number,
): DescribingCustomField {
  const elemType = form !== "single" && n === 1 ? json + ANALYZE_LIST_MARK : json;
  const elemSize = n > 0 ? elem(0).size : 0;
  return {
    kind: "custom",
    name,
    key,
    info: json,
    size,
    describesElements: true,
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

function visitElem(v: Visitor, e: VmdescElement, i: Name, prev: unknown, describe?: ElementDescriber): unknown {
  switch (e.k) {
    case "scalar": {
      const got = visitScalar(v, e.type, i, prev, e.info);
      if (v.direction === "input" && !v.error && prev !== undefined && prev !== null) {
        if (e.check === "equal" && got !== prev) {
          v.fail(
            new VmstreamError("MISMATCH", `element ${i}: value differs from this side's`, {
              path: v.path(),
              detail: `stream ${String(got)}, here ${String(prev)}`,
            }),
          );
        } else if (e.check === "le" && ((got as number) < 0 || (got as number) > (prev as number))) {
          v.fail(
            new VmstreamError("BAD_VALUE", `element ${i}: value out of range`, { path: v.path(), detail: `stream ${String(got)}, allowed 0..${String(prev)}` }),
          );
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
      // (a zero-length element shares one empty array: a vmdesc may list millions of them)
      return e.size === 0 ? (v.buffer(i, undefined, 0, e.info), EMPTY) : v.buffer(i, undefined, e.size, e.info).slice();
    }
    case "struct": {
      const s: State = typeof prev === "object" && prev !== null && !Array.isArray(prev) ? (prev as State) : {};
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
function bodyStates(inline: InlineBody, bytes: Uint8Array): State[] | undefined {
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
function writeBodies(v: Visitor, inline: InlineBody, states: readonly State[], save: (t: State, k: number) => void): void {
  states.forEach((t, k) => {
    if (inline.list) v.listNext(k, true);
    save(t, k);
  });
  if (inline.list) v.listNext(states.length, false);
}

function visitScalar(v: Visitor, type: ScalarFieldType, name: Name, val: unknown, info: ScalarInfo): unknown {
  switch (type) {
    case "bool":
      return v.bool(name, typeof val === "boolean" ? val : false, info);
    case "uint8":
      return v.uint8(name, typeof val === "number" ? val : 0, info);
    case "uint16":
      return v.uint16(name, typeof val === "number" ? val : 0, info);
    case "uint32":
      return v.uint32(name, typeof val === "number" ? val : 0, info);
    case "uint64":
      return v.uint64(name, typeof val === "bigint" ? val : 0n, info);
    case "int8":
      return v.int8(name, typeof val === "number" ? val : 0, info);
    case "int16":
      return v.int16(name, typeof val === "number" ? val : 0, info);
    case "int32":
      return v.int32(name, typeof val === "number" ? val : 0, info);
    case "int64":
      return v.int64(name, typeof val === "bigint" ? val : 0n, info);
    case "float32":
      return v.float32(name, typeof val === "number" ? val : 0, info);
    case "float64":
      return v.float64(name, typeof val === "number" ? val : 0, info);
  }
}
