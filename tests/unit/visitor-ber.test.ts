// The BER visitors: BER out -> in identity, QEMU wire -> BER -> wire identity, and every kind of
// mismatch between the stream and the local description reported with the field path — the point
// of a self-describing format (the demonstration test: the wire visitor silently misreads a changed
// field type, the BER visitor names the field).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BerReader } from "../../src/ber/reader.js";
import { BerWriter } from "../../src/ber/writer.js";
import { BerInputVisitor, type BerLengths, BerOutputVisitor } from "../../src/visitor/ber/index.js";
import { loadState, saveState } from "../../src/vmstate/engine.js";
import { F } from "../../src/vmstate/fields.js";
import type { Field, State, VMStateDescription } from "../../src/vmstate/types.js";
import { dev, devState, elem, pci } from "../helpers/ber-fixtures.js";
import { berRootFieldNames, berRootFields, loadBer, loadWire, realX86Sections, saveBer, saveWire } from "../helpers/ber-tools.js";
import { toSpacedHex } from "../helpers/bytes.js";
import { arbVmsdAndState, SCALAR_TYPES } from "../helpers/gen-vmstate.js";

const LENGTHS: readonly BerLengths[] = ["auto", "definite", "indefinite"];

/** Load BER that must fail; returns the error. */
function loadFails(vmsd: VMStateDescription, bytes: Uint8Array) {
  const { error } = loadBer(vmsd, bytes);
  expect(error, "the load should fail").toBeDefined();
  return error!;
}

/** A copy of `vmsd` with its fields replaced. */
const withFields = (vmsd: VMStateDescription, fields: Field[]): VMStateDescription => ({ ...vmsd, fields });

// ---------------------------------------------------------------------------------------------

describe("BER out -> in", () => {
  it.each(LENGTHS)("rebuilds the state exactly (%s lengths)", (lengths) => {
    const s = devState();
    const bytes = saveBer(dev, s, lengths);
    const { s: back, error } = loadBer(dev, bytes);
    expect(error).toBeUndefined();
    expect(back).toEqual(s);
    expect(Object.is(back.d, -0)).toBe(true);
  });

  it("the three length forms differ only in lengths", () => {
    const s = devState();
    const [a, d, i] = LENGTHS.map((l) => saveBer(dev, s, l));
    expect(a).not.toEqual(d);
    expect(i!.length).toBeGreaterThan(a!.length);
    // Definite lengths are minimal: the struct starts 72 82 (two length octets for this size).
    expect(toSpacedHex(d!.subarray(0, 2))).toBe("72 82");
    expect(toSpacedHex(a!.subarray(0, 2))).toBe("72 80");
  });

  it("golden bytes of a one-field struct", () => {
    const i8259: VMStateDescription = { name: "i8259", version: 3, fields: [F.uint8("irr")] };
    expect(toSpacedHex(saveBer(i8259, { irr: 5 }, "definite"))).toBe("72 16 0C 05 69 38 32 35 39 02 01 03 30 0A 30 08 0C 03 69 72 72 84 01 05");
    expect(toSpacedHex(saveBer(i8259, { irr: 5 }, "auto"))).toBe("72 80 0C 05 69 38 32 35 39 02 01 03 30 80 30 08 0C 03 69 72 72 84 01 05 00 00 00 00");
  });

  it("writes info names and subsections as the schema says", () => {
    const bytes = saveBer(dev, devState(), "definite");
    const text = Buffer.from(bytes).toString("latin1");
    for (const s of ["timer", "CPU_Double_U", "uint32 equal", "pci config", "unused_buffer", "qtailq", "gtree", "gtree node", "dev/sub/deep"]) {
      expect(text).toContain(s);
    }
    expect(text).not.toContain("dev/never");
    expect(berRootFieldNames(bytes)).toContain("nnodes");
    // A field left out by its gate is recorded as such.
    expect(berRootFieldNames(bytes)).not.toContain("nope");
    expect(berRootFields(bytes)).toContainEqual({ name: "nope", absent: true });
  });

  it("peekStruct() gives the VMState name and version without consuming", () => {
    const v = new BerInputVisitor(saveBer(dev, devState()));
    expect(v.peekStruct()).toEqual({ name: "dev", version: 3 });
    expect(v.r.pos).toBe(0);
  });

  it("loads a struct saved at an older version (fields gated by version left out)", () => {
    const s = devState();
    const v = new BerOutputVisitor();
    // Save at version 2 by walking with an input-style version: a struct whose description says 2.
    const old: VMStateDescription = { ...dev, version: 2 };
    saveState(v, old, s);
    expect(v.error).toBeUndefined();
    const bytes = v.w.finish().slice();
    expect(berRootFieldNames(bytes)).not.toContain("newer");
    expect(berRootFields(bytes)).toContainEqual({ name: "newer", absent: true });
    const back: State = {};
    const inp = new BerInputVisitor(bytes);
    loadState(inp, dev, back, inp.peekStruct()!.version);
    expect(inp.error).toBeUndefined();
    expect(back.newer).toBeUndefined();
    expect(back.u64).toBe(2n ** 64n - 1n);
  });

  it("writes into a caller's writer, between the caller's own values", () => {
    const w = new BerWriter();
    w.fork(0x30, true);
    w.int(42);
    const v = new BerOutputVisitor({ writer: w });
    saveState(v, elem, { a: 1, b: 2 });
    w.join();
    const r = new BerReader(w.finish());
    r.header();
    const end = r.enter();
    r.header();
    expect(r.int()).toBe(42);
    const inp = new BerInputVisitor(r);
    const back: State = {};
    loadState(inp, elem, back, 1);
    expect(inp.error).toBeUndefined();
    expect(back).toEqual({ a: 1, b: 2 });
    r.leave(end);
    expect(r.pos).toBe(r.end);
  });

  it("output reports values out of range for their type (RANGE, with the path)", () => {
    const d: VMStateDescription = { name: "d", version: 1, fields: [F.uint8("a"), F.int16("b")] };
    for (const [s, path] of [
      [{ a: 256, b: 0 }, "d.a"],
      [{ a: 1, b: 40000 }, "d.b"],
      [{ a: 1.5, b: 0 }, "d.a"],
    ] as const) {
      const v = new BerOutputVisitor();
      saveState(v, d, s);
      expect(v.error?.code).toBe("RANGE");
      expect(v.error?.path).toBe(path);
    }
    const big = new BerOutputVisitor();
    saveState(big, { name: "d", version: 1, fields: [F.uint64("q")] }, { q: 2n ** 64n });
    expect(big.error?.code).toBe("RANGE");
  });
});

describe("QEMU wire -> BER -> wire", () => {
  it("gives back the same wire bytes", () => {
    const wire = saveWire(dev, devState());
    // Load the wire bytes (the destination's pointer layout tells where the NULL markers are).
    const fromWire = loadWire(dev, wire, structuredClone(devState()));
    expect(fromWire.error).toBeUndefined();
    expect(fromWire.left).toBe(0);
    for (const lengths of LENGTHS) {
      const ber = saveBer(dev, fromWire.s, lengths);
      const { s, error } = loadBer(dev, ber);
      expect(error).toBeUndefined();
      expect(toSpacedHex(saveWire(dev, s))).toBe(toSpacedHex(wire));
    }
  });
});

describe("real QEMU 7.2 device sections (x86-pc-64m): wire -> BER -> wire", async () => {
  const real = await realX86Sections();
  const sections = real;
  it("every section gives back QEMU's bytes", () => {
    expect(sections.length).toBeGreaterThan(30);
    for (const sec of sections) {
      const wire = loadWire(sec.vmsd, sec.payload, {}, sec.version);
      expect(wire.error, sec.idstr).toBeUndefined();
      expect(wire.left, sec.idstr).toBe(0);
      for (const lengths of ["auto", "definite"] as const) {
        const ber = saveBer(sec.vmsd, wire.s, lengths);
        const { s, error } = loadBer(sec.vmsd, ber);
        expect(error, sec.idstr).toBeUndefined();
        expect(toSpacedHex(saveWire(sec.vmsd, s)), `${sec.idstr} (${lengths})`).toBe(toSpacedHex(sec.payload));
      }
    }
  });
});

describe("the point of it: a changed field type", () => {
  // Source: uint32 x then uint16 y. Destination: the types swapped.
  const src: VMStateDescription = { name: "dev", version: 1, fields: [F.uint32("x"), F.uint16("y")] };
  const dst: VMStateDescription = { name: "dev", version: 1, fields: [F.uint16("x"), F.uint32("y")] };
  const s = { x: 0x00010002, y: 0x0003 };

  it("the QEMU wire visitor loads WITHOUT error, with wrong values", () => {
    const wire = saveWire(src, s);
    expect(toSpacedHex(wire)).toBe("00 01 00 02 00 03");
    const { s: got, error, left } = loadWire(dst, wire);
    expect(error).toBeUndefined();
    expect(left).toBe(0);
    expect(got).toEqual({ x: 0x0001, y: 0x00020003 });
    expect(got).not.toEqual(s);
  });

  it("the BER visitor fails and names the field", () => {
    const e = loadFails(dst, saveBer(src, s));
    expect(e.code).toBe("MISMATCH");
    expect(e.path).toBe("dev.x");
    expect(e.detail).toBe("stream has uint32, this side expects uint16");
    expect(e.message).toMatch(/field dev\.x\): stream has uint32, this side expects uint16$/);
  });
});

describe("every mismatch is reported with its path", () => {
  const base: VMStateDescription = {
    name: "i8259",
    version: 2,
    minimumVersion: 1,
    fields: [F.uint8("last_irr"), F.int16("irr"), F.uint16("imr"), F.array("elcr", "uint8", 4), F.struct("pci", pci), F.buffer("buf", 8)],
    subsections: [{ name: "i8259/sub", version: 1, fields: [F.uint8("s")] }],
  };
  const s: State = { last_irr: 1, irr: -2, imr: 3, elcr: [1, 2, 3, 4], pci: { config: new Uint8Array(16), irq: [0, 0, 0, 0] }, buf: new Uint8Array(8), s: 5 };
  const bytes = saveBer(base, s);
  const replace = (i: number, f: Field): VMStateDescription =>
    withFields(
      base,
      base.fields.map((x, k) => (k === i ? f : x)),
    );

  it("base loads cleanly", () => {
    expect(loadBer(base, bytes).error).toBeUndefined();
  });

  it.each([
    ["changed type", 1, F.uint8("irr"), "i8259.irr", "stream has int16, this side expects uint8"],
    ["changed signedness", 1, F.uint16("irr"), "i8259.irr", "stream has int16, this side expects uint16"],
    ["changed width (uint16 -> uint32)", 2, F.uint32("imr"), "i8259.imr", "stream has uint16, this side expects uint32"],
    ["scalar -> float", 2, F.float32("imr"), "i8259.imr", "stream has uint16, this side expects float32"],
    ["scalar -> struct", 2, F.struct("imr", elem), "i8259.imr", "stream has uint16, this side expects struct elem"],
    ["struct -> scalar", 4, F.uint8("pci"), "i8259.pci", "stream has struct PCIDevice, this side expects uint8"],
    ["array -> list", 3, F.qtailq("elcr", elem), "i8259.elcr", "stream has array, this side expects list"],
    ["array length", 3, F.array("elcr", "uint8", 3), "i8259.elcr", "stream has 4 elements, this side expects 3"],
    ["array element type", 3, F.array("elcr", "int8", 4), "i8259.elcr(4)(1).[0]", "stream has uint8, this side expects int8"],
    ["buffer size", 5, F.buffer("buf", 9), "i8259.buf", "stream has 8 bytes, this side expects 9"],
    ["struct renamed", 4, F.struct("pci", { ...pci, name: "PCIDev" }), "i8259.pci", "stream has struct PCIDevice, this side expects struct PCIDev"],
    ["nested struct version", 4, F.struct("pci", { ...pci, version: 3 }), "i8259.pci", "stream has PCIDevice version 2, this side expects version 3"],
    [
      "nested field type",
      4,
      F.struct("pci", withFields(pci, [pci.fields[0]!, F.array("irq", "uint32", 4)])),
      "i8259.PCIDevice.irq(4)(4).[0]",
      "stream has int32, this side expects uint32",
    ],
  ] as const)("%s", (_what, i, f, path, detail) => {
    const e = loadFails(replace(i, f as Field), bytes);
    expect(e.code).toBe("MISMATCH");
    expect(e.path).toBe(path);
    expect(e.detail).toBe(detail);
  });

  it("missing field: this side expects a field the stream does not have", () => {
    const e = loadFails(withFields(base, [...base.fields.slice(0, 2), F.uint8("isr"), ...base.fields.slice(2)]), bytes);
    expect([e.code, e.path, e.summary]).toEqual(["MISMATCH", "i8259.isr", "field isr missing from the stream"]);
    expect(e.detail).toBe("this side expects uint8, the stream has field imr here");
    const atEnd = loadFails(withFields(base, [...base.fields, F.uint8("isr")]), bytes);
    expect([atEnd.code, atEnd.path]).toEqual(["MISMATCH", "i8259.isr"]);
    expect(atEnd.detail).toMatch(/no more fields/);
  });

  it("extra field: the stream has a field this side does not", () => {
    const e = loadFails(
      withFields(
        base,
        base.fields.filter((f) => f.name !== "irr"),
      ),
      bytes,
    );
    expect([e.code, e.path, e.summary]).toEqual(["MISMATCH", "i8259.irr", "unexpected field irr"]);
    const last = loadFails(withFields(base, base.fields.slice(0, -1)), bytes);
    expect([last.code, last.path, last.summary]).toEqual(["MISMATCH", "i8259.buf", "unexpected field buf"]);
    const nested = loadFails(replace(4, F.struct("pci", withFields(pci, [pci.fields[0]!]))), bytes);
    expect([nested.code, nested.path]).toEqual(["MISMATCH", "i8259.PCIDevice.irq"]);
  });

  it("renamed field", () => {
    const e = loadFails(replace(2, F.uint16("imr2")), bytes);
    expect([e.code, e.path]).toEqual(["MISMATCH", "i8259.imr2"]);
    expect(e.detail).toBe("this side expects uint16, the stream has field imr here");
  });

  it("a gated field present on one side only", () => {
    // Stream has imr; this side's version gate leaves it out (the gate says version 3 > 2).
    const gatedOut = loadFails(replace(2, F.uint16("imr", { version: 3 })), bytes);
    expect([gatedOut.code, gatedOut.path, gatedOut.summary]).toEqual(["MISMATCH", "i8259.imr", "unexpected field imr"]);
    // This side's test gate includes a field the stream does not have.
    const gatedIn = loadFails(withFields(base, [...base.fields.slice(0, 2), F.uint8("isr", { test: () => true }), ...base.fields.slice(2)]), bytes);
    expect([gatedIn.code, gatedIn.path, gatedIn.summary]).toEqual(["MISMATCH", "i8259.isr", "field isr missing from the stream"]);
  });

  it("gate decisions travel: a field the sender's gate left out, duplicate names, unknown gated-out fields", () => {
    // The sender's test gate leaves `isr` out; this side's includes it.
    const src = withFields(base, [...base.fields.slice(0, 2), F.uint8("isr", { test: () => false }), ...base.fields.slice(2)]);
    const out = saveBer(src, s);
    const e = loadFails(withFields(base, [...base.fields.slice(0, 2), F.uint8("isr", { test: () => true }), ...base.fields.slice(2)]), out);
    expect([e.code, e.path, e.summary]).toEqual(["MISMATCH", "i8259.isr", "field isr left out by the stream"]);
    // A field this side does not know at all, left out by the sender: nothing to read, loads.
    expect(loadBer(base, out).error).toBeUndefined();
    // Same name twice (QEMU's VMSTATE_UNUSED, fw_cfg's two cur_offset), the first gated out.
    const dup: VMStateDescription = {
      name: "d",
      version: 2,
      fields: [
        F.unused(2, { version: 3 }),
        F.unused(4),
        { kind: "scalar", name: "c", key: "c0", type: "uint16", test: () => false },
        { kind: "scalar", name: "c", key: "c1", type: "uint32" },
      ],
    };
    const { s: got, error } = loadBer(dup, saveBer(dup, { c0: 1, c1: 70000 }));
    expect(error).toBeUndefined();
    expect(got).toEqual({ c1: 70000 });
  });

  it("version too new, too old (BAD_VERSION from the engine) and a version the caller claims wrongly", () => {
    const tooNew = loadFails({ ...base, version: 1 }, bytes);
    expect(tooNew.code).toBe("BAD_VERSION");
    expect(tooNew.message).toMatch(/i8259: version 2 is too new/);
    const tooOld = loadFails({ ...base, version: 5, minimumVersion: 3 }, bytes);
    expect(tooOld.code).toBe("BAD_VERSION");
    expect(tooOld.message).toMatch(/i8259: version 2 is too old/);
    // A caller that loads at another version than the stream's (a section header saying 1).
    const v = new BerInputVisitor(bytes);
    loadState(v, base, {}, 1);
    expect([v.error?.code, v.error?.detail]).toEqual(["MISMATCH", "stream has i8259 version 2, this side expects version 1"]);
  });

  it("root struct of another description", () => {
    const e = loadFails({ ...base, name: "i8254" }, bytes);
    expect([e.code, e.detail]).toEqual(["MISMATCH", "stream has struct i8259, this side expects struct i8254"]);
  });

  it("renamed subsection (UNKNOWN_SUBSECTION) and subsection version", () => {
    const renamed = loadFails({ ...base, subsections: [{ name: "i8259/sub2", version: 1, fields: [F.uint8("s")] }] }, bytes);
    expect(renamed.code).toBe("UNKNOWN_SUBSECTION");
    expect(renamed.path).toBe("i8259");
    expect(renamed.message).toMatch(/unknown subsection i8259\/sub/);
    const newer = loadFails({ ...base, subsections: [{ name: "i8259/sub", version: 0, fields: [F.uint8("s")] }] }, bytes);
    expect(newer.code).toBe("BAD_VERSION");
    const changed = loadFails({ ...base, subsections: [{ name: "i8259/sub", version: 1, fields: [F.uint16("s")] }] }, bytes);
    expect([changed.code, changed.path]).toEqual(["MISMATCH", "i8259.i8259/sub.s"]);
  });

  it("a stream subsection this side never reads (a struct without subsection handling)", () => {
    // gtree nodes are structs the engine closes without asking for subsections: craft a node with one.
    const w = new BerWriter();
    const out = new BerOutputVisitor({ writer: w });
    out.startStruct("root", "gtree node", 0);
    out.uint8("k", 1);
    out.startSubsection("gtree node/x", 1);
    out.endSubsection();
    out.endStruct();
    const inp = new BerInputVisitor(w.finish());
    inp.startStruct("root", "gtree node", 0);
    expect(inp.uint8("k", 0)).toBe(1);
    inp.endStruct();
    expect([inp.error?.code, inp.error?.summary]).toEqual(["MISMATCH", "unexpected subsection gtree node/x"]);
  });

  it("value out of range for its type (BAD_VALUE)", () => {
    const w = new BerWriter();
    w.fork(0x72);
    w.utf8("d");
    w.int(1);
    w.fork(0x30);
    w.fork(0x30);
    w.utf8("a");
    w.int(300, 0x84); // [4] uint8 holding 300
    w.join();
    w.join();
    w.join();
    const e = loadFails({ name: "d", version: 1, fields: [F.uint8("a")] }, w.finish());
    expect([e.code, e.path, e.summary]).toEqual(["BAD_VALUE", "d.a", "value out of range for uint8"]);
  });

  it("malformed and truncated BER fail with the offset and the path", () => {
    const cut = bytes.subarray(0, 30);
    const e = loadFails(base, cut);
    expect(e.code).toBe("EOF");
    expect(e.offset).toBeGreaterThan(0);
    expect(e.path).toMatch(/^i8259/);
    const garbage = Uint8Array.from(bytes);
    garbage[garbage.indexOf(0x84)] = 0x1f; // a uint8 tag becomes a high-tag-number identifier
    expect(loadFails(base, garbage).code).toMatch(/BAD_VALUE|EOF|MISMATCH|LIMIT/);
  });

  it("after the first error, visits return their argument", () => {
    const v = new BerInputVisitor(saveBer(base, s));
    loadState(v, replace(1, F.uint8("irr")), {}, 2);
    expect(v.error?.code).toBe("MISMATCH");
    expect(v.uint32("x", 77)).toBe(77);
    expect(v.int64("y", 5n)).toBe(5n);
    expect(v.optional("z", true)).toBe(true);
    expect(v.nextSubsection("i8259")).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Properties over generated descriptions (tests/helpers/gen-vmstate.ts)

describe("properties", () => {
  it("BER out -> in rebuilds every generated state (all length forms)", () => {
    fc.assert(
      fc.property(arbVmsdAndState(), fc.constantFrom(...LENGTHS), ({ vmsd, state }, lengths) => {
        const bytes = saveBer(vmsd, state, lengths);
        const { s, error } = loadBer(vmsd, bytes);
        expect(error).toBeUndefined();
        // Same state, hence the same BER and the same wire bytes.
        expect(toSpacedHex(saveBer(vmsd, s, lengths))).toBe(toSpacedHex(bytes));
        expect(toSpacedHex(saveWire(vmsd, s))).toBe(toSpacedHex(saveWire(vmsd, state)));
      }),
      { numRuns: 300 },
    );
  });

  it("QEMU wire -> BER -> wire gives the same bytes for every generated state", () => {
    fc.assert(
      fc.property(arbVmsdAndState(), ({ vmsd, state }) => {
        const wire = saveWire(vmsd, state);
        const w = loadWire(vmsd, wire, structuredClone(state));
        expect(w.error).toBeUndefined();
        expect(w.left).toBe(0);
        const { s, error } = loadBer(vmsd, saveBer(vmsd, w.s));
        expect(error).toBeUndefined();
        expect(toSpacedHex(saveWire(vmsd, s))).toBe(toSpacedHex(wire));
      }),
      { numRuns: 300 },
    );
  });

  interface Mutation {
    what: string;
    dest: VMStateDescription;
    /** The path the error must name (exactly, or as the prefix of an element path `path(`). */
    path?: string;
    /** For root version errors: text the message must contain. */
    message?: string;
    codes: readonly string[];
  }

  /** Mutations of the destination description at the root, on fields the stream holds. */
  function mutations(vmsd: VMStateDescription, bytes: Uint8Array): Mutation[] {
    const inStream = new Set(berRootFieldNames(bytes));
    const R = vmsd.name;
    const out: Mutation[] = [];
    const at = (i: number, f: Field | undefined): VMStateDescription =>
      withFields(vmsd, f ? vmsd.fields.map((x, k) => (k === i ? f : x)) : vmsd.fields.filter((_, k) => k !== i));
    vmsd.fields.forEach((f, i) => {
      if (f.kind === "validate" || f.name === "unused" || !inStream.has(f.name)) return;
      const p = `${R}.${f.name}`;
      // A GTree is two fields in the stream: its node count "nnodes", then the nodes.
      out.push({ what: `drop ${f.name}`, dest: at(i, undefined), path: f.kind === "gtree" ? `${R}.nnodes` : p, codes: ["MISMATCH"] });
      out.push({
        what: `add before ${f.name}`,
        dest: withFields(vmsd, [...vmsd.fields.slice(0, i), F.uint8("zadded"), ...vmsd.fields.slice(i)]),
        path: `${R}.zadded`,
        codes: ["MISMATCH"],
      });
      const gate = { ...(f.version !== undefined ? { version: f.version } : {}), ...(f.test ? { test: f.test } : {}) };
      if (f.kind === "scalar") {
        for (const t of SCALAR_TYPES) {
          if (t !== f.type)
            out.push({ what: `${f.name}: ${f.type} -> ${t}`, dest: at(i, { kind: "scalar", name: f.name, type: t, ...gate }), path: p, codes: ["MISMATCH"] });
        }
      }
      if (f.kind === "array" && typeof f.count === "number") {
        out.push({ what: `${f.name}: count ${f.count} -> ${f.count + 1}`, dest: at(i, { ...f, count: f.count + 1 }), path: p, codes: ["MISMATCH"] });
        if (f.count > 0) {
          const t = f.type === "uint32" ? "int32" : "uint32";
          out.push({ what: `${f.name}: elements ${f.type} -> ${t}`, dest: at(i, { ...f, type: t }), path: `${p}(`, codes: ["MISMATCH"] });
        }
      }
      if (f.kind === "struct") {
        const bumped = { ...f.vmsd, version: f.vmsd.version + 1 };
        const g: Field = f.structVersion !== undefined ? { ...f, vmsd: bumped, structVersion: f.structVersion + 1 } : { ...f, vmsd: bumped };
        out.push({ what: `${f.name}: struct version +1`, dest: at(i, g), path: p, codes: ["MISMATCH"] });
      }
    });
    out.push({ what: "add at the end", dest: withFields(vmsd, [...vmsd.fields, F.uint8("zadded")]), path: `${R}.zadded`, codes: ["MISMATCH"] });
    if (vmsd.version > 0)
      out.push({
        what: "root version too new",
        dest: { ...vmsd, version: vmsd.version - 1 },
        message: `${R}: version ${vmsd.version} is too new`,
        codes: ["BAD_VERSION"],
      });
    out.push({
      what: "root version too old",
      dest: { ...vmsd, version: vmsd.version + 1, minimumVersion: vmsd.version + 1 },
      message: `${R}: version ${vmsd.version} is too old`,
      codes: ["BAD_VERSION"],
    });
    return out;
  }

  it("BER input rejects every generated mismatch with the right path", () => {
    let checked = 0;
    fc.assert(
      fc.property(arbVmsdAndState(), fc.nat(), fc.constantFrom(...LENGTHS), ({ vmsd, state }, pick, lengths) => {
        const bytes = saveBer(vmsd, state, lengths);
        const ms = mutations(vmsd, bytes);
        const m = ms[pick % ms.length]!;
        const { error } = loadBer(m.dest, bytes);
        expect(error, m.what).toBeDefined();
        expect(m.codes, `${m.what}: ${error!.message}`).toContain(error!.code);
        if (m.path !== undefined) {
          const ok = m.path.endsWith("(") ? error!.path!.startsWith(m.path) : error!.path === m.path;
          expect(ok, `${m.what}: path ${error!.path}, expected ${m.path} (${error!.message})`).toBe(true);
        }
        if (m.message !== undefined) expect(error!.message).toContain(m.message);
        checked++;
      }),
      { numRuns: 500 },
    );
    expect(checked).toBeGreaterThan(0);
  });

  it("every mutation of a rich description is caught (exhaustive over its mutations)", () => {
    const s = devState();
    const bytes = saveBer(dev, s);
    const ms = mutations(dev, bytes);
    expect(ms.length).toBeGreaterThan(100);
    for (const m of ms) {
      const { error } = loadBer(m.dest, bytes);
      expect(error, m.what).toBeDefined();
      expect(m.codes, `${m.what}: ${error!.message}`).toContain(error!.code);
      if (m.path !== undefined) {
        const ok = m.path.endsWith("(") ? error!.path!.startsWith(m.path) : error!.path === m.path;
        expect(ok, `${m.what}: path ${error!.path}, expected ${m.path}`).toBe(true);
      }
    }
  });
});
