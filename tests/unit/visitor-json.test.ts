import { describe, expect, it } from "vitest";
import { fromHex, JsonInputVisitor, type JsonStructNode, JsonVisitor, toHex } from "../../src/visitor/json.js";
import { loadState, saveState } from "../../src/vmstate/engine.js";
import { F } from "../../src/vmstate/fields.js";
import { fromJSON, toJSON } from "../../src/vmstate/symmetry.js";
import type { State, VMStateDescription } from "../../src/vmstate/types.js";

const PCIDevice: VMStateDescription = {
  name: "PCIDevice",
  version: 2,
  fields: [F.int32Le("version_id"), F.buffer("config", 8, { info: "pci config" })],
};

const elem: VMStateDescription = { name: "req", version: 1, fields: [F.uint32("tag")] };

const dev: VMStateDescription = {
  name: "dev",
  version: 3,
  fields: [
    F.struct("pci", PCIDevice),
    F.int8("i8"),
    F.uint64("u64"),
    F.int64("i64"),
    F.bool("on"),
    F.float32("f32"),
    F.cpuDouble("fpr"),
    F.array("levels", "int32", 2, { version: 3 }),
    F.uint8("gated", { version: 4 }),
    F.uint32("cur_offset", { key: "off1" }),
    F.uint32("cur_offset", { key: "off2" }),
    F.structArray("reqs", elem, 2),
    F.pointerArray("ptrs", "uint16", 3),
    F.qtailq("queue", elem),
    F.bitmap("bm", 64),
  ],
  subsections: [
    {
      name: "dev/extra",
      version: 2,
      needed: (s) => s.extra !== undefined,
      fields: [F.uint16("extra")],
      subsections: [{ name: "dev/extra/more", version: 1, fields: [F.bool("more")] }],
    },
    { name: "dev/never", version: 1, needed: () => false, fields: [F.uint8("never")] },
  ],
};

function devState(): State {
  return {
    pci: { version_id: 2, config: new Uint8Array([0x86, 0x80, 0, 0, 0, 0, 0, 0xff]) },
    i8: -3,
    u64: 0xffffffffffffffffn,
    i64: -(1n << 63n),
    on: true,
    f32: 0.5,
    fpr: Infinity,
    levels: [1, -1],
    off1: 10,
    off2: 20,
    reqs: [{ tag: 1 }, { tag: 2 }],
    ptrs: [7, null, 9],
    queue: [{ tag: 5 }],
    bm: [0x8000000000000001n],
    extra: 0x1234,
    more: false,
  };
}

describe("JsonVisitor: the values shape", () => {
  it("structs as {vmsd, version, fields, subsections}, 64-bit as decimal strings, buffers as hex", () => {
    const j = toJSON(dev, devState());
    expect(j).toEqual({
      vmsd: "dev",
      version: 3,
      fields: {
        pci: { vmsd: "PCIDevice", version: 2, fields: { version_id: 2, config: "86800000000000ff" } },
        i8: -3,
        u64: "18446744073709551615",
        i64: "-9223372036854775808",
        on: true,
        f32: 0.5,
        fpr: "Infinity",
        levels: [1, -1],
        cur_offset: 10,
        "cur_offset[1]": 20,
        reqs: [
          { vmsd: "req", version: 1, fields: { tag: 1 } },
          { vmsd: "req", version: 1, fields: { tag: 2 } },
        ],
        ptrs: [7, null, 9],
        queue: [{ vmsd: "req", version: 1, fields: { tag: 5 } }],
        bm: ["9223372036854775809"],
      },
      subsections: {
        "dev/extra": { version: 2, fields: { extra: 0x1234 }, subsections: { "dev/extra/more": { version: 1, fields: { more: false } } } },
      },
    });
    // Plain JSON: stringify and parse give the same tree.
    expect(JSON.parse(JSON.stringify(j))).toEqual(j);
  });

  it("typed mode wraps each field with its type (and info), arrays with their element type and size", () => {
    const j = toJSON(dev, devState(), { mode: "typed" });
    expect(j.fields.pci).toEqual({
      vmsd: "PCIDevice",
      version: 2,
      fields: {
        version_id: { type: "int32", info: "int32 le", value: 2 },
        config: { type: "buffer", info: "pci config", size: 8, value: "86800000000000ff" },
      },
    });
    expect(j.fields.u64).toEqual({ type: "uint64", value: "18446744073709551615" });
    expect(j.fields.fpr).toEqual({ type: "float64", info: "CPU_Double_U", value: "Infinity" });
    expect(j.fields.levels).toEqual({ type: "array", elemType: "int32", elemSize: 4, value: [1, -1] });
    expect(j.fields.ptrs).toEqual({ type: "array", elemType: "uint16", elemSize: 2, value: [7, null, 9] });
    expect(j.fields.queue).toEqual({
      type: "array",
      elemType: "qtailq",
      elemSize: 0,
      value: [{ vmsd: "req", version: 1, fields: { tag: { type: "uint32", value: 5 } } }],
    });
    expect(j.fields.bm).toEqual({ type: "array", elemType: "bitmap", elemSize: 8, value: ["9223372036854775809"] });
  });

  it("strings and NaN", () => {
    const v = new JsonVisitor();
    v.startStruct("x", "x", 1);
    v.str("s", "hello");
    v.float64("n", NaN);
    v.float32("m", -Infinity);
    v.endStruct();
    expect(v.root).toEqual({ vmsd: "x", version: 1, fields: { s: "hello", n: "NaN", m: "-Infinity" } });
  });

  it("hex helpers", () => {
    expect(toHex(new Uint8Array([0, 1, 0xab]))).toBe("0001ab");
    expect(fromHex("0001AB")).toEqual(new Uint8Array([0, 1, 0xab]));
    expect(fromHex("abc")).toBeUndefined();
    expect(fromHex("zz")).toBeUndefined();
  });
});

describe("JsonInputVisitor: JSON round-trips", () => {
  for (const mode of ["values", "typed"] as const) {
    it(`reads back what JsonVisitor wrote (${mode})`, () => {
      const s = devState();
      const j = toJSON(dev, s, { mode });
      const back = fromJSON(dev, JSON.parse(JSON.stringify(j)) as JsonStructNode);
      expect(back).toEqual(s);
      expect(toJSON(dev, back, { mode })).toEqual(j);
    });
  }

  it("checks _EQUAL fields against the target", () => {
    const d: VMStateDescription = { name: "d", version: 1, fields: [F.uint32Equal("n")] };
    expect(() => fromJSON(d, { vmsd: "d", version: 1, fields: { n: 3 } }, { n: 4 })).toThrow(/value differs/);
    expect(fromJSON(d, { vmsd: "d", version: 1, fields: { n: 4 } }, { n: 4 })).toEqual({ n: 4 });
  });

  const small: VMStateDescription = {
    name: "s",
    version: 2,
    fields: [F.uint8("a"), F.array("arr", "uint16", 2), F.uint8("g", { test: (s) => s.a === 1 }), F.buffer("b", 2)],
  };
  const good = (): JsonStructNode => ({ vmsd: "s", version: 2, fields: { a: 1, arr: [1, 2], g: 5, b: "0102" } });

  it("loads a well-formed tree", () => {
    expect(fromJSON(small, good())).toEqual({ a: 1, arr: [1, 2], g: 5, b: new Uint8Array([1, 2]) });
  });

  const bad: [string, (j: JsonStructNode) => void, RegExp, string][] = [
    ["a missing field", (j) => delete j.fields.a, /field missing from the JSON.*field s\.a/, "MISMATCH"],
    ["a value out of range", (j) => (j.fields.a = 256), /not a uint8.*field s\.a/, "RANGE"],
    ["a fraction", (j) => (j.fields.a = 1.5), /not a uint8/, "RANGE"],
    ["an array of the wrong length", (j) => (j.fields.arr = [1]), /array length differs.*field s\.arr/, "MISMATCH"],
    ["a gated field present where the gate says absent", (j) => ((j.fields.a = 0), (j.fields.g = 1)), /present in the JSON but absent here/, "MISMATCH"],
    ["a gated field absent where the gate says present", (j) => delete j.fields.g, /field missing from the JSON.*field s\.g/, "MISMATCH"],
    ["a bad hex buffer", (j) => (j.fields.b = "zz"), /not a hex string/, "BAD_VALUE"],
    ["a buffer of the wrong length", (j) => (j.fields.b = "010203"), /buffer length differs/, "MISMATCH"],
    ["another struct", (j) => (j.vmsd = "t"), /struct differs/, "MISMATCH"],
    ["a newer version", (j) => (j.version = 3), /too new/, "BAD_VERSION"],
  ];
  for (const [what, spoil, msg, code] of bad) {
    it(`reports ${what}`, () => {
      const j = good();
      spoil(j);
      const v = new JsonInputVisitor(j);
      loadState(v, small, {}, j.version);
      expect(v.error?.message).toMatch(msg);
      expect(v.error?.code).toBe(code);
    });
  }

  it("reports a nested struct of another version and a 64-bit value out of range", () => {
    const j = toJSON(dev, devState());
    (j.fields.pci as unknown as JsonStructNode).version = 1;
    expect(() => fromJSON(dev, j)).toThrow(/PCIDevice: version differs/);
    const k = toJSON(dev, devState());
    k.fields.u64 = "18446744073709551616";
    expect(() => fromJSON(dev, k)).toThrow(/not a uint64/);
    k.fields.u64 = "-1";
    expect(() => fromJSON(dev, k)).toThrow(/not a uint64/);
  });

  it("an unknown subsection in the JSON fails like on the wire", () => {
    const j = toJSON(dev, devState());
    j.subsections!["dev/bogus"] = { version: 1, fields: {} };
    expect(() => fromJSON(dev, j)).toThrow(/unknown subsection dev\/bogus/);
  });

  it("keys repeated names by occurrence in the description, gated-off occurrences included", () => {
    const d: VMStateDescription = {
      name: "fw_cfg",
      version: 2,
      fields: [
        F.uint32("cur_offset", { key: "a", version: 2 }),
        F.uint32("cur_offset", { key: "b", test: (s) => s.on }),
        F.bool("on"),
        F.uint32("cur_offset", { key: "c" }),
      ],
    };
    const j = toJSON(d, { a: 1, b: 2, on: false, c: 3 });
    expect(j.fields).toEqual({ cur_offset: 1, on: false, "cur_offset[2]": 3 });
    expect(fromJSON(d, j)).toEqual({ a: 1, on: false, c: 3 });
  });

  it("a zero-length field shows as an empty buffer (QEMU describes it too) and loads back without creating state", () => {
    const d: VMStateDescription = { name: "z", version: 2, fields: [F.uint8("n"), F.buffer("b", { field: "n" }, { version: 2 })] };
    const j = toJSON(d, { n: 0 });
    expect(j.fields).toEqual({ n: 0, b: "" });
    expect(fromJSON(d, j)).toEqual({ n: 0 });
  });

  it("is an input visitor that the engine drives like the wire one", () => {
    const v = new JsonVisitor();
    saveState(v, small, { a: 2, arr: [3, 4], b: new Uint8Array([9, 9]) });
    const back: State = {};
    const iv = new JsonInputVisitor(v.root);
    expect(iv.direction).toBe("input");
    loadState(iv, small, back, 2);
    expect(iv.error).toBeUndefined();
    expect(back).toEqual({ a: 2, arr: [3, 4], b: new Uint8Array([9, 9]) });
  });
});
