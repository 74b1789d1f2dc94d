import { describe, expect, it } from "vitest";
import { ByteReader } from "../../src/io/reader.js";
import { ByteWriter } from "../../src/io/writer.js";
import { WireInputVisitor, WireOutputVisitor } from "../../src/visitor/wire.js";
import { loadState, saveState } from "../../src/vmstate/engine.js";
import { F } from "../../src/vmstate/fields.js";
import { QemuJsonWriter } from "../../src/vmstate/json-writer.js";
import type { State, VMStateDescription } from "../../src/vmstate/types.js";

// The two devices of the 747-byte `-machine none` stream (wire-format §2.11).
const timer: VMStateDescription = { name: "timer", version: 2, fields: [F.int64("cpu_ticks_offset"), F.unused(8), F.int64("cpu_clock_offset")] };
const globalstate: VMStateDescription = { name: "globalstate", version: 1, fields: [F.uint32("size"), F.buffer("runstate", 100)] };

function saveWithDesc(list: [VMStateDescription, State][]): { bytes: Uint8Array; json: string } {
  const json = new QemuJsonWriter();
  const w = new ByteWriter();
  json.startObject();
  json.int("page_size", 4096);
  json.startArray("devices");
  for (const [vmsd, s] of list) {
    json.startObject();
    json.str("name", vmsd.name);
    json.int("instance_id", 0);
    const v = new WireOutputVisitor(w);
    saveState(v, vmsd, s, vmsd.name, { json, pos: () => w.pos });
    expect(v.error).toBeUndefined();
    json.endObject();
  }
  json.endArray();
  json.endObject();
  return { bytes: w.finish().slice(), json: json.text() };
}

describe("engine", () => {
  it("writes the none stream's device bytes and QEMU's vmdesc text for them", () => {
    const runstate = new Uint8Array(100);
    runstate.set(new TextEncoder().encode("prelaunch"));
    const { bytes, json } = saveWithDesc([
      [timer, { cpu_ticks_offset: 0n, cpu_clock_offset: 0n }],
      [globalstate, { size: 10, runstate }],
    ]);
    expect(json).toBe(
      '{"page_size": 4096, "devices": [{"name": "timer", "instance_id": 0, "vmsd_name": "timer", "version": 2, "fields": [' +
        '{"name": "cpu_ticks_offset", "type": "int64", "size": 8}, {"name": "unused", "type": "unused_buffer", "size": 8}, ' +
        '{"name": "cpu_clock_offset", "type": "int64", "size": 8}]}, {"name": "globalstate", "instance_id": 0, "vmsd_name": "globalstate", ' +
        '"version": 1, "fields": [{"name": "size", "type": "uint32", "size": 4}, {"name": "runstate", "type": "buffer", "size": 100}]}]}',
    );
    expect(json.length).toBe(486); // the vmdesc length in the real stream
    expect(bytes.length).toBe(24 + 104);
    const v = new WireInputVisitor(new ByteReader(bytes, { sticky: true }));
    const t: State = {};
    const g: State = {};
    loadState(v, timer, t, 2);
    loadState(v, globalstate, g, 1);
    expect(v.error).toBeUndefined();
    expect(new TextDecoder().decode(g.runstate.subarray(0, 9))).toBe("prelaunch");
  });

  it("describes a zero-length variable buffer as QEMU does (one field object, size 0)", () => {
    const d: VMStateDescription = { name: "d", version: 1, fields: [F.uint32("len"), F.buffer("data", { field: "len" }), F.bitmap("bits", { field: "len" })] };
    const { bytes, json } = saveWithDesc([[d, { len: 0 }]]);
    expect(bytes.length).toBe(4);
    expect(json).toContain('{"name": "data", "type": "buffer", "size": 0}, {"name": "bits", "type": "bitmap", "size": 0}');
  });

  it("refuses versions outside [minimum, version] and names them", () => {
    const v = new WireInputVisitor(new ByteReader(new Uint8Array(24), { sticky: true }));
    loadState(v, timer, {}, 3);
    expect(v.error?.code).toBe("BAD_VERSION");
    expect(v.error?.message).toMatch(/timer: version 3 is too new/);
    const v2 = new WireInputVisitor(new ByteReader(new Uint8Array(24), { sticky: true }));
    loadState(v2, { ...timer, minimumVersion: 2 }, {}, 1);
    expect(v2.error?.message).toMatch(/too old/);
  });

  it("checks equal and le fields against this side's values", () => {
    const d: VMStateDescription = { name: "d", version: 1, fields: [F.uint32Equal("n"), F.int32Le("k")] };
    const w = new ByteWriter();
    saveState(new WireOutputVisitor(w), d, { n: 5, k: 7 });
    const bytes = w.finish().slice();
    const ok = new WireInputVisitor(new ByteReader(bytes, { sticky: true }));
    const s: State = { n: 5, k: 9 };
    loadState(ok, d, s, 1);
    expect(ok.error).toBeUndefined();
    expect(s.k).toBe(7);
    const bad = new WireInputVisitor(new ByteReader(bytes, { sticky: true }));
    loadState(bad, d, { n: 6, k: 9 }, 1);
    expect(bad.error?.code).toBe("MISMATCH");
    expect(bad.error?.path).toBe("d.n");
    const le = new WireInputVisitor(new ByteReader(bytes, { sticky: true }));
    loadState(le, d, { n: 5, k: 6 }, 1);
    expect(le.error?.message).toMatch(/k: value out of range.*stream 7, allowed 0\.\.6/);
  });
});
