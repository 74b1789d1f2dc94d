// fast-check arbitraries for VMState descriptions and matching state values.
//
//   arbDescription(opts?)     random description (depth-limited): scalars of every type, _EQUAL and
//                             int32-le checks, fixed and variable arrays (count field placed
//                             earlier, optional multiply), fixed buffers and VBUFFERs, unused bytes,
//                             nested structs (and VSTRUCTs), struct arrays (fixed/variable), pointer
//                             arrays (scalar or struct elements) with NULLs, bitmaps, QTAILQ lists,
//                             a custom type ("pci irq state"-like), version-gated and test-gated
//                             fields, subsections with needed() (always / never / a flag field /
//                             no needed), nested subsections.
//   arbStateFor(vmsd, opts?)  random state for ANY description (not only generated ones): walks the
//                             description like the engine, evaluating counts, version and test
//                             gates and needed() on the state built so far, so the state holds
//                             exactly what a load of its bytes rebuilds (a wire round trip is
//                             deep-equal). Counts read from fields are kept small.
//   arbVmsdAndState(opts?)    { vmsd, state } pairs.
//
// Names: every field of a generated tree has a unique name (`f<n>`), VMState names are `v<n>x`
// (never a prefix of another) and subsections are `<parent>/s<n>x`, as QEMU's subsection detection
// needs. Values: integers within their type's range, 64-bit as bigints, float32 values exactly
// representable (no NaN unless `nan: true`), buffers as Uint8Arrays.
import fc from "fast-check";
import type { Visitor } from "../../src/visitor/visitor.js";
import { F } from "../../src/vmstate/fields.js";
import type { Count, CustomField, Field, ScalarFieldType, State, VMStateDescription } from "../../src/vmstate/types.js";

export const SCALAR_TYPES: readonly ScalarFieldType[] = [
  "bool",
  "int8",
  "int16",
  "int32",
  "int64",
  "uint8",
  "uint16",
  "uint32",
  "uint64",
  "float32",
  "float64",
];

// ---------------------------------------------------------------------------------------------
// Description specs (plain data, so fast-check can shrink them), then a deterministic build.

type Gate = { readonly g: "none" } | { readonly g: "version"; readonly v: number } | { readonly g: "test" };

type FieldSpec = { readonly gate: Gate } & (
  | { readonly k: "scalar"; readonly type: ScalarFieldType; readonly flavour: "plain" | "equal" | "le" | "info" }
  | {
      readonly k: "array";
      readonly type: ScalarFieldType;
      readonly count: number;
      readonly variable: boolean;
      readonly countType: "uint8" | "uint16" | "uint32" | "int32";
      readonly multiply: 1 | 2;
    }
  | { readonly k: "buffer"; readonly size: number; readonly variable: boolean }
  | { readonly k: "unused"; readonly size: number }
  | { readonly k: "struct"; readonly vmsd: VmsdSpec; readonly vstruct: boolean }
  | { readonly k: "structArray"; readonly vmsd: VmsdSpec; readonly count: number; readonly variable: boolean }
  | { readonly k: "pointerArray"; readonly elem: ScalarFieldType | VmsdSpec; readonly count: number }
  | { readonly k: "bitmap"; readonly nbits: number }
  | { readonly k: "list"; readonly vmsd: VmsdSpec }
  | { readonly k: "custom" }
);

interface SubSpec {
  readonly vmsd: VmsdSpec;
  readonly needed: "none" | "always" | "never" | "flag";
}

interface VmsdSpec {
  readonly version: number;
  readonly fields: readonly FieldSpec[];
  readonly subsections: readonly SubSpec[];
}

export interface DescriptionOptions {
  /** Nesting depth of structs and subsections (default 2). */
  readonly maxDepth?: number;
  /** Fields per description (default 6). */
  readonly maxFields?: number;
  /** Subsections per description (default 2). */
  readonly maxSubsections?: number;
  /** Largest fixed element count (default 4). */
  readonly maxCount?: number;
}

const arbScalarType = fc.constantFrom(...SCALAR_TYPES);
const arbGate: fc.Arbitrary<Gate> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ g: "none" } as const) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 4 }).map((v) => ({ g: "version", v }) as const) },
  { weight: 1, arbitrary: fc.constant({ g: "test" } as const) },
);

function arbVmsdSpec(depth: number, o: Required<DescriptionOptions>): fc.Arbitrary<VmsdSpec> {
  const nested = depth > 0 ? arbVmsdSpec(depth - 1, o) : undefined;
  const count = fc.integer({ min: 0, max: o.maxCount });
  const leafKinds: fc.Arbitrary<FieldSpec>[] = [
    fc.record({ k: fc.constant("scalar" as const), type: arbScalarType, flavour: fc.constantFrom("plain", "plain", "equal", "le", "info"), gate: arbGate }),
    fc.record({
      k: fc.constant("array" as const),
      type: arbScalarType,
      count,
      variable: fc.boolean(),
      countType: fc.constantFrom("uint8", "uint16", "uint32", "int32"),
      multiply: fc.constantFrom(1, 2),
      gate: arbGate,
    }),
    fc.record({ k: fc.constant("buffer" as const), size: fc.integer({ min: 0, max: 12 }), variable: fc.boolean(), gate: arbGate }),
    fc.record({ k: fc.constant("unused" as const), size: fc.integer({ min: 1, max: 4 }), gate: arbGate }),
    fc.record({ k: fc.constant("pointerArray" as const), elem: arbScalarType, count, gate: arbGate }),
    fc.record({ k: fc.constant("bitmap" as const), nbits: fc.integer({ min: 1, max: 200 }), gate: arbGate }),
    fc.record({ k: fc.constant("custom" as const), gate: arbGate }),
  ];
  const structKinds: fc.Arbitrary<FieldSpec>[] = nested
    ? [
        fc.record({ k: fc.constant("struct" as const), vmsd: nested, vstruct: fc.boolean(), gate: arbGate }),
        fc.record({ k: fc.constant("structArray" as const), vmsd: nested, count: fc.integer({ min: 0, max: 3 }), variable: fc.boolean(), gate: arbGate }),
        fc.record({ k: fc.constant("pointerArray" as const), elem: nested, count: fc.integer({ min: 0, max: 3 }), gate: arbGate }),
        fc.record({ k: fc.constant("list" as const), vmsd: nested, gate: arbGate }),
      ]
    : [];
  const field = fc.oneof(...leafKinds.map((a) => ({ weight: 3, arbitrary: a })), ...structKinds.map((a) => ({ weight: 2, arbitrary: a })));
  const sub: fc.Arbitrary<readonly SubSpec[]> = nested
    ? fc.array(fc.record({ vmsd: nested, needed: fc.constantFrom("none", "always", "never", "flag") }), { maxLength: o.maxSubsections })
    : fc.constant([]);
  return fc.record({
    version: fc.integer({ min: 1, max: 4 }),
    fields: fc.array(field, { maxLength: o.maxFields }),
    subsections: sub,
  });
}

/** A "pci irq state"-like custom type: 4 x uint32 on the wire, its own put/get. */
export const irqStateField = (name: string, o: Partial<Pick<Field, "version" | "test">> = {}): CustomField =>
  F.custom(
    name,
    "irq state",
    16,
    (v: Visitor, n: string, value: unknown) => {
      const arr = Array.isArray(value) ? (value as number[]) : [0, 0, 0, 0];
      const out: number[] = [];
      const m = v.startArray(n, 4, 4, "uint32");
      for (let i = 0; i < m; i++) out.push(v.uint32(i, arr[i] ?? 0));
      v.endArray();
      return out;
    },
    o,
  );

const EQUAL_FLAVOUR: Partial<Record<ScalarFieldType, (name: string, o: object) => Field>> = {
  uint8: F.uint8Equal,
  uint16: F.uint16Equal,
  int32: F.int32Equal,
  uint32: F.uint32Equal,
  uint64: F.uint64Equal,
};
const INFO_FLAVOUR: Partial<Record<ScalarFieldType, (name: string, o: object) => Field>> = {
  int64: F.timer,
  float64: F.cpuDouble,
};

class Builder {
  private n = 0;
  next(): number {
    return this.n++;
  }

  vmsd(spec: VmsdSpec, name: string): VMStateDescription {
    const fields: Field[] = [];
    // A struct with subsections starts with a bool (byte 0 or 1, never QEMU's 0x05 subsection
    // marker): otherwise, in an array of such structs, the next element's subsection would be read
    // as another subsection of the previous element — QEMU's own ambiguity, not the engine's.
    if (spec.subsections.length > 0) fields.push(F.bool(`f${this.next()}`));
    for (const f of spec.fields) this.field(f, spec, fields);
    const subsections: VMStateDescription[] = [];
    for (const s of spec.subsections) {
      const sub = this.vmsd(s.vmsd, `${name}/s${this.next()}x`);
      let needed: ((st: State) => boolean) | undefined;
      if (s.needed === "always") needed = () => true;
      else if (s.needed === "never") needed = () => false;
      else if (s.needed === "flag") {
        const flag = `f${this.next()}`;
        fields.push(F.bool(flag));
        needed = (st) => st[flag] === true;
      }
      subsections.push(needed ? { ...sub, needed } : sub);
    }
    return { name, version: spec.version, fields, ...(subsections.length ? { subsections } : {}) };
  }

  private field(f: FieldSpec, parent: VmsdSpec, out: Field[]): void {
    const name = `f${this.next()}`;
    let gate: Partial<Pick<Field, "version" | "test">> = {};
    if (f.gate.g === "version") gate = { version: Math.min(f.gate.v, parent.version) };
    else if (f.gate.g === "test") {
      const ctl = `f${this.next()}`;
      out.push(F.bool(ctl));
      gate = { test: (s) => s[ctl] === true };
    }
    const countField = (type: "uint8" | "uint16" | "uint32" | "int32"): string => {
      const c = `f${this.next()}`;
      out.push(F[type](c));
      return c;
    };
    switch (f.k) {
      case "scalar": {
        const make = f.flavour === "equal" ? EQUAL_FLAVOUR[f.type] : f.flavour === "info" ? INFO_FLAVOUR[f.type] : undefined;
        if (f.flavour === "le") out.push(F.int32Le(name, gate));
        else if (make) out.push(make(name, gate));
        else out.push(F[f.type](name, gate));
        return;
      }
      case "array": {
        const count: Count = f.variable ? { field: countField(f.countType), ...(f.multiply > 1 ? { multiply: f.multiply } : {}) } : f.count;
        out.push(F.array(name, f.type, count, gate));
        return;
      }
      case "buffer":
        out.push(F.buffer(name, f.variable ? { field: countField("uint32") } : f.size, gate));
        return;
      case "unused":
        out.push(F.unused(f.size, gate));
        return;
      case "struct": {
        const vmsd = this.vmsd(f.vmsd, `v${this.next()}x`);
        out.push(F.struct(name, vmsd, { ...gate, ...(f.vstruct ? { structVersion: vmsd.version } : {}) }));
        return;
      }
      case "structArray": {
        const vmsd = this.vmsd(f.vmsd, `v${this.next()}x`);
        out.push(F.structArray(name, vmsd, f.variable ? { field: countField("int32") } : f.count, gate));
        return;
      }
      case "pointerArray": {
        const elem = typeof f.elem === "string" ? f.elem : this.vmsd(f.elem, `v${this.next()}x`);
        out.push(F.pointerArray(name, elem, f.count, gate));
        return;
      }
      case "bitmap":
        out.push(F.bitmap(name, f.nbits, gate));
        return;
      case "list":
        out.push(F.qtailq(name, this.vmsd(f.vmsd, `v${this.next()}x`), gate));
        return;
      case "custom":
        out.push(irqStateField(name, gate));
        return;
    }
  }
}

/** Build a description from a spec (deterministic: the same spec gives equal descriptions). */
function build(spec: VmsdSpec): VMStateDescription {
  const b = new Builder();
  return b.vmsd(spec, `v${b.next()}x`);
}

/** Random VMState descriptions (see the file comment). */
export function arbDescription(options: DescriptionOptions = {}): fc.Arbitrary<VMStateDescription> {
  const o: Required<DescriptionOptions> = { maxDepth: 2, maxFields: 6, maxSubsections: 2, maxCount: 4, ...options };
  return arbVmsdSpec(o.maxDepth, o).map(build);
}

// ---------------------------------------------------------------------------------------------
// State values for any description

export interface StateOptions {
  /** Largest value given to a field that another field reads as its count (default 4). */
  readonly maxCount?: number;
  /** Longest QTAILQ / GTree (default 3). */
  readonly maxList?: number;
  /** Allow NaN floats (default false: NaN payloads are not kept by the JS engine's float writes). */
  readonly nan?: boolean;
  /** Value arbitraries for custom fields, by their info name ("irq state" is built in). */
  readonly custom?: Readonly<Record<string, fc.Arbitrary<unknown>>>;
}

const INT_RANGES: Record<string, [number, number]> = {
  int8: [-0x80, 0x7f],
  int16: [-0x8000, 0x7fff],
  int32: [-0x80000000, 0x7fffffff],
  uint8: [0, 0xff],
  uint16: [0, 0xffff],
  uint32: [0, 0xffffffff],
};

const DEFAULT_CUSTOM: Record<string, fc.Arbitrary<unknown>> = {
  "irq state": fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 4, maxLength: 4 }),
};

type G = fc.GeneratorValue;

// fc.gen() caches arbitraries by factory identity: one stable factory per arbitrary keeps replays (shrinking) working.
const factories = new WeakMap<fc.Arbitrary<unknown>, () => fc.Arbitrary<unknown>>();
function factoryOf(arb: fc.Arbitrary<unknown>): () => fc.Arbitrary<unknown> {
  let f = factories.get(arb);
  if (!f) factories.set(arb, (f = () => arb));
  return f;
}

function scalarValue(g: G, type: ScalarFieldType, o: StateOptions): unknown {
  switch (type) {
    case "bool":
      return g(fc.boolean);
    case "int64":
      return g(fc.bigInt, { min: -(1n << 63n), max: (1n << 63n) - 1n });
    case "uint64":
      return g(fc.bigInt, { min: 0n, max: (1n << 64n) - 1n });
    case "float32":
      return g(fc.float, { noNaN: !o.nan });
    case "float64":
      return g(fc.double, { noNaN: !o.nan });
    default: {
      const [min, max] = INT_RANGES[type]!;
      return g(fc.integer, { min, max });
    }
  }
}

function countOf(c: Count, s: State): number {
  let n: number;
  if (typeof c === "number") n = c;
  else if (typeof c === "function") n = c(s);
  else n = Number(s[c.field] ?? 0) * (c.multiply ?? 1);
  return Number.isInteger(n) && n > 0 ? n : 0;
}

/** Names of the fields read as counts, in a description and its subsections (they share the state). */
function countFields(vmsd: VMStateDescription, out = new Set<string>()): Set<string> {
  for (const f of vmsd.fields) {
    const c =
      f.kind === "array" || f.kind === "structArray" || f.kind === "pointerArray"
        ? f.count
        : f.kind === "buffer"
          ? f.size
          : f.kind === "bitmap"
            ? f.nbits
            : undefined;
    if (c !== undefined && typeof c === "object") out.add(c.field);
  }
  for (const sub of vmsd.subsections ?? []) countFields(sub, out);
  return out;
}

function fillStruct(g: G, vmsd: VMStateDescription, version: number, o: StateOptions, depth: number, fresh: boolean): State {
  const s: State = {};
  fillBody(g, vmsd, s, version, o, depth, countFields(vmsd), fresh);
  return s;
}

/**
 * `fresh`: inside a list or tree element, which a load allocates anew — so its pointer arrays
 * cannot hold NULLs (the destination's pointers are what tell a load where the NULL markers are).
 */
function fillBody(g: G, vmsd: VMStateDescription, s: State, version: number, o: StateOptions, depth: number, counts: Set<string>, fresh: boolean): void {
  if (depth > 32) return;
  const maxCount = o.maxCount ?? 4;
  for (const f of vmsd.fields) {
    if (f.kind === "validate") continue;
    const present = f.test ? f.test(s, version) : (f.version ?? 0) <= version;
    if (!present) continue;
    const key = f.key ?? f.name;
    switch (f.kind) {
      case "scalar":
        if (counts.has(key) && f.type !== "bool" && f.type !== "float32" && f.type !== "float64") {
          const n = g(fc.integer, { min: 0, max: maxCount });
          s[key] = f.type === "int64" || f.type === "uint64" ? BigInt(n) : n;
        } else if (f.check === "le") {
          s[key] = g(fc.integer, { min: 0, max: 0x7fffffff });
        } else {
          s[key] = scalarValue(g, f.type, o);
        }
        break;
      case "array": {
        const n = countOf(f.count, s);
        const start = f.start ?? 0;
        const arr: unknown[] = [];
        for (let i = 0; i < n; i++) arr[start + i] = scalarValue(g, f.type, o);
        s[key] = arr;
        break;
      }
      case "buffer": {
        const n = countOf(f.size, s);
        if (n === 0) break;
        const start = f.start ?? 0;
        const bytes = g(fc.uint8Array, { minLength: n, maxLength: n });
        if (start === 0) s[key] = bytes;
        else {
          const b = new Uint8Array(start + n);
          b.set(bytes, start);
          s[key] = b;
        }
        break;
      }
      case "unused":
      case "tmp":
        break;
      case "struct": {
        const ver = f.structVersion ?? f.vmsd.version;
        s[key] = fillStruct(g, f.vmsd, ver, o, depth + 1, fresh);
        break;
      }
      case "structArray": {
        const n = countOf(f.count, s);
        s[key] = Array.from({ length: n }, () => fillStruct(g, f.vmsd, f.vmsd.version, o, depth + 1, fresh));
        break;
      }
      case "pointerArray": {
        const n = countOf(f.count, s);
        const arr: unknown[] = [];
        for (let i = 0; i < n; i++) {
          if (!fresh && g(fc.integer, { min: 0, max: 3 }) === 0) arr.push(null);
          else if (typeof f.elem === "string") arr.push(scalarValue(g, f.elem, o));
          else arr.push(fillStruct(g, f.elem, f.elem.version, o, depth + 1, fresh));
        }
        s[key] = arr;
        break;
      }
      case "bitmap": {
        const words = Math.ceil(countOf(f.nbits, s) / 64);
        if (words === 0) break;
        s[key] = Array.from({ length: words }, () => scalarValue(g, "uint64", o));
        break;
      }
      case "list": {
        const n = g(fc.integer, { min: 0, max: o.maxList ?? 3 });
        s[key] = Array.from({ length: n }, () => fillStruct(g, f.vmsd, f.vmsd.version, o, depth + 1, true));
        break;
      }
      case "gtree": {
        const n = g(fc.integer, { min: 0, max: o.maxList ?? 3 });
        s[key] = Array.from({ length: n }, () => [
          f.keyVmsd ? fillStruct(g, f.keyVmsd, f.keyVmsd.version, o, depth + 1, true) : scalarValue(g, "uint64", o),
          fillStruct(g, f.valueVmsd, f.valueVmsd.version, o, depth + 1, true),
        ]);
        break;
      }
      case "custom": {
        const arb = o.custom?.[f.info] ?? DEFAULT_CUSTOM[f.info];
        if (arb) s[key] = g(factoryOf(arb));
        break;
      }
    }
  }
  for (const sub of vmsd.subsections ?? []) {
    if (sub.needed && !sub.needed(s)) continue;
    fillBody(g, sub, s, sub.version, o, depth + 1, counts, fresh);
  }
}

/**
 * Random state for `vmsd`, walked at its own version: exactly the fields a save sends (gated-off
 * fields and the fields of subsections not needed are left out), so that a wire round trip rebuilds
 * a deep-equal state. Not generated: WITH_TMP state (its shape is the description's own business)
 * and custom fields without an arbitrary in `options.custom`.
 */
export function arbStateFor(vmsd: VMStateDescription, options: StateOptions = {}): fc.Arbitrary<State> {
  return fc.gen().map((g) => fillStruct(g, vmsd, vmsd.version, options, 0, false));
}

/** A random description with a random state for it. */
export function arbVmsdAndState(options: DescriptionOptions & StateOptions = {}): fc.Arbitrary<{ vmsd: VMStateDescription; state: State }> {
  return arbDescription(options).chain((vmsd) => arbStateFor(vmsd, options).map((state) => ({ vmsd, state })));
}
