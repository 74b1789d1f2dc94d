// The streaming decoder on the real QEMU 7.2 fixtures: RAM blocks, disk images and the HPT against the
// references (reference.json: sha256 of what the patched analyze-migration.py extracted, which equals the
// destination's memory), page counts against the independent scanner, device sections, random splits
// (fast-check), the vmdesc read first vs buffered, the Node adapters, bounded memory.
import { createReadStream, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createKernels } from "../../src/kernels/index.js";
import type { DecodeResult } from "../../src/savevm/types.js";
import { findVmdescTrailer } from "../../src/savevm/vmdesc.js";
import { decodeFile, decodeNodeStream, readVmdescTrailer, validateFile } from "../../src/sections/node.js";
import { blockOf, decodeBytes, htabOf, ramOf, StreamDecoder, type StreamDecoderOptions } from "../../src/sections/stream.js";
import { descriptionFromVmdesc } from "../../src/vmstate/from-vmdesc.js";
import { sha256 } from "../helpers/bytes.js";
import { digest, iterativeSequence } from "../helpers/result-digest.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

interface Reference {
  stream_sha256: string;
  guest_memory_sha256: { decoded_from_stream: { ramblock: string; offset: string; length: string; sha256: string }[] };
  scan: {
    device_sections: string[];
    iterative_section_sequence: string[];
    ram: { blocks: Record<string, number>; per_block: Record<string, { PAGE?: number; ZERO?: number; XBZRLE?: number }>; records: Record<string, number> };
    block?: { records: Record<string, number>; devices: Record<string, { data_chunks: number; zero_chunks: number }> };
    "spapr/htab"?: { header: number; chunks: number; valid_ptes: number; invalid_ptes: number };
  };
  disks_sha256?: { source: { sha256: string; bytes: number } };
  analyze_migration: { extract_patched: { extracted_files: Record<string, { bytes: number; sha256: string }> } };
}

const NAMES = ["x86-pc-64m", "x86-pc-block", "x86-pc-block-zeroblocks", "x86-pc-xbzrle", "ppc64-pseries"] as const;
const fixtures = NAMES.map((name) => {
  const gz = new URL(`../fixtures/${name}.mig.gz`, import.meta.url);
  const bytes = new Uint8Array(gunzipSync(readFileSync(gz)));
  const ref = JSON.parse(readFileSync(new URL(`../fixtures/${name}.reference.json`, import.meta.url), "utf8")) as Reference;
  return { name, gz, bytes, ref };
});
const kernels = createKernels();

function chunked(bytes: Uint8Array, sizes: readonly number[], options: StreamDecoderOptions = {}): DecodeResult {
  const d = new StreamDecoder({ kernels, ...options });
  let o = 0;
  for (let i = 0; o < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    d.push(bytes.subarray(o, o + n));
    o += n;
  }
  return d.end();
}

describe.each(fixtures)("$name", ({ name, bytes, ref }) => {
  it("is the reference stream", () => {
    expect(sha256(bytes)).toBe(ref.stream_sha256);
  });

  it("materialised RAM blocks equal the extracted blocks (XBZRLE applied), disks and HPT their references", () => {
    const r = decodeBytes(bytes, { kernels, materialize: true });
    try {
      const ram = ramOf(r)!;
      const files = ref.analyze_migration.extract_patched.extracted_files;
      expect(Object.fromEntries(ram.blocks.map((b) => [b.name, Number(b.length)]))).toEqual(ref.scan.ram.blocks);
      for (const b of ram.blocks) {
        const f = files[b.name.replace(/^\//, "")]!;
        expect(b.data!.length, b.name).toBe(f.bytes);
        expect(sha256(b.data!), b.name).toBe(f.sha256);
      }
      for (const slice of ref.guest_memory_sha256.decoded_from_stream) {
        const b = ram.blocks.find((x) => x.name === slice.ramblock)!;
        const o = Number(slice.offset);
        expect(sha256(b.data!.subarray(o, o + Number(slice.length)))).toBe(slice.sha256);
      }
      const blk = blockOf(r);
      if (ref.disks_sha256) {
        expect(blk!.devices).toHaveLength(1);
        const dev = blk!.devices[0]!;
        expect(dev.end).toBe(ref.disks_sha256.source.bytes);
        expect(sha256(dev.image!)).toBe(ref.disks_sha256.source.sha256);
      } else expect(blk).toBeUndefined();
      const htab = htabOf(r);
      if (ref.scan["spapr/htab"]) {
        expect(htab!.hpt!.length).toBe(2 ** ref.scan["spapr/htab"].header);
        expect(htab!.hpt!.every((x) => x === 0)).toBe(true);
      }
    } finally {
      r.dispose();
    }
  });

  it("counts pages per block and kind, sections, block chunks and HPT chunks as the independent scanner does", () => {
    const r = decodeBytes(bytes, { kernels });
    const ram = ramOf(r)!;
    expect(ram.materialized).toBe(false);
    for (const b of ram.blocks) {
      expect(b.data).toBeUndefined();
      const want = ref.scan.ram.per_block[b.name] ?? {};
      expect(b.pages, b.name).toEqual({ zero: want.ZERO ?? 0, normal: want.PAGE ?? 0, xbzrle: want.XBZRLE ?? 0, compressed: 0 });
    }
    expect(ram.records.eos).toBe(ref.scan.ram.records.EOS);
    expect(ram.records.memSize).toBe(1);
    expect(iterativeSequence(r)).toEqual(ref.scan.iterative_section_sequence);
    expect(r.devices.map((d) => `${d.idstr} (instance ${d.instanceId}, version ${d.version})`)).toEqual(ref.scan.device_sections);
    expect(r.completeness.complete).toBe(true);
    expect(r.footers).toBe(true);
    expect(r.warnings).toEqual([]);
    const blk = blockOf(r);
    if (ref.scan.block) {
      const want = ref.scan.block;
      expect(blk!.records).toEqual({
        device: want.records.DEVICE_BLOCK ?? 0,
        zero: want.records["DEVICE_BLOCK|ZERO_BLOCK"] ?? 0,
        progress: want.records.PROGRESS,
        eos: want.records.EOS,
      });
      expect(blk!.devices.map((d) => [d.name, d.dataChunks, d.zeroChunks])).toEqual(
        Object.entries(want.devices).map(([n, d]) => [n, d.data_chunks, d.zero_chunks]),
      );
      expect(blk!.progress[0]).toBe(0);
      expect(blk!.progress.at(-1)).toBe(100);
    }
    const htab = htabOf(r);
    if (ref.scan["spapr/htab"]) {
      const want = ref.scan["spapr/htab"];
      expect(htab).toMatchObject({ shift: want.header, chunks: want.chunks, valid: want.valid_ptes, invalidated: want.invalid_ptes, sections: 3 });
      expect(htab!.hpt).toBeUndefined();
    }
  });

  it("x86 device sections decode with the registered descriptions, others from the vmdesc", () => {
    const r = decodeBytes(bytes, { kernels });
    const x86 = name.startsWith("x86");
    expect(new Set(r.devices.map((d) => d.source))).toEqual(new Set([x86 ? "registry" : "opaque"]));
    for (const d of r.devices) expect(d.vmdesc?.name).toBe(d.idstr);
    if (x86) {
      const gs = r.devices.find((d) => d.idstr === "globalstate")!;
      expect(new TextDecoder().decode((gs.state.runstate as Uint8Array).subarray(0, 8))).toMatch(/^(running|postmigr|finish)/);
    }
  });

  it("device sections decode with the analyzer's descriptionFromVmdesc through options.describe", () => {
    const r = decodeBytes(bytes, { kernels, devices: "none", describe: (_i, _n, d) => descriptionFromVmdesc(d) });
    expect(r.completeness.complete).toBe(true);
    expect(new Set(r.devices.map((d) => d.source))).toEqual(new Set(["vmdesc"]));
    const plain = decodeBytes(bytes, { kernels });
    expect(r.devices.map((d) => [d.idstr, d.payloadSize])).toEqual(plain.devices.map((d) => [d.idstr, d.payloadSize]));
  });

  it("the result does not depend on where the input is split (fast-check, chunks of 1 B .. 64 KiB)", () => {
    const ref0 = digest(decodeBytes(bytes, { kernels }));
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 65536 }), { minLength: 1, maxLength: 64 }), (sizes) => {
        expect(digest(chunked(bytes, sizes))).toEqual(ref0);
      }),
      { numRuns: 6 },
    );
    // small fixed chunks: every item (MEM_SIZE lists, section headers, devices) is cut many ways
    const head = bytes.subarray(0, Math.min(bytes.length, 1 << 18));
    const eventsOf = (n: number) => {
      const seen: string[] = [];
      const d = new StreamDecoder({
        kernels,
        onEvent: (e) =>
          seen.push(
            e.type === "device" ? `device ${e.device.idstr} ${e.device.payloadSize}` : JSON.stringify(e, (_k, v) => (typeof v === "bigint" ? String(v) : v)),
          ),
      });
      for (let o = 0; o < head.length; o += n) d.push(head.subarray(o, o + n));
      d.dispose();
      return seen;
    };
    const whole = eventsOf(head.length);
    for (const n of [2, 3, 5]) expect(eventsOf(n), `${n}-byte chunks`).toEqual(whole);
    // and with RAM materialised, split at record-unfriendly sizes
    const a = decodeBytes(bytes, { kernels, materialize: true });
    const b = chunked(bytes, [4099, 1, 65536, 17, 8191], { materialize: true });
    expect(digest(b)).toEqual(digest(a));
    a.dispose();
    b.dispose();
  });

  it("reading the vmdesc first (random-access file) gives the same result, with nothing buffered", () => {
    const found = findVmdescTrailer(bytes.subarray(Math.max(0, bytes.length - (1 << 20))), 1 << 24, 64)!;
    const run = (options: StreamDecoderOptions) => {
      let devices = 0;
      const d = new StreamDecoder({ kernels, devices: "none", ...options, onEvent: (e) => void (e.type === "device" && devices++) });
      for (let o = 0; o < bytes.length; o += 65536) d.push(bytes.subarray(o, o + 65536));
      const beforeEnd = devices;
      return { r: d.end(), beforeEnd };
    };
    const tail = run({ vmdesc: found.text });
    expect(tail.beforeEnd).toBe(ref.scan.device_sections.length);
    const streamed = run({});
    expect(streamed.beforeEnd).toBe(0); // the final device phase is held until the vmdesc arrives
    expect(digest(tail.r)).toEqual(digest(streamed.r));
  });
});

describe("Node adapters", () => {
  const dir = suiteTempDir("vmstream-decoder-");
  const { gz, bytes } = fixtures[0]!;

  it("decodeFile: gzip (transparently) and plain (vmdesc read from the end first) give the same result", async () => {
    const plain = join(dir(), "x86-pc-64m.mig");
    writeFileSync(plain, bytes);
    expect(await readVmdescTrailer(plain)).toBe(findVmdescTrailer(bytes, 1 << 24, 64)!.text);
    const a = await decodeFile(gz, { kernels });
    const b = await decodeFile(plain, { kernels });
    const c = await decodeNodeStream(createReadStream(gz), { kernels });
    const d = await decodeNodeStream([bytes.subarray(0, 1), bytes.subarray(1)], { kernels });
    expect(digest(b)).toEqual(digest(a));
    expect(digest(c)).toEqual(digest(a));
    expect(digest(d)).toEqual(digest(a));
    expect(digest(a)).toEqual(digest(decodeBytes(bytes, { kernels })));
  });

  it("validateFile: ok for a fixture, an error for a truncated or corrupt gzip file", async () => {
    const ok = await validateFile(gz);
    expect(ok.ok).toBe(true);
    expect(ok.summary).toMatchObject({ machine: "pc-i440fx-7.2", devices: 33, eof: true, vmdesc: true, complete: true });
    const cut = join(dir(), "cut.mig");
    writeFileSync(cut, bytes.subarray(0, 500_000));
    const bad = await validateFile(cut);
    expect(bad.ok).toBe(false);
    expect(bad.error?.code).toBe("EOF");
    const gzBytes = readFileSync(gz);
    const corrupt = join(dir(), "corrupt.mig.gz");
    writeFileSync(corrupt, gzBytes.subarray(0, 1000));
    const bad2 = await validateFile(corrupt);
    expect(bad2.ok).toBe(false);
    expect(bad2.error?.name).toBe("VmstreamError");
  });
});

describe("bounded memory", () => {
  it("decoding the 34 MB xbzrle stream in 64 KiB chunks without materialising keeps no RAM", () => {
    const { bytes } = fixtures.find((f) => f.name === "x86-pc-xbzrle")!;
    const k = createKernels();
    const before = k.memory.buffer.byteLength;
    const rss0 = process.memoryUsage().rss;
    const r = chunked(bytes, [65536], { kernels: k });
    const grown = k.memory.buffer.byteLength - before;
    const rss = process.memoryUsage().rss - rss0;
    expect(ramOf(r)!.records.xbzrle).toBe(9072);
    expect(grown).toBeLessThanOrEqual(4 << 20); // the input window and small tables, not 64 MiB of guest RAM
    expect(rss).toBeLessThan(48 << 20);
  });
});
