// Hostile input, part 2, on the real fixtures: mutations of the x86-pc-64m device phase (33 device sections
// decoded by the x86 descriptions, then EOF), of its vmdesc JSON, and of every fixture anywhere (decoding the
// stream up to a window past the mutation), plus truncation at 200 sampled offsets of every fixture. Each
// case: success or a VmstreamError with an offset; a cut stream is always an error (EOF, or NO_DESCRIPTION
// when the vmdesc is cut off and nothing else describes the devices). Seeded.
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";
import { createKernels } from "../../src/kernels/index.js";
import { findVmdescTrailer } from "../../src/savevm/vmdesc.js";
import { decodeBytes, StreamDecoder } from "../../src/sections/stream.js";
import { decodeOutcome, mutate, type Outcome } from "../helpers/mutate.js";
import { SeededRandom } from "../helpers/random.js";
import { StreamBuilder } from "../helpers/stream-builder.js";

const kernels = createKernels();
const load = (name: string) => new Uint8Array(gunzipSync(readFileSync(new URL(`../fixtures/${name}.mig.gz`, import.meta.url))));
const NAMES = ["x86-pc-64m", "x86-pc-block", "x86-pc-block-zeroblocks", "x86-pc-xbzrle", "ppc64-pseries"];

/** Where the device phase starts: the first FULL section, from a decode of the stream. */
function devicePhase(bytes: Uint8Array): { start: number; eof: number; vmdesc: string } {
  const r = decodeBytes(bytes, { kernels });
  const first = r.sections.find((s) => s.type === "full")!;
  return { start: first.offset, eof: r.eofOffset!, vmdesc: r.vmdesc!.text };
}

describe("mutations of real streams", () => {
  const x86 = load("x86-pc-64m");
  const phase = devicePhase(x86);
  // header + configuration + the 33 device sections + EOF (no vmdesc: the x86 descriptions decode them)
  const devices = new StreamBuilder()
    .header()
    .config("pc-i440fx-7.2")
    .bytes(x86.subarray(phase.start, phase.eof + 1))
    .build();
  const devStart = devices.length - (phase.eof + 1 - phase.start);

  it("the device phase of x86-pc-64m: 10,000 mutations", () => {
    expect(decodeBytes(devices, { kernels }).devices).toHaveLength(33);
    const rng = new SeededRandom(12345);
    let ok = 0;
    const codes = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const { bytes } = mutate(devices, rng, devStart, devices.length);
      let out: Outcome;
      try {
        out = decodeOutcome(bytes, { kernels, strictDevices: rng.int(2) === 0 }, 1 + rng.int(3), rng);
      } catch (e) {
        throw new Error(`case ${i}: ${(e as Error).message}`);
      }
      if (out.ok) ok++;
      else codes.add(out.code!);
      expect(out.ms).toBeLessThan(2000);
    }
    expect(ok).toBeGreaterThan(100);
    expect(codes.size).toBeGreaterThan(4);
  });

  it("the vmdesc JSON (device sections decoded from it): 1,000 mutations", () => {
    // the none-like tail: the last device sections + EOF + the vmdesc, decoded with the vmdesc only
    const tail = new StreamBuilder().header().config("pc-i440fx-7.2").bytes(x86.subarray(phase.start, x86.length)).build();
    const jsonStart = tail.length - new TextEncoder().encode(phase.vmdesc).length;
    const rng = new SeededRandom(777);
    for (let i = 0; i < 1_000; i++) {
      const { bytes } = mutate(tail, rng, jsonStart - 5, tail.length);
      try {
        decodeOutcome(bytes, { kernels, devices: "none" });
      } catch (e) {
        throw new Error(`case ${i}: ${(e as Error).message}`);
      }
    }
  });

  it.each(NAMES)("%s: 150 mutations anywhere, decoded up to 64 KiB past the mutation", (name) => {
    const bytes = load(name);
    const rng = new SeededRandom(name.length * 1000003);
    for (let i = 0; i < 150; i++) {
      // bias towards the non-RAM parts: the first 64 KiB, the device phase, and anywhere
      const region = rng.int(3);
      const lo = region === 0 ? 0 : region === 1 ? Math.max(0, bytes.length - 200_000) : 0;
      const hi = region === 0 ? Math.min(bytes.length, 65536) : bytes.length;
      const { bytes: m, at } = mutate(bytes, rng, lo, hi);
      const window = rng.int(2) ? m : m.subarray(0, Math.min(m.length, at + 65536));
      const opts = { kernels, materialize: rng.int(10) === 0 };
      let out: Outcome;
      try {
        out = decodeOutcome(window, opts, 1 + rng.int(4), rng);
      } catch (e) {
        throw new Error(`case ${i} (at ${at}): ${(e as Error).message}`);
      }
      expect(out.ms).toBeLessThan(5000);
    }
  });

  it.each(NAMES)("%s: cut at 200 sampled offsets, always an error", (name) => {
    const bytes = load(name);
    const rng = new SeededRandom(99 + name.length);
    const tailStart = Math.max(0, bytes.length - (1 << 20));
    const vmdescAt = findVmdescTrailer(bytes.subarray(tailStart), 1 << 24, 64)!.at + tailStart;
    const offsets = new Set<number>([0, 1, 7, 8, 9, vmdescAt - 1, vmdescAt, vmdescAt + 1, bytes.length - 1]);
    while (offsets.size < 200) offsets.add(rng.int(bytes.length));
    for (const n of offsets) {
      const d = new StreamDecoder({ kernels });
      let err: unknown;
      try {
        for (let o = 0; o < n; o += 1 << 20) d.push(bytes.subarray(o, Math.min(n, o + (1 << 20))));
        d.end().dispose();
      } catch (e) {
        err = e;
        d.dispose();
      }
      // x86: the registered descriptions decode the devices, so a cut stream is EOF; right after EOF it is complete
      if (n === vmdescAt && name.startsWith("x86")) {
        expect(err, "cut right before the vmdesc").toBeUndefined();
        continue;
      }
      expect(err, `cut at ${n}`).toBeInstanceOf(VmstreamError);
      const e = err as VmstreamError;
      const allowed = name.startsWith("x86") ? ["EOF"] : ["EOF", "NO_DESCRIPTION"];
      expect(allowed, `cut at ${n}: ${e.message}`).toContain(e.code);
      expect(e.offset).toBeTypeOf("number");
    }
  });
});
