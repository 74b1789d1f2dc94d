// Re-encoding every real QEMU 7.2 fixture through the model (decode -> StreamEncoder + section writers +
// device walks) gives the original stream back, byte for byte.
import { readdirSync, readFileSync } from "node:fs";
import { gunzipSync, inflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { reencodeStream } from "../../src/convert/qemu.js";
import { joinChunks } from "../../src/io/chunks.js";
import { sha256 } from "../helpers/bytes.js";

const dir = new URL("../fixtures/", import.meta.url);
const fixtures = readdirSync(dir)
  .filter((f) => f.endsWith(".mig.gz"))
  .sort();
const inflate = (d: Uint8Array) => new Uint8Array(inflateSync(d));

describe("re-encoding the QEMU fixtures", () => {
  it("finds the fixtures", () => expect(fixtures.length).toBeGreaterThanOrEqual(5));

  describe.each(fixtures)("%s", (name) => {
    it("gives the same sha256", () => {
      const input = new Uint8Array(gunzipSync(readFileSync(new URL(name, dir))));
      const r = reencodeStream(input, { decode: { inflate } });
      const out = joinChunks(r.chunks, r.bytes);
      expect(out.length).toBe(input.length);
      expect(sha256(out)).toBe(sha256(input));
      expect(r.report.rawSections).toEqual([]);
      // the vmdesc trailer is the one the device walks wrote, not a copy
      expect(r.report.vmdescDifferences).toEqual([]);
      expect(r.report.vmdescGenerated).toBe(true);
      expect(r.report.devices).toBeGreaterThan(0);
      // record-level replay really happened
      expect(r.report.ramRecords).toBeGreaterThan(0);
      console.log(name, JSON.stringify({ ...r.report, vmdescDifferences: r.report.vmdescDifferences.slice(0, 5) }));
    }, 120_000);
  });
});

describe("a new stream from the model (encodeFromModel)", () => {
  it("x86-pc-64m: RAM sent again by ramEncode decodes to the same RAM; devices and vmdesc identical", async () => {
    const { decodeBytes, ramOf } = await import("../../src/sections/stream.js");
    const { encodeFromModel } = await import("../../src/convert/model.js");
    const input = new Uint8Array(gunzipSync(readFileSync(new URL("x86-pc-64m.mig.gz", dir))));
    const a = decodeBytes(input, { materialize: { ram: true } });
    const out = encodeFromModel(a);
    const b = decodeBytes(out, { materialize: { ram: true } });
    try {
      expect(b.completeness.complete).toBe(true);
      expect(b.vmdesc?.text).toBe(a.vmdesc?.text);
      const ra = ramOf(a)!.blocks;
      const rb = ramOf(b)!.blocks;
      expect(rb.map((x) => [x.name, x.length])).toEqual(ra.map((x) => [x.name, x.length]));
      for (let i = 0; i < ra.length; i++) expect(sha256(rb[i]!.data!)).toBe(sha256(ra[i]!.data!));
      const payload = (buf: Uint8Array, d: { payloadOffset: number; payloadSize: number }) =>
        sha256(buf.subarray(d.payloadOffset, d.payloadOffset + d.payloadSize));
      expect(b.devices.map((d) => [d.idstr, d.instanceId, payload(out, d)])).toEqual(a.devices.map((d) => [d.idstr, d.instanceId, payload(input, d)]));
    } finally {
      a.dispose();
      b.dispose();
    }
  }, 120_000);
});
