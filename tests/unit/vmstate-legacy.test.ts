import { describe, expect, it } from "vitest";
import { ByteReader } from "../../src/io/reader.js";
import { ByteWriter } from "../../src/io/writer.js";
import { WireInputVisitor, WireOutputVisitor } from "../../src/visitor/wire.js";
import { loadState, saveState } from "../../src/vmstate/engine.js";
import { F } from "../../src/vmstate/fields.js";
import { QemuJsonWriter } from "../../src/vmstate/json-writer.js";
import { convertLegacy, legacyBytes, opaqueLegacy, writeLegacyVmdesc } from "../../src/vmstate/legacy.js";
import { prettyPrint } from "../../src/vmstate/symmetry.js";
import type { VMStateDescription } from "../../src/vmstate/types.js";

// A made-up legacy layout: a u16 count, that many (u8 kind, be32 value) records, a trailing be16.
const rec: VMStateDescription = { name: "rec", version: 1, fields: [F.uint8("kind"), F.uint32("value")] };
const conversion: VMStateDescription = {
  name: "legacydev",
  version: 2,
  fields: [F.uint16("n"), F.structArray("recs", rec, { field: "n" }, { elemSize: 5 }), F.uint16("tail")],
};
const bytes = Uint8Array.from([0x00, 0x02, 0x01, 0, 0, 0, 7, 0x02, 0xff, 0xff, 0xff, 0xfe, 0xbe, 0xef]);

describe("legacy sections", () => {
  it("travel unconverted as one octet-stream, and the vmdesc says so as QEMU writes it", () => {
    const vmsd = opaqueLegacy("slirp", 4, bytes.length);
    const s: Record<string, unknown> = {};
    const v = new WireInputVisitor(new ByteReader(bytes, { sticky: true }));
    loadState(v, vmsd, s, 4);
    expect(v.error).toBeUndefined();
    const w = new ByteWriter();
    saveState(new WireOutputVisitor(w), vmsd, s);
    expect(Buffer.from(w.finish()).equals(Buffer.from(bytes))).toBe(true);
    const json = new QemuJsonWriter();
    writeLegacyVmdesc(json, "slirp", 0, 131);
    expect(json.text()).toBe('{"name": "slirp", "instance_id": 0, "size": 131, "fields": [{"name": "data", "size": 131, "type": "buffer"}]}');
  });

  it("a conversion reads the same bytes field by field and writes them back unchanged", () => {
    const s = convertLegacy(conversion, bytes, 2);
    expect(s.n).toBe(2);
    expect(s.recs[1]).toEqual({ kind: 2, value: 0xfffffffe });
    expect(s.tail).toBe(0xbeef);
    expect(Buffer.from(legacyBytes(conversion, s)).equals(Buffer.from(bytes))).toBe(true);
    expect(prettyPrint(conversion, s)).toContain("legacydev.recs(2)(5).[1].value = (uint32) 0xfffffffe");
  });

  it("refuses a conversion that does not describe exactly the legacy bytes", () => {
    expect(() => convertLegacy(conversion, Uint8Array.from([...bytes, 0]), 2)).toThrow(/1 of 15 bytes left over/);
    expect(() => convertLegacy(conversion, bytes.subarray(0, 10), 2, 1000)).toThrow(/end of stream at byte 1008.*legacydev\.recs\(2\)\(5\)\.\[1\]\.value/);
  });
});
