// The streaming QEMU -> QEMU converter (StreamConverter) gives the same bytes and report as the in-memory
// replay (reencodeStream) for every fixture, however the input is split; with the vmdesc known up front (the
// CLI's plain-file path) or not; for every record kind, command and old framing; and fails with a
// VmstreamError on broken input. The streaming QEMU -> BER converter (StreamBerConverter) gives qemuToBer's
// bytes and report, holding at most one item's input. The CLI (dist/) writes OUT.partial and renames it only
// when complete.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync, inflateSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type ReencodeOptions, type ReencodeReport, reencodeStream, StreamConverter } from "../../src/convert/qemu.js";
import { type BerStreamReport, qemuToBer, StreamBerConverter } from "../../src/convert/to-ber.js";
import { joinChunks } from "../../src/io/chunks.js";
import { ByteWriter } from "../../src/io/writer.js";
import { CMD } from "../../src/savevm/constants.js";
import { framingForMachine, StreamEncoder } from "../../src/savevm/encoder.js";
import { BlockWriter } from "../../src/sections/block/writer.js";
import { registryFromMap } from "../../src/sections/device/registry.js";
import { RamWriter } from "../../src/sections/ram/writer.js";
import { HtabWriter } from "../../src/sections/spapr-htab/writer.js";
import { decodeBytes } from "../../src/sections/stream.js";
import { globalState, timers } from "../../src/vmstate/devices/index.js";
import { encodeNoneStream } from "../helpers/encode-none.js";
import { thrownBy } from "../helpers/errors.js";
import { expectSame } from "../helpers/expect-bytes.js";
import { NONE_VMDESC, noneStream } from "../helpers/none-stream.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const dir = new URL("../fixtures/", import.meta.url);
const fixtures = readdirSync(dir)
  .filter((f) => f.endsWith(".mig.gz"))
  .sort();
const load = (name: string) => new Uint8Array(gunzipSync(readFileSync(new URL(name, dir))));
const inflate = (d: Uint8Array) => new Uint8Array(inflateSync(d));
const devices = registryFromMap({ timer: timers, globalstate: globalState });
const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const tmp = suiteTempDir("vmstream-convert-stream-");

interface PushConverter<R> {
  push(chunk: Uint8Array): Uint8Array[];
  end(): { chunks: Uint8Array[]; report: R };
  dispose(): void;
  readonly heldBytes?: number;
}

/** Run a converter over `input` pushed in pieces of the given sizes (cycled); output copied as it comes. */
function drive<R>(c: PushConverter<R>, input: Uint8Array, sizes: readonly number[]): { out: Uint8Array; report: R; pushes: number; maxHeld: number } {
  const parts: Uint8Array[] = [];
  let pushes = 0;
  let maxHeld = 0;
  try {
    for (let p = 0, k = 0; p < input.length; k++) {
      const n = sizes[k % sizes.length]!;
      for (const o of c.push(input.subarray(p, p + n))) parts.push(o.slice());
      maxHeld = Math.max(maxHeld, c.heldBytes ?? 0);
      p += n;
      pushes++;
    }
    const e = c.end();
    parts.push(...e.chunks);
    return { out: joinChunks(parts), report: e.report, pushes, maxHeld };
  } catch (err) {
    c.dispose();
    throw err;
  }
}

const streamed = (input: Uint8Array, sizes: readonly number[], options: ReencodeOptions = {}) =>
  drive<ReencodeReport>(new StreamConverter(options), input, sizes);

/** Every live record kind, commands, a device; each section id used more than once. */
function everyKindStream(): Uint8Array {
  const w = new ByteWriter();
  const enc = new StreamEncoder(w);
  const ram = new RamWriter(w, 4096);
  const blk = new BlockWriter(w);
  const htab = new HtabWriter(w);
  const page = (v: number) => new Uint8Array(4096).fill(v);
  enc.header();
  enc.configuration({ machine: "none", targetPageBits: 12 });
  enc.command(CMD.OPEN_RETURN_PATH);
  enc.begin("start", 7, "ram", 0, 4);
  ram.memSize([
    { name: "pc.ram", length: 0x40000n },
    { name: "vga.vram", length: 0x4000n },
  ]);
  ram.eos();
  enc.end();
  enc.begin("start", 8, "block", 0, 1);
  blk.eos();
  enc.end();
  enc.begin("start", 9, "spapr/htab", 0, 1);
  htab.header(18);
  enc.end();
  for (let round = 0; round < 3; round++) {
    enc.begin("part", 7);
    for (let i = 0; i < 40; i++) {
      if (i % 3 === 0) ram.page("pc.ram", BigInt(i * 4096), page(i + round));
      else ram.zero("pc.ram", BigInt(i * 4096), i % 5 === 0 ? 0x11 : 0);
    }
    ram.page("vga.vram", 0x1000n, page(0xee));
    ram.xbzrle("pc.ram", 0n, Uint8Array.of(0x08, 3, 1, 2, 3));
    ram.eos();
    enc.end();
    enc.begin("part", 8);
    blk.progress(round * 30);
    blk.chunk("drv0", BigInt(round * 2048), page(round + 1));
    blk.chunk("drv0", BigInt(round * 2048 + 2048), undefined);
    blk.eos();
    enc.end();
    enc.begin("part", 9);
    htab.header(0);
    const hptes = new Uint8Array(16 * 3).fill(round + 1);
    htab.chunk({ index: 8 * round, nValid: 3, nInvalid: 1, hptes });
    htab.chunk({ index: 8 * round + 4, nValid: 0, nInvalid: 2, hptes: new Uint8Array(0) });
    htab.endMarker();
    enc.end();
    enc.ping(round);
  }
  enc.begin("end", 7);
  ram.eos();
  enc.end();
  enc.begin("end", 8);
  blk.eos();
  enc.end();
  enc.begin("end", 9);
  htab.header(0);
  htab.endMarker();
  enc.end();
  enc.device({ id: 0, idstr: "timer", instanceId: 0, description: timers, state: { cpu_ticks_offset: 3n, cpu_clock_offset: -9n } });
  enc.finishStream();
  return enc.bytes();
}

describe("StreamConverter on the QEMU fixtures", () => {
  it("finds the fixtures", () => expect(fixtures.length).toBeGreaterThanOrEqual(5));

  it.each(fixtures)(
    "%s: the input's bytes and the in-memory replay's report, in 64 KiB pushes",
    (name) => {
      const input = load(name);
      const ref = reencodeStream(input, { decode: { inflate } });
      const s = streamed(input, [65536], { decode: { inflate } });
      expectSame(s.out, input);
      expect(s.report).toEqual(ref.report);
      expect(s.report.ramRecords).toBeGreaterThan(0);
    },
    60_000,
  );

  it.each(["x86-pc-64m.mig.gz", "x86-pc-block-zeroblocks.mig.gz", "ppc64-pseries.mig.gz"])(
    "%s: random input chunking gives identical bytes",
    (name) => {
      const input = load(name);
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 1, max: 300_000 }), { minLength: 1, maxLength: 12 }), (sizes) => {
          const s = streamed(input, sizes, { decode: { inflate } });
          expectSame(s.out, input);
        }),
        { numRuns: 4 },
      );
    },
    120_000,
  );

  it("the none stream pushed one byte at a time; x86-pc-64m's first 8 KiB (MEM_SIZE list and all) 3 bytes at a time", () => {
    const input = noneStream();
    const s = streamed(input, [1]);
    expect(s.pushes).toBe(input.length);
    expect(s.out).toEqual(input);
    const x86 = load("x86-pc-64m.mig.gz");
    const sizes = [...(new Array(2731).fill(3) as number[]), x86.length];
    expectSame(streamed(x86, sizes).out, x86);
  });

  it("with the vmdesc known up front (nothing buffered) and with every device waiting for the trailer: the same bytes", () => {
    const ppc = load("ppc64-pseries.mig.gz");
    const text = new TextDecoder().decode(ppc.subarray(ppc.lastIndexOf(0x06, ppc.length - 2) + 5));
    expect(JSON.parse(text).devices.length).toBeGreaterThan(0);
    const known = streamed(ppc, [100_000], { decode: { inflate, vmdesc: text } });
    expectSame(known.out, ppc);
    // x86 without its registry: every device section is decoded from the vmdesc at the end
    const x86 = load("x86-pc-64m.mig.gz");
    const deferred = streamed(x86, [100_000], { decode: { devices: "none" } });
    expectSame(deferred.out, x86);
    expect(deferred.report.devices).toBe(reencodeStream(x86).report.devices);
  });
});

describe("StreamConverter on synthetic streams", () => {
  it("every record kind and command: the same bytes and report as reencodeStream, in any chunking", () => {
    const b = everyKindStream();
    const ref = reencodeStream(b, { decode: { devices } });
    expectSame(joinChunks(ref.chunks), b);
    expect(ref.report).toMatchObject({ htabChunks: 6, commands: 4 });
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 8 }), (sizes) => {
        const s = streamed(b, sizes, { decode: { devices } });
        expectSame(s.out, b);
        expect(s.report).toEqual(ref.report);
      }),
      { numRuns: 12 },
    );
  });

  it("old framings: no footers (pc-i440fx-2.3), no vmdesc (2.2)", () => {
    const old23 = encodeNoneStream({ framing: framingForMachine("pc-i440fx-2.3") });
    const s23 = streamed(old23, [7]);
    expect(s23.out).toEqual(old23);
    expect(s23.report.vmdescGenerated).toBe(true);
    const old22 = encodeNoneStream({ framing: framingForMachine("pc-i440fx-2.2") });
    const s22 = streamed(old22, [64], { decode: { devices } });
    expect(s22.out).toEqual(old22);
    expect(s22.report.vmdescGenerated).toBeUndefined();
  });

  it("a vmdesc the device walks do not reproduce: the stream's own text, and the report says which device", () => {
    const none = noneStream();
    const odd = NONE_VMDESC.replace('"devices": [', '"devices":  [');
    expect(odd).not.toBe(NONE_VMDESC);
    const at = none.length - NONE_VMDESC.length;
    const input = joinChunks([none.subarray(0, at - 4), Uint8Array.of(0, 0, (odd.length >> 8) & 0xff, odd.length & 0xff), new TextEncoder().encode(odd)]);
    const s = streamed(input, [100]);
    expect(s.out).toEqual(input);
    expect(s.report.vmdescGenerated).toBe(false);
    expect(s.report.vmdescDifferences).toEqual(["(formatting only)"]);
    // the vmdesc modes give what reencodeStream gives
    for (const vmdesc of ["generated", "original"] as const) {
      const ref = reencodeStream(input, { vmdesc });
      const m = streamed(input, [50], { vmdesc });
      expect(m.out).toEqual(joinChunks(ref.chunks));
      expect(m.report).toEqual(ref.report);
    }
    expect(streamed(input, [50], { vmdesc: "generated" }).out).toEqual(none);
  });
});

describe("StreamConverter on broken input", () => {
  it("a truncated stream: a VmstreamError at end(), never a complete-looking output", () => {
    const input = load("x86-pc-64m.mig.gz");
    for (const cut of [3, 200, input.length >> 1, input.length - 30]) {
      const c = new StreamConverter();
      const got: Uint8Array[] = [];
      const e = thrownBy(() => {
        for (const o of c.push(input.subarray(0, cut))) got.push(o.slice());
        c.end();
      });
      c.dispose();
      expect(e.code).toBe("EOF");
      expect(joinChunks(got).length).toBeLessThan(cut + 1);
    }
  });

  it("a bad RAM record: the error names the section and the offset", () => {
    const input = load("x86-pc-64m.mig.gz").slice();
    const r = decodeBytes(input, { materialize: false });
    const part = r.sections.find((x) => x.idstr === "ram" && x.type === "part")!;
    r.dispose();
    // the first record of the first ram PART gets an unknown flag (0x200)
    const at = part.payloadOffset;
    input[at + 6] = (input[at + 6]! | 0x02) >>> 0;
    input[at + 7] = 0x08;
    const c = new StreamConverter();
    const e = thrownBy(() => {
      c.push(input);
      c.end();
    });
    c.dispose();
    expect(e.section?.idstr).toBe("ram");
    expect(e.offset).toBe(at);
  });

  it("a PACKAGED body with bytes QEMU skips (after an EOF inside it): UNSUPPORTED, as for reencodeStream", () => {
    const w = new ByteWriter();
    const enc = new StreamEncoder(w);
    enc.header();
    enc.configuration({ machine: "none" });
    enc.command(CMD.PACKAGED, Uint8Array.of(0, 0, 0, 1));
    w.u8(0); // the package: EOF
    enc.eof();
    const b = enc.bytes();
    expect(thrownBy(() => reencodeStream(b)).code).toBe("UNSUPPORTED");
    const c = new StreamConverter();
    const e = thrownBy(() => {
      c.push(b);
      c.end();
    });
    c.dispose();
    expect(e.code).toBe("UNSUPPORTED");
  });
});

describe("StreamBerConverter (QEMU -> BER as the input arrives)", () => {
  const streamedBer = (input: Uint8Array, sizes: readonly number[], options = {}) => drive<BerStreamReport>(new StreamBerConverter(options), input, sizes);

  it.each(fixtures)(
    "%s: qemuToBer's bytes and report in random chunkings; input held: one section at most",
    (name) => {
      const input = load(name);
      const ref = qemuToBer(input, { decode: { inflate } });
      const refBytes = joinChunks(ref.chunks, ref.bytes);
      // the largest item (section from its type byte to its footer) bounds what is held, plus one push
      const r = decodeBytes(input, { inflate, materialize: false });
      const largest = Math.max(...r.sections.map((x) => x.size));
      r.dispose();
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 1, max: 300_000 }), { minLength: 1, maxLength: 6 }), (sizes) => {
          const s = streamedBer(input, sizes, { decode: { inflate } });
          expectSame(s.out, refBytes);
          expect(s.report).toEqual(ref.report);
          expect(s.maxHeld).toBeLessThanOrEqual(largest + Math.max(...sizes));
        }),
        { numRuns: 3 },
      );
    },
    120_000,
  );

  it("synthetic streams: every record kind, old framings; the vmdesc known up front", () => {
    for (const b of [everyKindStream(), encodeNoneStream({ framing: framingForMachine("pc-i440fx-2.3") }), noneStream()]) {
      const ref = qemuToBer(b, { decode: { devices } });
      const s = streamedBer(b, [333], { decode: { devices } });
      expectSame(s.out, joinChunks(ref.chunks));
      expect(s.report).toEqual(ref.report);
    }
    const ppc = load("ppc64-pseries.mig.gz");
    const text = new TextDecoder().decode(ppc.subarray(ppc.lastIndexOf(0x06, ppc.length - 2) + 5));
    expectSame(streamedBer(ppc, [1 << 20], { decode: { inflate, vmdesc: text } }).out, joinChunks(qemuToBer(ppc, { decode: { inflate } }).chunks));
  });

  it("broken input: truncated -> EOF, PACKAGED -> UNSUPPORTED", () => {
    const x86 = load("x86-pc-64m.mig.gz");
    const c = new StreamBerConverter();
    expect(
      thrownBy(() => {
        c.push(x86.subarray(0, x86.length - 100));
        c.end();
      }).code,
    ).toBe("EOF");
    c.dispose();
    const w = new ByteWriter();
    const enc = new StreamEncoder(w);
    enc.header();
    enc.configuration({ machine: "none" });
    enc.command(CMD.PACKAGED, Uint8Array.of(0, 0, 0, 1));
    w.u8(0);
    enc.eof();
    const p = new StreamBerConverter();
    expect(
      thrownBy(() => {
        p.push(enc.bytes());
        p.end();
      }).code,
    ).toBe("UNSUPPORTED");
    p.dispose();
  });
});

describe("vmstream convert (dist/cli) streams a QEMU input", () => {
  function run(args: string[], input?: Uint8Array) {
    const r = spawnSync(process.execPath, [MAIN, ...args], { input, maxBuffer: 64 << 20 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString("utf8") };
  }

  it("a plain file (vmdesc read from its end first) gives identical bytes; stdin too; --to ber as qemuToBer", () => {
    const ppc = load("ppc64-pseries.mig.gz");
    const inFile = join(tmp(), "ppc.mig");
    writeFileSync(inFile, ppc);
    const out = join(tmp(), "ppc.out.mig");
    const r = run(["convert", inFile, out]);
    expect(r.status, r.stderr).toBe(0);
    expectSame(readFileSync(out), ppc);
    expect(existsSync(out + ".partial")).toBe(false);
    const p = run(["convert", "-", "-"], ppc);
    expect(p.status, p.stderr).toBe(0);
    expectSame(p.stdout, ppc);
    const ber = join(tmp(), "ppc.ber");
    const b = run(["convert", inFile, ber, "--to", "ber"]);
    expect(b.status, b.stderr).toBe(0);
    expectSame(readFileSync(ber), joinChunks(qemuToBer(ppc, { decode: { inflate } }).chunks));
  }, 60_000);

  it("broken input: exit 1 with the error, and neither OUT nor OUT.partial is left", () => {
    const x86 = load("x86-pc-64m.mig.gz");
    const inFile = join(tmp(), "cut.mig");
    writeFileSync(inFile, x86.subarray(0, x86.length >> 1));
    const out = join(tmp(), "cut.out.mig");
    const r = run(["convert", inFile, out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/vmstream: .*truncated/);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(out + ".partial")).toBe(false);
  }, 60_000);
});
