// Properties over random descriptions and states (tests/helpers/gen-vmstate.ts).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteReader } from "../../src/io/reader.js";
import { ByteWriter } from "../../src/io/writer.js";
import { PrettyVisitor } from "../../src/visitor/pretty.js";
import { TraceVisitor } from "../../src/visitor/trace.js";
import { WireInputVisitor, WireOutputVisitor } from "../../src/visitor/wire.js";
import { loadState, saveState } from "../../src/vmstate/engine.js";
import { checkSymmetry, descriptionPaths, fromJSON, loadTargetFor, toJSON, unexercised } from "../../src/vmstate/symmetry.js";
import type { State, VMStateDescription } from "../../src/vmstate/types.js";
import { arbDescription, arbStateFor, arbVmsdAndState } from "../helpers/gen-vmstate.js";

// VMSTREAM_PROP_RUNS=5000 for a longer run.
const RUNS = Number(process.env.VMSTREAM_PROP_RUNS ?? 300);
const SOME = Math.ceil(RUNS / 3);

function hasSubsections(d: VMStateDescription): boolean {
  if (d.subsections?.length) return true;
  return d.fields.some((f) =>
    f.kind === "struct" || f.kind === "structArray" || f.kind === "list"
      ? hasSubsections(f.vmsd)
      : f.kind === "pointerArray" && typeof f.elem !== "string"
        ? hasSubsections(f.elem)
        : false,
  );
}

function save(vmsd: VMStateDescription, state: State): { bytes: Uint8Array; trace: TraceVisitor } {
  const w = new ByteWriter();
  const t = new TraceVisitor(new WireOutputVisitor(w));
  saveState(t, vmsd, state);
  expect(t.error).toBeUndefined();
  return { bytes: w.concat(), trace: t };
}

function load(vmsd: VMStateDescription, bytes: Uint8Array, target: State): { trace: TraceVisitor; consumed: number } {
  const r = new ByteReader(bytes, { sticky: true });
  const t = new TraceVisitor(new WireInputVisitor(r));
  loadState(t, vmsd, target, vmsd.version);
  expect(t.error).toBeUndefined();
  return { trace: t, consumed: r.pos };
}

describe("generated descriptions and states", () => {
  it("generate, and the states are plain data of the right kinds", () => {
    fc.assert(
      fc.property(arbVmsdAndState(), ({ vmsd, state }) => {
        expect(typeof vmsd.name).toBe("string");
        expect(typeof state).toBe("object");
      }),
      { numRuns: 50 },
    );
  });

  it("cover every kind of field, gate and subsection", () => {
    const kinds = new Set<string>();
    const walk = (d: VMStateDescription): void => {
      for (const f of d.fields) {
        kinds.add(f.kind);
        if (f.kind === "scalar") kinds.add(`scalar:${f.type}${f.check ? ":" + f.check : ""}`);
        if (f.test) kinds.add("test-gated");
        if ((f.version ?? 0) > 0) kinds.add("version-gated");
        if (f.kind === "array" && typeof f.count === "object") kinds.add("varray");
        if (f.kind === "buffer" && typeof f.size === "object") kinds.add("vbuffer");
        if (f.kind === "struct" && f.structVersion !== undefined) kinds.add("vstruct");
        if (f.kind === "pointerArray" && typeof f.elem !== "string") kinds.add("pointerArray:struct");
        if (f.kind === "struct" || f.kind === "structArray" || f.kind === "list") walk(f.vmsd);
        if (f.kind === "pointerArray" && typeof f.elem !== "string") walk(f.elem);
      }
      for (const s of d.subsections ?? []) {
        kinds.add(d.name.includes("/") ? "nested subsection" : "subsection");
        if (s.needed) kinds.add("needed");
        walk(s);
      }
    };
    fc.assert(
      fc.property(arbDescription(), (d) => void walk(d)),
      { numRuns: 400, seed: 42 },
    );
    for (const k of [
      "scalar",
      "array",
      "buffer",
      "unused",
      "struct",
      "structArray",
      "pointerArray",
      "bitmap",
      "list",
      "custom",
      "scalar:bool",
      "scalar:int64",
      "scalar:uint64",
      "scalar:float32",
      "scalar:float64",
      "scalar:int8",
      "scalar:uint32:equal",
      "scalar:int32:le",
      "test-gated",
      "version-gated",
      "varray",
      "vbuffer",
      "vstruct",
      "pointerArray:struct",
      "subsection",
      "nested subsection",
      "needed",
    ]) {
      expect(kinds, k).toContain(k);
    }
  });
});

describe("wire round trip properties", () => {
  it("out -> in is the identity, consuming every byte; trace(save) == trace(load); re-save gives the same bytes", () => {
    fc.assert(
      fc.property(arbVmsdAndState(), ({ vmsd, state }) => {
        const { bytes, trace: st } = save(vmsd, state);
        const target = loadTargetFor(vmsd, state);
        const { trace: lt, consumed } = load(vmsd, bytes, target);
        expect(consumed).toBe(bytes.length);
        expect(target).toEqual(state);
        expect(lt.entries).toEqual(st.entries);
        const again = save(vmsd, target);
        expect(again.bytes).toEqual(bytes);
      }),
      { numRuns: RUNS },
    );
  });

  it("checkSymmetry agrees", () => {
    fc.assert(
      fc.property(arbVmsdAndState(), ({ vmsd, state }) => {
        const r = checkSymmetry(vmsd, state);
        expect(r.problems).toEqual([]);
        expect(r.ok).toBe(true);
        // Coverage paths (from the trace) and description paths (from the description) agree: what
        // a run reached is one of the description's fields, subsections, gated fields.
        const d = descriptionPaths(vmsd);
        for (const f of r.coverage.fields) if (f !== vmsd.name) expect(d.fields).toContain(f);
        for (const sub of r.coverage.subsections) expect(d.subsections).toContain(sub);
        for (const g of r.coverage.gatedFields) expect(d.gated).toContain(g.name);
        const u = unexercised(vmsd, r.coverage);
        expect(u.fields.length + r.coverage.fields.size - 1).toBeGreaterThanOrEqual(new Set(d.fields).size);
      }),
      { numRuns: SOME },
    );
  });

  it("a truncated stream fails (EOF) without throwing, or stops where a subsection would start", () => {
    fc.assert(
      fc.property(
        arbVmsdAndState().filter(({ vmsd, state }) => save(vmsd, state).bytes.length > 0),
        fc.nat(),
        ({ vmsd, state }, cut) => {
          const { bytes } = save(vmsd, state);
          const short = bytes.subarray(0, cut % bytes.length);
          const r = new ByteReader(short, { sticky: true });
          const v = new WireInputVisitor(r);
          loadState(v, vmsd, loadTargetFor(vmsd, state), vmsd.version);
          expect(r.pos).toBeLessThanOrEqual(short.length);
          // Subsections are optional on the wire and detected by peeking: a stream cut before or
          // inside a subsection header looks like "no subsection" (the parent's next fields then read
          // the header's bytes). So only a description with subsections may load a truncated stream.
          if (!v.error) expect(hasSubsections(vmsd)).toBe(true);
        },
      ),
      { numRuns: SOME },
    );
  });
});

describe("describing visitors over random descriptions", () => {
  it("JSON (both modes) round-trips, also through JSON text", () => {
    fc.assert(
      fc.property(arbVmsdAndState(), fc.constantFrom("values" as const, "typed" as const), ({ vmsd, state }, mode) => {
        const j = toJSON(vmsd, state, { mode });
        expect(fromJSON(vmsd, j, loadTargetFor(vmsd, state))).toEqual(state);
        const text = JSON.stringify(j);
        const back = fromJSON(vmsd, JSON.parse(text), loadTargetFor(vmsd, state));
        expect(JSON.stringify(toJSON(vmsd, back, { mode }))).toBe(text);
      }),
      { numRuns: SOME },
    );
  });

  it("pretty prints one well-formed line per value and byte", () => {
    const line = /^[^ ]+( [^ =]+)* = \((bool|u?int(8|16|32|64)|float(32|64)|nullptr|str)\) (0x[0-9a-f]+|".*")$/;
    fc.assert(
      fc.property(arbVmsdAndState(), ({ vmsd, state }) => {
        const p = new PrettyVisitor();
        const t = new TraceVisitor(p);
        saveState(t, vmsd, state);
        expect(p.error).toBeUndefined();
        let values = 0;
        for (const e of t.entries) {
          if (e.kind === "scalar" || (e.kind === "nullPointer" && e.value === true)) values++;
          else if (e.kind === "buffer") values += (e.value as string).length / 2;
        }
        expect(p.lines).toHaveLength(values);
        for (const l of p.lines) {
          expect(l).toMatch(line);
          expect(l.startsWith(vmsd.name + ".")).toBe(true);
        }
      }),
      { numRuns: SOME },
    );
  });

  it("arbStateFor works on hand-written descriptions too", () => {
    const d: VMStateDescription = {
      name: "h",
      version: 1,
      fields: [{ kind: "gtree", name: "t", valueVmsd: { name: "val", version: 1, fields: [{ kind: "scalar", name: "x", type: "uint16" }] } }],
    };
    fc.assert(
      fc.property(arbStateFor(d), (s) => {
        expect(checkSymmetry(d, s).problems).toEqual([]);
      }),
      { numRuns: 50 },
    );
  });
});
