// Re-encoding postcopy streams (a PACKAGED command wrapping POSTCOPY_LISTEN, the device state and POSTCOPY_RUN):
// reencodeStream and StreamConverter write them byte-identically, the package length taken from the re-encoded
// body; nested packages and live sections inside a package; StreamEncoder.packaged / beginPackaged; bytes QEMU
// skips inside a package and truncated packages are VmstreamErrors with an offset.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type ReencodeReport, reencodeStream, StreamConverter } from "../../src/convert/qemu.js";
import { qemuToBer } from "../../src/convert/to-ber.js";
import { joinChunks } from "../../src/io/chunks.js";
import { ByteWriter } from "../../src/io/writer.js";
import { CMD } from "../../src/savevm/constants.js";
import { StreamEncoder } from "../../src/savevm/encoder.js";
import { RamWriter } from "../../src/sections/ram/writer.js";
import { decodeBytes } from "../../src/sections/stream.js";
import { timers } from "../../src/vmstate/devices/index.js";
import { thrownBy } from "../helpers/errors.js";
import { expectSame } from "../helpers/expect-bytes.js";

const POSTCOPY_FRAMING = { vmdesc: false } as const; // QEMU writes no vmdesc after postcopy
const be32 = (v: number) => Uint8Array.of(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
const page = (v: number) => new Uint8Array(4096).fill(v);

interface BodyOptions {
  readonly nested?: boolean;
  readonly ramInside?: boolean;
  readonly trailing?: readonly number[];
}

/** The body of a package (headerless): LISTEN, devices, [a nested package], [a ram PART], PING(3), RUN. */
function packageBody(o: BodyOptions): Uint8Array {
  const w = new ByteWriter();
  const enc = new StreamEncoder(w, POSTCOPY_FRAMING);
  const ram = new RamWriter(w, 4096);
  enc.command(CMD.POSTCOPY_LISTEN);
  enc.device({ id: 3, idstr: "timer", instanceId: 0, description: timers, state: { cpu_ticks_offset: 77n, cpu_clock_offset: -5n } });
  if (o.nested) {
    // written through beginPackaged/endPackaged (the other path of the encoder)
    const at = enc.beginPackaged();
    enc.ping(9);
    enc.device({ id: 4, idstr: "timer", instanceId: 1, description: timers, state: { cpu_ticks_offset: 1n << 40n, cpu_clock_offset: 12n } });
    enc.endPackaged(at);
  }
  if (o.ramInside) {
    enc.begin("part", 2);
    ram.page("pc.ram", 0x3000n, page(0x5a));
    ram.zero("pc.ram", 0x4000n, 0);
    ram.eos();
    enc.end();
  }
  enc.ping(3);
  enc.command(CMD.POSTCOPY_RUN);
  for (const b of o.trailing ?? []) w.u8(b);
  return w.concat();
}

/** A postcopy stream as QEMU's source writes it (wire-format §2.7), with the package body given. */
function postcopyStream(body: Uint8Array): Uint8Array {
  const w = new ByteWriter();
  const enc = new StreamEncoder(w, POSTCOPY_FRAMING);
  const ram = new RamWriter(w, 4096);
  enc.header();
  enc.configuration({ machine: "pc-i440fx-7.2" });
  enc.command(CMD.OPEN_RETURN_PATH);
  const advise = new ByteWriter();
  advise.be64(4096n);
  advise.be64(4096n);
  enc.command(CMD.POSTCOPY_ADVISE, advise.concat());
  enc.begin("start", 2, "ram", 0, 4);
  ram.memSize([{ name: "pc.ram", length: 0x10000n }]);
  ram.eos();
  enc.end();
  enc.begin("part", 2);
  for (let i = 0; i < 8; i++) ram.page("pc.ram", BigInt(i * 4096), page(i + 1));
  ram.eos();
  enc.end();
  enc.ping(1);
  const discard = new ByteWriter();
  discard.u8(0);
  discard.cstr("pc.ram");
  discard.u8(0);
  discard.be64(0x1000n);
  discard.be64(0x2000n);
  enc.command(CMD.POSTCOPY_RAM_DISCARD, discard.concat());
  enc.ping(2);
  enc.packaged(body);
  enc.ping(4);
  enc.begin("part", 2);
  ram.page("pc.ram", 0x5000n, page(0xc3));
  ram.eos();
  enc.end();
  enc.begin("end", 2);
  ram.eos();
  enc.end();
  enc.finishStream();
  return enc.bytes();
}

function streamed(input: Uint8Array, sizes: readonly number[]): { out: Uint8Array; report: ReencodeReport } {
  const c = new StreamConverter();
  const parts: Uint8Array[] = [];
  try {
    for (let p = 0, k = 0; p < input.length; k++) {
      const n = sizes[k % sizes.length]!;
      for (const o of c.push(input.subarray(p, p + n))) parts.push(o.slice());
      p += n;
    }
    const e = c.end();
    parts.push(...e.chunks);
    return { out: joinChunks(parts), report: e.report };
  } catch (err) {
    c.dispose();
    throw err;
  }
}

const VARIANTS: readonly (readonly [string, BodyOptions])[] = [
  ["devices only (as QEMU sends it)", {}],
  ["a nested package", { nested: true }],
  ["a ram PART inside the package", { ramInside: true }],
  ["both", { nested: true, ramInside: true }],
];

describe("StreamEncoder PACKAGED", () => {
  it("packaged(body) and beginPackaged/endPackaged write the same bytes; the length is the body's", () => {
    const body = packageBody({});
    const a = new StreamEncoder(new ByteWriter(), POSTCOPY_FRAMING);
    a.packaged(body);
    const b = new StreamEncoder(new ByteWriter(), POSTCOPY_FRAMING);
    const at = b.beginPackaged();
    b.writer.bytes(body);
    b.endPackaged(at);
    const x = a.bytes();
    expectSame(x, b.bytes());
    expect(Array.from(x.subarray(0, 9))).toEqual([0x08, 0, CMD.PACKAGED, 0, 4, ...be32(body.length)]);
    expectSame(x.subarray(9), body);
  });

  it("a push sink gets nothing while a package is open, then the patched bytes", () => {
    const got: Uint8Array[] = [];
    const enc = new StreamEncoder((c) => got.push(c.slice()), POSTCOPY_FRAMING);
    enc.header();
    const before = got.length;
    const at = enc.beginPackaged();
    enc.ping(5);
    enc.command(CMD.POSTCOPY_RUN);
    expect(got.length).toBe(before);
    enc.endPackaged(at);
    const all = joinChunks(got);
    expect(Array.from(all.subarray(8, 17))).toEqual([0x08, 0, CMD.PACKAGED, 0, 4, ...be32(9 + 5)]);
    expect(all.length).toBe(8 + 9 + 9 + 5);
  });

  it("misuse is a STATE error", () => {
    const enc = new StreamEncoder(new ByteWriter(), POSTCOPY_FRAMING);
    expect(thrownBy(() => enc.endPackaged(0)).code).toBe("STATE");
    const at = enc.beginPackaged();
    enc.begin("part", 2);
    expect(thrownBy(() => enc.endPackaged(at)).code).toBe("STATE");
    expect(thrownBy(() => enc.beginPackaged()).code).toBe("STATE");
  });
});

describe("re-encoding postcopy (PACKAGED) streams", () => {
  it.each(VARIANTS)("%s: the decoder sees the package as built (sanity)", (_n, o) => {
    const input = postcopyStream(packageBody(o));
    const r = decodeBytes(input, { materialize: false });
    try {
      expect(r.completeness.eof).toBe(true);
      expect(r.bytes).toBe(input.length);
      const names = r.commands.map((c) => `${c.name}@${c.depth}`);
      expect(names).toEqual(expect.arrayContaining(["PACKAGED@0", "POSTCOPY_LISTEN@1", "POSTCOPY_RUN@1", "PING@0"]));
      if (o.nested) expect(names).toEqual(expect.arrayContaining(["PACKAGED@1", "PING@2"]));
      expect(r.devices.map((d) => `${d.idstr}/${d.instanceId}`)).toEqual(o.nested ? ["timer/0", "timer/1"] : ["timer/0"]);
    } finally {
      r.dispose();
    }
  });

  it.each(VARIANTS)("%s: reencodeStream and StreamConverter (one push, byte by byte) give the input's bytes", (_n, o) => {
    const input = postcopyStream(packageBody(o));
    const ref = reencodeStream(input);
    expectSame(joinChunks(ref.chunks, ref.bytes), input);
    expect(ref.report.devices).toBe(o.nested ? 2 : 1);
    expect(ref.report.rawSections).toEqual([]);
    expect(ref.report.vmdescGenerated).toBeUndefined();
    for (const sizes of [[input.length], [1], [9, 4, 1, 4096]]) {
      const s = streamed(input, sizes);
      expectSame(s.out, input);
      expect(s.report).toEqual(ref.report);
    }
  });

  it("random chunkings of every variant: identical bytes", () => {
    const inputs = VARIANTS.map(([, o]) => postcopyStream(packageBody(o)));
    fc.assert(
      fc.property(fc.nat({ max: inputs.length - 1 }), fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 12 }), (i, sizes) => {
        const s = streamed(inputs[i]!, sizes);
        expectSame(s.out, inputs[i]!);
      }),
      { numRuns: 40 },
    );
  });

  it("the StreamConverter holds the output while a package is open (its length is patched at the end)", () => {
    const input = postcopyStream(packageBody({ nested: true }));
    const r = decodeBytes(input, { materialize: false });
    const pk = r.commands.find((c) => c.cmd === CMD.PACKAGED && c.depth === 0)!;
    r.dispose();
    const c = new StreamConverter();
    try {
      const first = joinChunks(c.push(input.subarray(0, pk.offset + 20)));
      expect(first.length).toBeLessThanOrEqual(pk.offset);
      const rest = joinChunks([...c.push(input.subarray(pk.offset + 20)), ...c.end().chunks]);
      expectSame(joinChunks([first, rest]), input);
    } finally {
      c.dispose();
    }
  });

  it("bytes QEMU skips after POSTCOPY_RUN inside a package: UNSUPPORTED at their offset, both converters", () => {
    const body = packageBody({ trailing: [0x08, 0x00, 0x02] });
    const input = postcopyStream(body);
    const r = decodeBytes(input, { materialize: false });
    const run = r.commands.find((c) => c.cmd === CMD.POSTCOPY_RUN)!;
    r.dispose();
    const e1 = thrownBy(() => reencodeStream(input));
    expect(e1.code).toBe("UNSUPPORTED");
    expect(e1.offset).toBe(run.offset + 5);
    for (const sizes of [[input.length], [7]]) {
      const e2 = thrownBy(() => streamed(input, sizes));
      expect(e2.code).toBe("UNSUPPORTED");
      expect(e2.offset).toBe(run.offset + 5);
    }
  });

  it("a truncated package: a VmstreamError with an offset inside the stream, both converters", () => {
    const input = postcopyStream(packageBody({ nested: true, ramInside: true }));
    const r = decodeBytes(input, { materialize: false });
    const pk = r.commands.find((c) => c.cmd === CMD.PACKAGED && c.depth === 0)!;
    r.dispose();
    const end = pk.offset + 9 + (pk.fields.size as number);
    for (const cut of [pk.offset + 3, pk.offset + 7, pk.offset + 9, pk.offset + 30, end - 40, end - 1]) {
      const bad = input.slice(0, cut);
      const e1 = thrownBy(() => reencodeStream(bad));
      expect(e1.offset, `cut ${cut}`).toBeTypeOf("number");
      expect(e1.offset!).toBeGreaterThanOrEqual(pk.offset);
      expect(e1.offset!).toBeLessThanOrEqual(cut);
      for (const sizes of [[bad.length], [13]]) {
        const e2 = thrownBy(() => streamed(bad, sizes));
        expect(e2.code, `cut ${cut}`).toBe(e1.code);
        expect(e2.offset, `cut ${cut}`).toBe(e1.offset);
      }
    }
  });

  it("a package length that disagrees with its body (cut short inside a device): a VmstreamError, both converters", () => {
    const input = postcopyStream(packageBody({}));
    const r = decodeBytes(input, { materialize: false });
    const pk = r.commands.find((c) => c.cmd === CMD.PACKAGED)!;
    r.dispose();
    const bad = input.slice();
    new DataView(bad.buffer).setUint32(pk.offset + 5, 12); // LISTEN (5 bytes), then 7 bytes of the timer section
    const e1 = thrownBy(() => reencodeStream(bad));
    expect(e1.offset).toBeTypeOf("number");
    const e2 = thrownBy(() => streamed(bad, [5]));
    expect(e2.code).toBe(e1.code);
  });

  it("QEMU -> BER still refuses PACKAGED streams (UNSUPPORTED)", () => {
    expect(thrownBy(() => qemuToBer(postcopyStream(packageBody({})))).code).toBe("UNSUPPORTED");
  });
});
