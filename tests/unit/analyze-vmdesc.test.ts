// descriptionFromVmdesc: descriptions built from vmdesc entries read exactly the bytes those
// entries describe and render what analyze-migration.py renders (checked against an independent
// port of the script's reader on random vmdescs), the vmdesc's special cases (NULL pointers,
// index runs, one-element lists, zero-size fields, duplicate and hostile names, nested vmsd keys)
// are handled, and malformed entries — random JSON or mutations of real ones — only ever produce
// VmstreamError "BAD_VMDESC" with a path.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { analyzeDevice, formatAnalyzeJson } from "../../src/analyze/analyze-json.js";
import { VmstreamError } from "../../src/io/errors.js";
import { ByteReader } from "../../src/io/reader.js";
import { ByteWriter } from "../../src/io/writer.js";
import { WireInputVisitor, WireOutputVisitor } from "../../src/visitor/wire.js";
import { loadState, saveState } from "../../src/vmstate/engine.js";
import { convertVmdescDevice, descriptionFromVmdesc, descriptionsFromVmdesc, parseVmdesc } from "../../src/vmstate/from-vmdesc.js";
import { prettyPrint } from "../../src/vmstate/symmetry.js";
import type { State, VMStateDescription } from "../../src/vmstate/types.js";
import type { VmdescDevice } from "../../src/vmstate/vmdesc.js";
import { thrownBy } from "../helpers/errors.js";
import { SeededRandom } from "../helpers/random.js";
import { readStream } from "../helpers/stream-sections.js";
import { describedSave, qemuText } from "../helpers/vmdesc-text.js";

// ---------------------------------------------------------------------------------------------
// An independent port of analyze-migration.py's (7.2) VMSDFieldStruct reader, for comparison.

type PyValue = string | boolean | PyValue[] | Map<string, PyValue>;
type Json = Record<string, unknown>;

const PY_SIGNED = ["int8", "int16", "int32", "int64", "int32 equal", "int32 le", "int64 equal", "uint8 equal", "uint16 equal"];
const PY_UNSIGNED = ["uint8", "uint16", "uint32", "uint32 equal", "uint64"];

function pyRead(body: Json, b: Uint8Array, at: { pos: number }): Map<string, PyValue> {
  const data = new Map<string, PyValue>();
  const fields: Json[] = [];
  for (const f of body.fields as Json[]) {
    if (f.array_len === undefined) {
      fields.push(f);
      continue;
    }
    for (let i = 0; i < (f.array_len as number); i++) fields.push({ ...f, array_len: undefined, index: i });
  }
  for (const f of fields) {
    const size = f.size as number;
    let value: PyValue;
    if (f.type === "struct") value = pyRead(f.struct as Json, b, at);
    else {
      const bytes = b.subarray(at.pos, at.pos + size);
      if (bytes.length !== size) throw new Error("short");
      at.pos += size;
      if (f.type === "bool") value = bytes[0] !== 0;
      else if (PY_SIGNED.includes(f.type as string) || PY_UNSIGNED.includes(f.type as string)) {
        let u = 0n;
        for (const x of bytes) u = (u << 8n) | BigInt(x);
        const text = "0x" + u.toString(16).padStart(size * 2, "0");
        const s = BigInt.asIntN(size * 8, u);
        value = PY_SIGNED.includes(f.type as string) && s < 0n ? `${text} (${s})` : text;
      } else value = [...bytes].map((x) => x.toString(16).padStart(2, "0")).join(" ");
    }
    if (f.index !== undefined) {
      const name = f.name as string;
      if (!data.has(name)) data.set(name, []);
      const a = data.get(name) as PyValue[];
      if (a.length !== f.index) throw new Error("internal index of data field unmatched");
      a.push(value);
    } else data.set(f.name as string, value);
  }
  for (const sub of (body.subsections as Json[] | undefined) ?? []) {
    if (b[at.pos++] !== 0x05) throw new Error("Subsection not found");
    const n = b[at.pos++]!;
    const name = new TextDecoder().decode(b.subarray(at.pos, at.pos + n));
    at.pos += n + 4;
    data.set(name, pyRead(sub, b, at));
  }
  return data;
}

// ---------------------------------------------------------------------------------------------
// Random vmdescs and payloads that match them

const SCALAR_WIDTH: Record<string, number> = {
  bool: 1,
  int8: 1,
  uint8: 1,
  int16: 2,
  uint16: 2,
  int32: 4,
  uint32: 4,
  int64: 8,
  uint64: 8,
  "int32 equal": 4,
  "int32 le": 4,
  "uint8 equal": 1,
  "uint16 equal": 2,
  "uint32 equal": 4,
  "int64 equal": 8,
  timer: 8,
};
const BLOB_TYPES = ["buffer", "unused_buffer", "pci config", "CPU_Double_U", "float64", "tmp", "vstruct", "qtailq", "bitmap", "fpr"];

function bodySize(body: Json): number {
  let n = 0;
  for (const f of body.fields as Json[]) n += (f.size as number) * ((f.array_len as number | undefined) ?? 1);
  for (const s of (body.subsections as Json[] | undefined) ?? []) n += 2 + new TextEncoder().encode(s.vmsd_name as string).length + 4 + bodySize(s);
  return n;
}

const NAMES = ["a", "b", "cur_offset[1]", "env.regs", "__proto__", "constructor", "toString", "x y", "é", "tmp"];

function arbBody(vmsdName: string, depth: number): fc.Arbitrary<Json> {
  const elem: fc.Arbitrary<Json> = fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom(...Object.keys(SCALAR_WIDTH)).map((type) => ({ type, size: SCALAR_WIDTH[type]! })) },
    { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...BLOB_TYPES), fc.integer({ min: 0, max: 12 })).map(([type, size]) => ({ type, size })) },
    {
      weight: depth < 2 ? 2 : 0,
      arbitrary: fc
        .string({ minLength: 1, maxLength: 6 })
        .chain((n) => arbBody(n, depth + 1))
        .map((struct) => ({ type: "struct", struct, size: bodySize(struct) })),
    },
  );
  const field = fc.tuple(
    elem,
    fc.oneof(
      fc.constant({ k: "single" }),
      fc.integer({ min: 2, max: 4 }).map((n) => ({ k: "array", n })),
      fc.integer({ min: 1, max: 3 }).map((n) => ({ k: "index", n })),
    ),
  );
  const fields = fc.array(field, { maxLength: 6 }).chain((fs) =>
    fc.constant(
      fs.flatMap(([e, form], i): Json[] => {
        const name = i < NAMES.length ? NAMES[i]! : `f${i}`;
        if (form.k === "single") return [{ name, ...e }];
        if (form.k === "array") return [{ name, array_len: (form as { n: number }).n, ...e }];
        return Array.from({ length: (form as { n: number }).n }, (_, j) => ({ name, index: j, ...e }));
      }),
    ),
  );
  const subs = depth < 2 ? fc.array(fc.constantFrom("a", "bb", "c/d"), { maxLength: 2 }) : fc.constant([] as string[]);
  return fc.tuple(fields, subs).chain(([fs, sn]) => {
    const unique = [...new Set(sn)];
    return fc.tuple(...unique.map((s) => arbBody(`${vmsdName}/${s}`, depth + 1))).map((bodies) => {
      const body: Json = { vmsd_name: vmsdName, version: depth, fields: fs };
      if (bodies.length) body.subsections = bodies.map((b, k) => ({ ...b, vmsd_name: `${vmsdName}/${unique[k]}`, version: k }));
      return body;
    });
  });
}

/** Bytes for a body, field by field, as QEMU would write them (bools 0/1, no 0x05 at a field start). */
function payloadFor(body: Json, rnd: SeededRandom, w: ByteWriter): void {
  for (const f of body.fields as Json[]) {
    for (let i = 0; i < ((f.array_len as number | undefined) ?? 1); i++) {
      if (f.type === "struct") payloadFor(f.struct as Json, rnd, w);
      else if (f.type === "bool") w.u8(rnd.u32() & 1);
      else
        for (let k = 0; k < (f.size as number); k++) {
          const x = rnd.byte();
          w.u8(x === 0x05 ? 0x06 : x);
        }
    }
  }
  for (const s of (body.subsections as Json[] | undefined) ?? []) {
    w.u8(5);
    w.cstr(s.vmsd_name as string);
    w.be32(s.version as number);
    payloadFor(s, rnd, w);
  }
}

/**
 * Make a random body loadable by QEMU's subsection heuristic (§3.8), which the engine mirrors: a
 * struct's subsections are found by peeking 0x05 + a name starting with the struct's name, so a
 * stream where a struct is directly followed by a header with its prefix cannot be loaded by QEMU
 * either. Nested struct names become prefix-free (`~k~`), subsection names `<parent>/<x>`, and
 * every nested struct starts with a uint8 (so the next element never starts with a header).
 */
function loadable(body: Json): Json {
  let k = 0;
  const fix = (b: Json, name: string, nested: boolean): Json => {
    const fields = (b.fields as Json[]).map((f) => (f.type === "struct" ? { ...f, struct: undefined } : f));
    const out: Json = { vmsd_name: name, version: b.version, fields: [] };
    const fs: Json[] = nested ? [{ name: "lead", type: "uint8", size: 1 }] : [];
    const shared = new Map<unknown, Json>();
    (b.fields as Json[]).forEach((f, i) => {
      if (f.type !== "struct") return void fs.push(fields[i]!);
      // Elements of one index run keep one body each; array_len elements share theirs.
      let s = shared.get(f.struct);
      if (!s) {
        s = fix(f.struct as Json, `~${k++}~`, true);
        shared.set(f.struct, s);
      }
      fs.push({ ...f, struct: s, size: bodySize(s) });
    });
    out.fields = fs;
    const subs = (b.subsections as Json[] | undefined) ?? [];
    if (subs.length) out.subsections = subs.map((sub) => fix(sub, `${name}/${(sub.vmsd_name as string).split("/").pop()}`, false));
    return out;
  };
  return fix(body, body.vmsd_name as string, false);
}

function device(body: Json): VmdescDevice {
  return { name: "dev", instance_id: 0, ...body } as unknown as VmdescDevice;
}

// ---------------------------------------------------------------------------------------------

describe("descriptions from random vmdescs", () => {
  it("read exactly the described bytes, re-save them, and render what the script renders", () => {
    fc.assert(
      fc.property(arbBody("dev", 0).map(loadable), fc.integer(), (body, seed) => {
        const w = new ByteWriter();
        payloadFor(body, new SeededRandom(seed), w);
        const payload = w.concat();
        const { vmsd, wireSize } = convertVmdescDevice(device(body));
        expect(wireSize).toBe(payload.length);

        const r = new ByteReader(payload, { sticky: true });
        const v = new WireInputVisitor(r);
        const s: State = {};
        loadState(v, vmsd, s, 0, "dev");
        expect(v.error).toBeUndefined();
        expect(r.remaining).toBe(0);
        const out = new ByteWriter();
        saveState(new WireOutputVisitor(out), vmsd, s, "dev");
        expect(out.concat()).toEqual(payload);
        // a save that writes the vmdesc writes the entry it was built from, in QEMU's text
        const described = describedSave(vmsd, s, "dev", 0);
        expect(described.bytes).toEqual(payload);
        expect(described.text).toBe(qemuText(device(body)));

        const { value } = analyzeDevice(new ByteReader(payload, { sticky: true }), vmsd, 0, "dev");
        const at = { pos: 0 };
        const expected = pyRead(body, payload, at);
        expect(at.pos).toBe(payload.length);
        expect(formatAnalyzeJson(value)).toBe(formatAnalyzeJson(expected));
      }),
      { numRuns: 300 },
    );
  });
});

describe("vmdesc special cases", () => {
  it("NULL entries of arrays of pointers: one 0x30 byte, checked, rendered with the element type's reader", () => {
    const dev = device({
      vmsd_name: "d",
      version: 1,
      fields: [
        { name: "timers", index: 0, type: "timer", size: 8 },
        { name: "timers", index: 1, type: "timer", size: 1 },
        { name: "regs", index: 0, type: "uint32", size: 1 },
        { name: "regs", index: 1, type: "uint32", size: 4 },
        { name: "objs", index: 0, type: "struct", struct: {}, size: 1 },
        { name: "objs", index: 1, type: "struct", struct: { vmsd_name: "o", version: 1, fields: [{ name: "x", type: "uint8", size: 1 }] }, size: 1 },
        { name: "one", type: "int64", size: 1 },
      ],
    });
    const payload = new Uint8Array([...new Array(8).fill(0xff), 0x30, 0x30, 0, 0, 0, 7, 0x30, 9, 0x30]);
    const vmsd = descriptionFromVmdesc(dev);
    const { value, state } = analyzeDevice(new ByteReader(payload, { sticky: true }), vmsd, 1);
    expect(formatAnalyzeJson(value, { indent: 0, newline: false }).replace(/\n/g, "")).toBe(
      '{"timers": ["ff ff ff ff ff ff ff ff","30"],"regs": ["0x30","0x00000007"],"objs": ["30",{"x": "0x09"}],"one": "0x30"}',
    );
    expect(state.timers).toEqual([-1n, null]);
    expect(state.one).toEqual([null]);
    const w = new ByteWriter();
    saveState(new WireOutputVisitor(w), vmsd, state);
    expect(w.concat()).toEqual(payload);
    // Anything but 0x30 where a NULL entry is described fails the load.
    const bad = payload.slice();
    bad[8] = 0x31;
    expect(() => analyzeDevice(new ByteReader(bad, { sticky: true }), vmsd, 1)).toThrow(/NULL pointer marker/);
  });

  it("the QEMU 7.2 lie about compressed arrays of pointers with NULL entries is caught inside a struct", () => {
    // Three timers, the last two NULL: 8 + 1 + 1 bytes written, but described as 3 x 8.
    const lie = { vmsd_name: "t", version: 1, fields: [{ name: "timers", array_len: 3, type: "timer", size: 8 }] };
    const e = badVmdesc(() => descriptionFromVmdesc(device({ vmsd_name: "d", version: 1, fields: [{ name: "s", type: "struct", struct: lie, size: 10 }] })));
    expect(e.path).toBe("vmdesc.fields[0].size");
    expect(e.message).toContain("size 10, body 24 bytes");
    expect(e.message).toContain("NULL entries");
    // With the check off, the walk reads 24 bytes, as analyze-migration.py does.
    const { wireSize } = convertVmdescDevice(device({ vmsd_name: "d", version: 1, fields: [{ name: "s", type: "struct", struct: lie, size: 10 }] }), {
      checkStructSizes: false,
    });
    expect(wireSize).toBe(24);
  });

  it("a one-element array_len or a lone index 0 is a list, as in the script; a plain field is not", () => {
    const dev = device({
      vmsd_name: "d",
      version: 0,
      fields: [
        { name: "a", array_len: 1, type: "uint16", size: 2 },
        { name: "b", index: 0, type: "buffer", size: 2 },
        { name: "c", type: "uint16", size: 2 },
        { name: "d", array_len: 2, type: "struct", struct: { vmsd_name: "e", version: 0, fields: [{ name: "x", type: "int8", size: 1 }] }, size: 1 },
      ],
    });
    const payload = new Uint8Array([0, 1, 2, 3, 0, 4, 0xff, 0x80]);
    const { value } = analyzeDevice(new ByteReader(payload, { sticky: true }), descriptionFromVmdesc(dev), 0);
    expect(JSON.parse(formatAnalyzeJson(value))).toEqual({ a: ["0x0001"], b: ["02 03"], c: "0x0004", d: [{ x: "0xff (-1)" }, { x: "0x80 (-128)" }] });
  });

  it("a zero-size field is still there (the script prints an empty string)", () => {
    const dev = device({
      vmsd_name: "d",
      version: 0,
      fields: [
        { name: "empty", type: "buffer", size: 0 },
        { name: "x", type: "uint8", size: 1 },
      ],
    });
    const { value } = analyzeDevice(new ByteReader(new Uint8Array([3]), { sticky: true }), descriptionFromVmdesc(dev), 0);
    expect([...value]).toEqual([
      ["empty", ""],
      ["x", "0x03"],
    ]);
  });

  it("tmp / qtailq objects with nested (even duplicated) vmsd keys are one blob of `size` bytes", () => {
    const text =
      '{"name": "d", "instance_id": 0, "vmsd_name": "d", "version": 1, "fields": [{"name": "q", "type": "qtailq", "vmsd_name": "e", "version": 1, "fields": [{"name": "x", "type": "uint8", "size": 1}], "vmsd_name": "e", "version": 1, "fields": [{"name": "x", "type": "uint8", "size": 1}], "size": 5}]}';
    const dev = JSON.parse(text) as VmdescDevice;
    const payload = new Uint8Array([1, 7, 1, 8, 0]);
    const { value } = analyzeDevice(new ByteReader(payload, { sticky: true }), descriptionFromVmdesc(dev), 1);
    expect(value.get("q")).toBe("01 07 01 08 00");
  });

  it("duplicate and hostile names keep their JSON names and get separate state keys", () => {
    const dev = device({
      vmsd_name: "d",
      version: 0,
      fields: [
        { name: "__proto__", type: "uint8", size: 1 },
        { name: "constructor", type: "struct", struct: { vmsd_name: "c", version: 0, fields: [{ name: "hasOwnProperty", type: "uint8", size: 1 }] }, size: 1 },
        { name: "x", type: "uint8", size: 1 },
        { name: "x", type: "uint8", size: 1 },
      ],
      subsections: [{ vmsd_name: "d/s", version: 1, fields: [{ name: "x", type: "uint8", size: 1 }] }],
    });
    const payload = new Uint8Array([1, 2, 3, 4, 5, 3, 0x64, 0x2f, 0x73, 0, 0, 0, 1, 9]);
    const vmsd = descriptionFromVmdesc(dev);
    const { value, state } = analyzeDevice(new ByteReader(payload, { sticky: true }), vmsd, 0);
    // Python dict semantics: the second "x" replaces the first in place.
    expect(formatAnalyzeJson(value)).toBe(
      '{\n    "__proto__": "0x01",\n    "constructor": {\n        "hasOwnProperty": "0x02"\n    },\n    "x": "0x04",\n    "d/s": {\n        "x": "0x09"\n    }\n}\n',
    );
    expect(Object.getPrototypeOf(state)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).hasOwnProperty).toBe(Object.prototype.hasOwnProperty);
    expect(Object.keys(state).sort()).toEqual(["#__proto__", "#constructor", "x", "x#1", "x#2"]);
    const w = new ByteWriter();
    saveState(new WireOutputVisitor(w), vmsd, state);
    expect(w.concat()).toEqual(payload);
  });

  it("old-style devices: one buffer, any section version", () => {
    const dev = { name: "slirp", instance_id: 0, size: 3, fields: [{ name: "data", size: 3, type: "buffer" }] } as VmdescDevice;
    const { vmsd, wireSize } = convertVmdescDevice(dev);
    expect(wireSize).toBe(3);
    const { value } = analyzeDevice(new ByteReader(new Uint8Array([0, 0x12, 0x34]), { sticky: true }), vmsd, 4, "slirp");
    expect([...value]).toEqual([["data", "00 12 34"]]);
  });

  it("listed subsections must all come, in order (the script requires it too)", () => {
    const dev = device({
      vmsd_name: "d",
      version: 0,
      fields: [{ name: "x", type: "uint8", size: 1 }],
      subsections: [
        { vmsd_name: "d/a", version: 0, fields: [] },
        { vmsd_name: "d/b", version: 0, fields: [] },
      ],
    });
    const vmsd = descriptionFromVmdesc(dev);
    const sub = (n: string) => [5, 3, ...new TextEncoder().encode(n), 0, 0, 0, 0];
    const ok = new Uint8Array([1, ...sub("d/a"), ...sub("d/b")]);
    expect(analyzeDevice(new ByteReader(ok, { sticky: true }), vmsd, 0).value.has("d/b")).toBe(true);
    for (const bad of [[1, ...sub("d/a")], [1, ...sub("d/b"), ...sub("d/a")], [1]]) {
      expect(() => analyzeDevice(new ByteReader(new Uint8Array(bad), { sticky: true }), vmsd, 0)).toThrow(/the vmdesc lists \[d\/a, d\/b\]/);
    }
    // A subsection with the parent's prefix that the vmdesc does not list: unknown, as in QEMU.
    expect(() => analyzeDevice(new ByteReader(new Uint8Array([1, ...sub("d/c")]), { sticky: true }), vmsd, 0)).toThrow(/unknown subsection d\/c/);
  });

  it("a section version above the vmdesc's is refused, below is fine", () => {
    const vmsd = descriptionFromVmdesc(device({ vmsd_name: "d", version: 3, fields: [{ name: "x", type: "uint8", size: 1 }] }));
    expect(() => analyzeDevice(new ByteReader(new Uint8Array([1]), { sticky: true }), vmsd, 4)).toThrow(/too new/);
    expect(analyzeDevice(new ByteReader(new Uint8Array([1]), { sticky: true }), vmsd, 2).value.get("x")).toBe("0x01");
  });

  it("the pretty trace of a vmdesc description uses the JSON names", () => {
    const sec = readStream(new URL("../fixtures/x86-pc-64m.mig.gz", import.meta.url)).sections.find((s) => s.idstr === "fw_cfg")!;
    const vmsd = descriptionFromVmdesc(sec.desc);
    const { state } = analyzeDevice(new ByteReader(sec.payload, { sticky: true }), vmsd, sec.version);
    expect(prettyPrint(vmsd, state, "fw_cfg")).toEqual([
      "fw_cfg.cur_entry = (uint16) 0xe",
      "fw_cfg.cur_offset[1] = (uint32) 0x2",
      "fw_cfg.fw_cfg/dma.dma_addr = (uint64) 0x0",
      "fw_cfg.fw_cfg/acpi_mr.table_mr_size = (uint64) 0x20000",
      "fw_cfg.fw_cfg/acpi_mr.linker_mr_size = (uint64) 0x1000",
      "fw_cfg.fw_cfg/acpi_mr.rsdp_mr_size = (uint64) 0x14",
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Malformed vmdescs

function badVmdesc(f: () => unknown): VmstreamError {
  const e = thrownBy(f);
  expect(e.code).toBe("BAD_VMDESC");
  return e;
}

describe("malformed vmdesc entries: BAD_VMDESC with the JSON path", () => {
  const ok = { name: "d", instance_id: 0, vmsd_name: "d", version: 1, fields: [{ name: "x", type: "uint8", size: 1 }] };
  const withField = (f: unknown) => ({ ...ok, fields: [{ name: "x", type: "uint8", size: 1 }, f] });

  it.each([
    ["not an object", 42, "vmdesc"],
    ["no name", { ...ok, name: 3 }, "vmdesc.name"],
    ["negative instance", { ...ok, instance_id: -1 }, "vmdesc.instance_id"],
    ["bad version", { ...ok, version: 1.5 }, "vmdesc.version"],
    ["fields not an array", { ...ok, fields: {} }, "vmdesc.fields"],
    ["field not an object", withField(null), "vmdesc.fields[1]"],
    ["size negative", withField({ name: "y", type: "buffer", size: -1 }), "vmdesc.fields[1].size"],
    ["size too big", withField({ name: "y", type: "buffer", size: 2 ** 40 }), "vmdesc.fields[1].size"],
    ["size not a number", withField({ name: "y", type: "buffer", size: "8" }), "vmdesc.fields[1].size"],
    ["int of the wrong size", withField({ name: "y", type: "uint32", size: 3 }), "vmdesc.fields[1].size"],
    ["array_len 0", withField({ name: "y", type: "uint8", size: 1, array_len: 0 }), "vmdesc.fields[1].array_len"],
    ["array_len too big", withField({ name: "y", type: "uint8", size: 1, array_len: 2 ** 30 }), "vmdesc.fields[1].array_len"],
    ["array_len and index", withField({ name: "y", type: "uint8", size: 1, array_len: 2, index: 0 }), "vmdesc.fields[1]"],
    ["index not from 0", withField({ name: "y", type: "uint8", size: 1, index: 1 }), "vmdesc.fields[1].index"],
    ["index restarts a name", withField({ name: "x", type: "uint8", size: 1, index: 0 }), "vmdesc.fields[1]"],
    [
      "index entries of two types",
      {
        ...ok,
        fields: [
          { name: "y", type: "uint8", size: 1, index: 0 },
          { name: "y", type: "int8", size: 1, index: 1 },
        ],
      },
      "vmdesc.fields[1].type",
    ],
    ["struct without body", withField({ name: "y", type: "struct", size: 1 }), "vmdesc.fields[1].struct"],
    ["struct body without fields", withField({ name: "y", type: "struct", struct: { vmsd_name: "e" }, size: 4 }), "vmdesc.fields[1].struct"],
    [
      "struct size mismatch",
      withField({ name: "y", type: "struct", struct: { vmsd_name: "e", version: 0, fields: [{ name: "z", type: "uint16", size: 2 }] }, size: 3 }),
      "vmdesc.fields[1].size",
    ],
    [
      "nested error path",
      withField({ name: "y", type: "struct", struct: { vmsd_name: "e", version: 0, fields: [{ name: "z", type: 5, size: 2 }] }, size: 2 }),
      "vmdesc.fields[1].struct.fields[0].type",
    ],
    ["subsections not an array", { ...ok, subsections: "d/a" }, "vmdesc.subsections"],
    ["subsection with a foreign name", { ...ok, subsections: [{ vmsd_name: "e/a", version: 1, fields: [] }] }, "vmdesc.subsections[0].vmsd_name"],
    [
      "subsection listed twice",
      {
        ...ok,
        subsections: [
          { vmsd_name: "d/a", version: 1, fields: [] },
          { vmsd_name: "d/a", version: 1, fields: [] },
        ],
      },
      "vmdesc.subsections[1].vmsd_name",
    ],
    ["subsection without version", { ...ok, subsections: [{ vmsd_name: "d/a", fields: [] }] }, "vmdesc.subsections[0].version"],
    ["old-style size mismatch", { name: "s", instance_id: 0, size: 4, fields: [{ name: "data", size: 3, type: "buffer" }] }, "vmdesc.size"],
  ])("%s", (_what, dev, path) => {
    const e = badVmdesc(() => descriptionFromVmdesc(dev));
    expect(e.path).toBe(path);
    expect(e.message).toContain(path);
  });

  it("too deep, and too many elements", () => {
    let body: Json = { vmsd_name: "e", version: 0, fields: [] };
    for (let i = 0; i < 80; i++) body = { vmsd_name: "e", version: 0, fields: [{ name: "s", type: "struct", struct: body, size: 0 }] };
    expect(badVmdesc(() => descriptionFromVmdesc({ ...ok, fields: body.fields })).message).toContain("nests too deep");
    // 2^12 x 2^12 x 2^12 empty structs would be 2^36 visits of nothing.
    const empty = { vmsd_name: "e", version: 0, fields: [] };
    const l2 = { vmsd_name: "e", version: 0, fields: [{ name: "s", type: "struct", array_len: 4096, struct: empty, size: 0 }] };
    const l3 = { vmsd_name: "e", version: 0, fields: [{ name: "s", type: "struct", array_len: 4096, struct: l2, size: 0 }] };
    const e = badVmdesc(() => descriptionFromVmdesc({ ...ok, fields: [{ name: "s", type: "struct", array_len: 4096, struct: l3, size: 0 }] }));
    expect(e.message).toContain("too many elements");
    // The caps are options.
    expect(() => descriptionFromVmdesc(withField({ name: "y", type: "buffer", size: 100 }), { maxFieldSize: 99 })).toThrow(VmstreamError);
  });

  it("parseVmdesc and descriptionsFromVmdesc", () => {
    expect(badVmdesc(() => parseVmdesc("{")).path).toBe("vmdesc");
    expect(badVmdesc(() => parseVmdesc('{"page_size": -1, "devices": []}')).path).toBe("vmdesc.page_size");
    expect(badVmdesc(() => descriptionsFromVmdesc({ page_size: 4096, devices: [ok, { ...ok, fields: 1 }] })).path).toBe("vmdesc.devices[1].fields");
    const stream = readStream(new URL("../fixtures/x86-pc-64m.mig.gz", import.meta.url));
    expect(descriptionsFromVmdesc(parseVmdesc(stream.vmdescText))).toHaveLength(33);
  });

  it("random JSON values never throw anything but BAD_VMDESC", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (x) => {
        for (const dev of [x, { ...ok, fields: x }, withField(x), { ...ok, subsections: x }, withField({ name: "y", type: "struct", size: 1, struct: x })]) {
          try {
            descriptionFromVmdesc(dev);
          } catch (e) {
            if (!(e instanceof VmstreamError) || e.code !== "BAD_VMDESC" || !e.path) throw e;
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it("mutations of the real x86 entries: BAD_VMDESC, or a description whose load of the real payload fails cleanly", () => {
    const stream = readStream(new URL("../fixtures/x86-pc-64m.mig.gz", import.meta.url));
    const secs = stream.sections;
    fc.assert(
      fc.property(
        fc.nat(secs.length - 1),
        fc.array(fc.tuple(fc.nat(), fc.jsonValue({ maxDepth: 2 }), fc.boolean()), { minLength: 1, maxLength: 3 }),
        (k, edits) => {
          const sec = secs[k]!;
          const dev = structuredClone(sec.desc) as unknown as Json;
          for (const [at, value, remove] of edits) mutate(dev, at, value, remove);
          let vmsd: VMStateDescription;
          try {
            vmsd = descriptionFromVmdesc(dev);
          } catch (e) {
            if (!(e instanceof VmstreamError) || e.code !== "BAD_VMDESC") throw e;
            return;
          }
          const r = new ByteReader(sec.payload, { sticky: true });
          const v = new WireInputVisitor(r);
          const s: State = {};
          loadState(v, vmsd, s, sec.version, sec.idstr);
          if (v.error) expect(v.error).toBeInstanceOf(VmstreamError);
          else {
            const w = new ByteWriter();
            saveState(new WireOutputVisitor(w), vmsd, s);
            expect(w.concat()).toEqual(sec.payload.subarray(0, r.pos));
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

/** Replace (or delete) the `at`-th value of a JSON tree (pre-order over object members and array items). */
function mutate(root: Json, at: number, value: unknown, remove: boolean): void {
  const slots: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = [];
  const walk = (x: unknown) => {
    if (Array.isArray(x)) x.forEach((y, i) => (slots.push({ parent: x, key: i }), walk(y)));
    else if (x && typeof x === "object") for (const [k, y] of Object.entries(x)) slots.push({ parent: x as Record<string, unknown>, key: k }), walk(y);
  };
  walk(root);
  if (slots.length === 0) return;
  const { parent, key } = slots[at % slots.length]!;
  if (remove) {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key as string];
  } else (parent as Record<string | number, unknown>)[key] = value;
}
