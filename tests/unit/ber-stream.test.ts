// QEMU stream <-> BER stream (src/convert/to-ber.ts, from-ber.ts): QEMU -> BER -> QEMU is byte-identical for
// every fixture, a synthetic stream with every record kind and the `-machine none` stream; the BER streams
// decode against docs/vmstate.asn1 with libtasn1's asn1Decoding (VMStream.Stream, every Nested level) and
// with asn1c's unber. The outside judges follow tests/unit/ber-external.test.ts: under CI (CI=true) a missing
// tool FAILS, elsewhere the test is skipped with the reason in its name.
import { readFileSync } from "node:fs";
import { deflateSync, gunzipSync, inflateSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { BerReader } from "../../src/ber/reader.js";
import { isBerStream } from "../../src/convert/ber-items.js";
import { berToQemu, berToQemuBytes } from "../../src/convert/from-ber.js";
import { qemuToBer, qemuToBerBytes } from "../../src/convert/to-ber.js";
import { ByteWriter } from "../../src/io/writer.js";
import { CMD } from "../../src/savevm/constants.js";
import { StreamEncoder } from "../../src/savevm/encoder.js";
import { BlockWriter } from "../../src/sections/block/writer.js";
import { RamWriter } from "../../src/sections/ram/writer.js";
import { HtabWriter } from "../../src/sections/spapr-htab/writer.js";
import { globalState, timers } from "../../src/vmstate/devices/index.js";
import { asn1DecodeDeep, removeTempFiles, unber } from "../helpers/ber-tools.js";
import { sha256 } from "../helpers/bytes.js";
import { NONE_OFFSETS, noneStream } from "../helpers/none-stream.js";
import { itIfInstalled, requireTool } from "../helpers/requires.js";

afterAll(removeTempFiles);

const fixture = (name: string) => new Uint8Array(gunzipSync(readFileSync(new URL(`../fixtures/${name}.mig.gz`, import.meta.url))));
const inflate = (d: Uint8Array) => new Uint8Array(inflateSync(d));
const FIXTURES = ["x86-pc-64m", "x86-pc-block", "x86-pc-block-zeroblocks", "x86-pc-xbzrle", "ppc64-pseries"];

const withLibtasn1 = itIfInstalled(requireTool("asn1Decoding", "libtasn1-bin"));
const withUnber = itIfInstalled(requireTool("unber", "asn1c"));

/** unber prints every content octet of a primitive as an XML character reference. */
const unberText = (s: string): string => [...Buffer.from(s)].map((b) => `&#x${b.toString(16).padStart(2, "0")};`).join("");

/**
 * A synthetic stream with every record kind the schema has, written by the library's own writers: the
 * configuration with all three subsections (x-ignore-shared: MEM_SIZE carries MemoryRegion addresses), RAM
 * MEM_SIZE / ZERO (a new block and CONTINUE, a non-zero fill) / PAGE / XBZRLE / COMPRESS_PAGE / EOS, block
 * progress / data / zero chunk / EOS, spapr/htab START / PART with chunks / END without a table, a PING command,
 * two device sections (from the vmdesc), EOF and the generated vmdesc.
 */
function syntheticStream(): Uint8Array {
  const w = new ByteWriter();
  const enc = new StreamEncoder(w, {});
  const ram = new RamWriter(w, 4096, { ignoreShared: true });
  const block = new BlockWriter(w);
  const htab = new HtabWriter(w);
  enc.header();
  enc.configuration({
    machine: "pc-i440fx-7.2",
    targetPageBits: 12,
    capabilities: ["x-ignore-shared"],
    uuid: Uint8Array.from({ length: 16 }, (_, i) => i + 1),
  });
  enc.begin("start", 2, "ram", 0, 4);
  ram.memSize([
    { name: "pc.ram", length: 0x10000n, mrAddr: 0n },
    { name: "/rom@etc/acpi/tables", length: 0x2000n, mrAddr: 0x100000000n },
  ]);
  ram.eos();
  enc.end();
  enc.begin("part", 2);
  const page = Uint8Array.from({ length: 4096 }, (_, i) => (i * 13) & 0xff);
  ram.zero("pc.ram", 0n);
  ram.zero("pc.ram", 0x1000n, 0x5a);
  ram.page("pc.ram", 0x2000n, page);
  ram.xbzrle("pc.ram", 0x2000n, Uint8Array.of(0x10, 0x02, 0x4c, 0x56));
  ram.compressed("/rom@etc/acpi/tables", 0x1000n, new Uint8Array(deflateSync(page)));
  ram.eos();
  enc.end();
  enc.begin("end", 2);
  ram.page("pc.ram", 0x3000n, page);
  ram.eos();
  enc.end();
  enc.begin("start", 3, "block", 0, 1);
  block.eos();
  enc.end();
  enc.begin("part", 3);
  block.progress(0);
  block.chunk(
    "drive0",
    0n,
    Uint8Array.from({ length: 1 << 20 }, (_, i) => i & 0xff),
  );
  block.chunk("drive0", 2048n, undefined);
  block.eos();
  enc.end();
  enc.begin("start", 4, "spapr/htab", 0, 1);
  htab.header(18);
  enc.end();
  enc.begin("part", 4);
  htab.header(0);
  htab.chunk({ index: 5, nValid: 2, nInvalid: 3, hptes: Uint8Array.from({ length: 32 }, (_, i) => i | 1) });
  htab.chunk({ index: 100, nValid: 0, nInvalid: 7, hptes: new Uint8Array(0) });
  htab.endMarker();
  enc.end();
  enc.begin("end", 4);
  htab.header(0xffffffff);
  enc.end();
  enc.command(CMD.OPEN_RETURN_PATH);
  enc.ping(0x12345678);
  enc.device({ id: 0, idstr: "timer", instanceId: 0, description: timers, state: { cpu_ticks_offset: 5n, cpu_clock_offset: -7n } });
  const runstate = new Uint8Array(100);
  runstate.set(new TextEncoder().encode("running"));
  enc.device({ id: 5, idstr: "globalstate", instanceId: 0, description: globalState, state: { size: 8, runstate } });
  enc.finishStream();
  return enc.bytes();
}

describe("QEMU -> BER -> QEMU is byte-identical", () => {
  it("the -machine none stream", () => {
    const q = noneStream();
    const ber = qemuToBerBytes(q);
    expect(isBerStream(ber)).toBe(true);
    expect(isBerStream(q)).toBe(false);
    expect(sha256(berToQemuBytes(ber))).toBe(sha256(q));
  });

  it("a synthetic stream with every record kind", () => {
    const q = syntheticStream();
    const r = qemuToBer(q, { decode: { inflate } });
    expect(r.report.opaqueSections).toEqual([]);
    expect(r.report.ramRecords).toBe(10);
    expect(r.report.blockRecords).toBe(5);
    expect(r.report.htabChunks).toBe(2);
    expect(r.report.commands).toBe(2);
    expect(r.report.borrowedBytes).toBeGreaterThanOrEqual((1 << 20) + 2 * 4096);
    const ber = Buffer.concat(r.chunks);
    expect(ber.length).toBe(r.bytes);
    const back = berToQemu(ber);
    expect(back.report.devices).toBe(2);
    expect(sha256(Buffer.concat(back.chunks))).toBe(sha256(q));
  });

  for (const name of FIXTURES) {
    it(`${name}`, () => {
      const q = fixture(name);
      const t0 = performance.now();
      const r = qemuToBer(q, { decode: { inflate } });
      const t1 = performance.now();
      const ber = Buffer.concat(r.chunks, r.bytes);
      const back = berToQemu(ber);
      const t2 = performance.now();
      expect(sha256(Buffer.concat(back.chunks, back.bytes))).toBe(sha256(q));
      expect(back.report.devices).toBe(r.report.devices);
      expect(r.report.opaqueSections).toEqual([]);
      // page and chunk data travel as views into the input, not copied
      expect(r.report.borrowedBytes).toBeGreaterThan(q.length / 2);
      console.log(
        `${name}: QEMU ${q.length} B -> BER ${r.bytes} B (${((100 * r.bytes) / q.length).toFixed(1)}%), to BER ${(t1 - t0).toFixed(0)} ms, back ${(t2 - t1).toFixed(0)} ms`,
      );
    }, 120_000);
  }
});

describe("payloads the records cannot reproduce travel as OpaqueState", () => {
  it("a RAM EOS with the CONTINUE bit (0x30) is kept byte for byte", () => {
    const q = noneStream().slice();
    const eos = NONE_OFFSETS.ramEnd + 5 + 7; // the END section's payload: be64 0x10
    expect(q[eos]).toBe(0x10);
    q[eos] = 0x30;
    const r = qemuToBer(q);
    expect(r.report.opaqueSections).toEqual([`ram (end at ${NONE_OFFSETS.ramEnd})`]);
    expect(sha256(berToQemuBytes(Buffer.concat(r.chunks)))).toBe(sha256(q));
  });
});

describe("malformed BER input fails cleanly", () => {
  it("truncated, wrong magic, unknown items", () => {
    const ber = qemuToBerBytes(noneStream());
    expect(() => berToQemuBytes(ber.subarray(0, ber.length - 3))).toThrow();
    const bad = ber.slice();
    const magic = Buffer.from(bad).indexOf(Buffer.from([0x02, 0x04, 0x51, 0x45, 0x56, 0x4d]));
    bad[magic + 2] = 0x52;
    expect(() => berToQemuBytes(bad)).toThrow(/magic/);
    expect(() => berToQemuBytes(Uint8Array.of(0x30, 0x00))).toThrow(/APPLICATION 16/);
  });

  it("a device body that differs from every description is reported", () => {
    const ber = qemuToBerBytes(noneStream());
    // the timer's field name cpu_ticks_offset -> cpu_ticks_offseT
    const at = Buffer.from(ber).indexOf(Buffer.from("cpu_ticks_offset"));
    const bad = ber.slice();
    bad[at + 15] = 0x54;
    expect(() => berToQemuBytes(bad)).toThrow(/cpu_ticks_offset|MISMATCH|field/);
  });
});

describe("BER streams decode against the schema (asn1Decoding VMStream.Stream, every Nested level) and with unber", () => {
  const none = () => qemuToBerBytes(noneStream());
  const synthetic = () => qemuToBerBytes(syntheticStream(), { decode: { inflate } });

  const decodes = (bytes: Uint8Array, limit?: number): string => {
    const runs = asn1DecodeDeep(bytes, "Stream", limit);
    for (const r of runs) {
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout + r.stderr).toContain("Decoding: SUCCESS");
    }
    return runs.map((r) => r.stdout).join("\n");
  };

  withLibtasn1("the none stream", () => {
    const out = decodes(none());
    for (const s of [
      "name:configuration",
      "name:start",
      "name:end",
      "name:full",
      "name:eof",
      "name:vmdesc",
      "name:memSize",
      "name:eos",
      "name:footer",
      "value:timer",
      "value:globalstate",
      "value:cpu_ticks_offset",
      "value:runstate",
    ]) {
      expect(out).toContain(s);
    }
  });

  withLibtasn1("the synthetic stream with every record kind", () => {
    const out = decodes(synthetic());
    for (const s of [
      "name:part",
      "name:zero",
      "name:page",
      "name:xbzrle",
      "name:compressed",
      "name:data",
      "name:progress",
      "name:htab",
      "name:command",
      "name:mrAddr",
      "value:configuration/uuid",
      "value:configuration/capabilities",
      "value:x-ignore-shared",
      "value:drive0",
    ]) {
      expect(out).toContain(s);
    }
    expect(out).toMatch(/name:fill {2}type:INTEGER {2}value:0x5a/);
  });

  withLibtasn1(
    "x86-pc-64m (the top level and the first 300 Nested values)",
    () => {
      const ber = qemuToBerBytes(fixture("x86-pc-64m"), { decode: { inflate } });
      const out = decodes(ber, 300);
      for (const s of ["name:memSize", "name:page", "name:zero", "name:vmdesc", "value:pc.ram", "value:ram"]) expect(out).toContain(s);
    },
    120_000,
  );

  withUnber(
    "unber -p: the none stream, the synthetic stream, x86-pc-64m",
    () => {
      for (const [name, bytes] of [
        ["none", none()],
        ["synthetic", synthetic()],
        ["x86-pc-64m", qemuToBerBytes(fixture("x86-pc-64m"), { decode: { inflate } })],
      ] as const) {
        const r = unber(bytes);
        expect(r.status, `${name}: ${r.stderr}`).toBe(0);
        expect(r.stdout).toContain('T="[APPLICATION 16]"');
        expect(r.stdout).toContain('T="[APPLICATION 126]"');
        expect(r.stdout).toContain(unberText("globalstate"));
      }
    },
    120_000,
  );

  withUnber("unber rejects a truncated BER stream (the judge is not blind)", () => {
    const b = none();
    expect(unber(b.subarray(0, b.length - 1)).status).not.toBe(0);
  });
});

describe("the BER reader sees the stream-level types", () => {
  it("Stream, Header, items in QEMU's order", () => {
    const r = new BerReader(qemuToBerBytes(noneStream()));
    r.header();
    expect(r.id).toBe(0x70);
    const e = r.enter();
    r.header();
    expect(r.id).toBe(0x71);
    r.skip();
    r.header();
    const ie = r.enter();
    const ids: number[] = [];
    while (!r.atEnd(ie)) {
      r.header();
      ids.push(r.id);
      r.skip();
    }
    r.leave(ie);
    r.leave(e);
    // configuration, ram START, ram END, timer FULL, globalstate FULL, EOF, vmdesc
    expect(ids).toEqual([0x67, 0x61, 0x63, 0x64, 0x64, 0x40, 0x46]);
  });
});
