// The AnalyzeVisitor's rendering rules (analyze-migration.py's readers), the analyze view of
// registered descriptions (opaque regions, `[k]` names), the document builder and Python's json
// text format.
import { describe, expect, it } from "vitest";
import {
  AnalyzeDocument,
  analyzeDevice,
  analyzeStateValue,
  analyzeToJson,
  analyzeView,
  formatAnalyzeJson,
  pyQuote,
  ramSectionValue,
} from "../../src/analyze/analyze-json.js";
import { ByteReader } from "../../src/io/reader.js";
import { ByteWriter } from "../../src/io/writer.js";
import { AnalyzeVisitor, analyzeBytes, analyzeInt } from "../../src/visitor/analyze.js";
import { WireInputVisitor, WireOutputVisitor } from "../../src/visitor/wire.js";
import { fwCfg, pciDevice } from "../../src/vmstate/devices/index.js";
import { loadState, saveState } from "../../src/vmstate/engine.js";
import { F } from "../../src/vmstate/fields.js";
import type { State, VMStateDescription } from "../../src/vmstate/types.js";

function bytesOf(vmsd: VMStateDescription, s: State): Uint8Array {
  const w = new ByteWriter();
  const v = new WireOutputVisitor(w);
  saveState(v, vmsd, s);
  expect(v.error).toBeUndefined();
  return w.concat();
}

/** Load the bytes of `s` back through the AnalyzeVisitor. */
function render(vmsd: VMStateDescription, s: State): unknown {
  const { value } = analyzeDevice(new ByteReader(bytesOf(vmsd, s), { sticky: true }), vmsd, vmsd.version);
  // The output direction renders the same.
  expect(analyzeStateValue(vmsd, s)).toEqual(value);
  return analyzeToJson(value);
}

describe("the script's readers", () => {
  it("ints: zero-padded to twice the size, negative signed values with ' (-n)'", () => {
    expect(analyzeInt("unsigned", 4, 0xff00n)).toBe("0x0000ff00");
    expect(analyzeInt("signed", 4, 0xffffffffn)).toBe("0xffffffff (-1)");
    expect(analyzeInt("signed", 8, 1n << 63n)).toBe("0x8000000000000000 (-9223372036854775808)");
    expect(analyzeInt("signed", 1, 0x7fn)).toBe("0x7f");
    expect(analyzeInt("unsigned", 8, 0xffffffffffffffffn)).toBe("0xffffffffffffffff");
    expect(analyzeBytes("uint8 equal", new Uint8Array([0xfe]))).toBe("0xfe (-2)");
    expect(analyzeBytes("uint32 equal", new Uint8Array([0xff, 0xff, 0xff, 0xfe]))).toBe("0xfffffffe");
    expect(analyzeBytes("int64 equal", new Uint8Array(8).fill(0xff))).toBe("0xffffffffffffffff (-1)");
    expect(analyzeBytes("bool", new Uint8Array([2]))).toBe(true);
    expect(analyzeBytes("timer", new Uint8Array(8).fill(0xff))).toBe("ff ff ff ff ff ff ff ff");
    expect(analyzeBytes("buffer", new Uint8Array(0))).toBe("");
    expect(analyzeBytes("some device type", new Uint8Array([0, 0xa]))).toBe("00 0a");
  });

  it("a walk: scalars by their QEMU type name, arrays as lists, one-element arrays as scalars, empty arrays absent", () => {
    const inner: VMStateDescription = { name: "in", version: 1, fields: [F.int8("x")] };
    const d: VMStateDescription = {
      name: "d",
      version: 1,
      fields: [
        F.bool("flag"),
        F.int32("neg"),
        F.uint8Equal("ue"),
        F.int32Le("le"),
        F.timer("t"),
        F.cpuDouble("dbl"),
        F.float32("f32"),
        F.array("arr", "uint16", 3),
        F.array("one", "uint16", 1),
        F.array("none", "uint16", 0),
        F.structArray("structs", inner, 2),
        F.structArray("single", inner, 1),
        F.unused(2),
        F.buffer("cfg", 3, { info: "pci config" }),
      ],
    };
    const s: State = {
      flag: true,
      neg: -5,
      ue: 0xff,
      le: 3,
      t: -1n,
      dbl: 1.0,
      f32: -2,
      arr: [1, 2, 3],
      one: [7],
      structs: [{ x: -1 }, { x: 1 }],
      single: [{ x: 2 }],
      cfg: new Uint8Array([0x86, 0x80, 0]),
    };
    expect(render(d, s)).toEqual({
      flag: true,
      neg: "0xfffffffb (-5)",
      ue: "0xff (-1)",
      le: "0x00000003",
      t: "ff ff ff ff ff ff ff ff",
      dbl: "3f f0 00 00 00 00 00 00",
      f32: "c0 00 00 00",
      arr: ["0x0001", "0x0002", "0x0003"],
      one: "0x0007",
      structs: [{ x: "0xff (-1)" }, { x: "0x01" }],
      single: { x: "0x02" },
      unused: "00 00",
      cfg: "86 80 00",
    });
  });

  it("subsections are keys of their struct, nested ones inside them", () => {
    const d: VMStateDescription = {
      name: "d",
      version: 1,
      fields: [F.uint8("a")],
      subsections: [{ name: "d/s", version: 1, fields: [F.uint8("b")], subsections: [{ name: "d/s/t", version: 2, fields: [F.uint16("c")] }] }],
    };
    expect(render(d, { a: 1, b: 2, c: 3 })).toEqual({ a: "0x01", "d/s": { b: "0x02", "d/s/t": { c: "0x0003" } } });
  });
});

describe("analyzeView of registered descriptions", () => {
  it("renames duplicated names as the vmdesc does, keeping the state keys", () => {
    const view = analyzeView(fwCfg);
    expect(view.fields.map((f) => f.name)).toContain("cur_offset[1]");
    expect(analyzeView(fwCfg)).toBe(view);
    const pci = analyzeView(pciDevice);
    expect(pci.fields.filter((f) => f.kind === "buffer").map((f) => [f.name, f.key])).toEqual([
      ["config[0]", "config"],
      ["config[1]", "config"],
    ]);
  });

  it("prints opaque types as one blob of their wire bytes: tmp, custom, bitmap, lists, gtree, vstruct", () => {
    const elem: VMStateDescription = { name: "e", version: 1, fields: [F.uint16("v")] };
    const d: VMStateDescription = {
      name: "d",
      version: 1,
      fields: [
        F.uint8("n"),
        F.tmp(
          { name: "t", version: 0, fields: [F.uint32("w")] },
          (p) => ({ w: p.w ?? 0 }),
          (p, t) => void (p.w = t.w),
        ),
        F.bitmap("bits", { field: "n" }),
        F.qtailq("q", elem),
        F.gtree("g", elem),
        F.struct("vs", { name: "vv", version: 3, fields: [F.uint8("a", { version: 2 }), F.uint8("b", { version: 3 })] }, { structVersion: 2 }),
        F.custom("irq", "pci irq state", 2, (v, name, value) => {
          const a = (value as number[] | undefined) ?? [0, 0];
          v.startArray(name, 2, 1, "uint8");
          const out = [v.uint8(0, a[0]!), v.uint8(1, a[1]!)];
          v.endArray();
          return out;
        }),
        F.tmp(
          { name: "t2", version: 0, fields: [F.uint8("x")] },
          () => ({ x: 9 }),
          () => undefined,
          { test: () => false },
        ),
        F.uint8("after"),
      ],
    };
    const s: State = { n: 65, w: 0x01020304, bits: [3n, 1n], q: [{ v: 1 }, { v: 2 }], g: [[5n, { v: 6 }]], vs: { a: 7, b: 8 }, irq: [1, 0], after: 0xaa };
    const view = analyzeView(d);
    const bytes = bytesOf(d, s);
    // The view reads the same bytes into the same state as the description itself.
    const { value, state } = analyzeDevice(new ByteReader(bytes, { sticky: true }), view, 1);
    expect(bytesOf(d, state)).toEqual(bytes);
    expect(analyzeToJson(value)).toEqual({
      n: "0x41",
      // Two fields named "tmp" in one list: the vmdesc names them tmp[0] and tmp[1] (absent here).
      "tmp[0]": "01 02 03 04",
      bits: "00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 01",
      q: "01 00 01 01 00 02 00",
      g: "00 00 00 01 01 00 00 00 00 00 00 00 05 00 06 00",
      vs: "07",
      irq: "01 00",
      after: "0xaa",
    });
  });

  it("a NULL entry of an array of pointers prints as the script reads the 1-byte marker", () => {
    const d: VMStateDescription = { name: "d", version: 1, fields: [F.pointerArray("p", "uint32", 3), F.pointerArray("t", "int64", 2, { info: "timer" })] };
    const s = { p: [1, null, 3], t: [null, 5n] };
    const expected = { p: ["0x00000001", "0x30", "0x00000003"], t: ["30", "00 00 00 00 00 00 00 05"] };
    expect(analyzeToJson(analyzeStateValue(analyzeView(d), s))).toEqual(expected);
    // A load decides NULL-ness by the destination's own pointers (QEMU's rule): give it the same ones.
    const v = new AnalyzeVisitor(new WireInputVisitor(new ByteReader(bytesOf(d, s), { sticky: true })));
    loadState(v, analyzeView(d), { p: [0, null, 0], t: [null, 0n] }, 1);
    expect(v.error).toBeUndefined();
    expect(analyzeToJson(v.result!)).toEqual(expected);
  });
});

describe("the document", () => {
  it("keys '<idstr> (<section_id>)' in first-seen order; a repeated section id replaces in place", () => {
    const doc = new AnalyzeDocument();
    doc.ram(2, [
      ["pc.ram", 0x4000000n],
      ["/rom@etc/acpi/rsdp", 4096],
    ]);
    doc.device(0, "timer", new Map([["a", "0x01"]]));
    doc.htab(0x80000000, "spapr/htab");
    doc.device(0, "timer", new Map([["a", "0x02"]]));
    expect(doc.format()).toBe(
      '{\n    "ram (2)": {\n        "section sizes": {\n            "pc.ram": "0x0000000004000000",\n            "/rom@etc/acpi/rsdp": "0x0000000000001000"\n        }\n    },\n    "timer (0)": {\n        "a": "0x02"\n    },\n    "spapr/htab (2147483648)": ""\n}\n',
    );
    expect(analyzeToJson(ramSectionValue([]))).toEqual({ "section sizes": {} });
  });

  it("Python's json text: indent 4, ', ' never (',' + newline), ensure_ascii escapes in lowercase, empty containers", () => {
    const v = new Map<string, never>([
      ['a"b\\c\n\t\u0001\u007f \u00e9 \u{1f600} \u2028' as never, ["x", true, false, [], new Map()] as never],
      ["e", new Map() as never],
    ]);
    expect(formatAnalyzeJson(v as never, { newline: false })).toBe(
      '{\n    "a\\"b\\\\c\\n\\t\\u0001\\u007f \\u00e9 \\ud83d\\ude00 \\u2028": [\n        "x",\n        true,\n        false,\n        [],\n        {}\n    ],\n    "e": {}\n}',
    );
    expect(pyQuote("plain")).toBe('"plain"');
    expect(formatAnalyzeJson({ x: [1, null] })).toBe('{\n    "x": [\n        1,\n        null\n    ]\n}\n');
  });

  it("an AnalyzeVisitor records nothing for a failed walk's tail, and reports the inner error", () => {
    const d: VMStateDescription = { name: "d", version: 1, fields: [F.uint8("a"), F.uint32("b")] };
    expect(() => analyzeDevice(new ByteReader(new Uint8Array([1, 2]), { sticky: true }), d, 1)).toThrow(/end of stream/);
    const v = new AnalyzeVisitor(new WireOutputVisitor(new ByteWriter()));
    saveState(v, d, { a: 1, b: 2 });
    expect(analyzeToJson(v.result!)).toEqual({ a: "0x01", b: "0x00000002" });
  });
});
