// Hostile input, part 1: random mutations of the 747-byte `-machine none` stream (flip, special bytes,
// insert, delete, huge lengths, duplicate, swap, truncate), decoded with every device strategy and random
// chunking. Each case must end in success or a VmstreamError with an offset — never another exception, never
// an INTERNAL error, never a hang. Seeded, so failures reproduce.
import { describe, expect, it } from "vitest";
import { analyzeDecoderOptions } from "../../src/analyze/report.js";
import { createKernels } from "../../src/kernels/index.js";
import { registryFromMap } from "../../src/sections/device/registry.js";
import type { StreamDecoderOptions } from "../../src/sections/stream.js";
import { x86Devices } from "../../src/vmstate/devices/index.js";
import { toHex } from "../helpers/bytes.js";
import { decodeOutcome, mutate, type Outcome } from "../helpers/mutate.js";
import { NONE_VMDESC, noneStream } from "../helpers/none-stream.js";
import { SeededRandom } from "../helpers/random.js";

const describeFromVmdesc = analyzeDecoderOptions.describe!;

const kernels = createKernels();
const base = noneStream();
const STRATEGIES: [string, StreamDecoderOptions][] = [
  ["vmdesc fallback", { kernels }],
  ["describe hook", { kernels, describe: describeFromVmdesc }],
  ["x86 registry", { kernels, devices: registryFromMap(x86Devices) }],
  ["vmdesc first", { kernels, vmdesc: NONE_VMDESC, describe: describeFromVmdesc }],
  ["materialised", { kernels, materialize: true, devices: registryFromMap(x86Devices) }],
];
const NONE_CASES_PER_STRATEGY = 20_000;

describe("mutations of the -machine none stream", () => {
  it.each(STRATEGIES)("%s: %#", (_name, options) => {
    const rng = new SeededRandom(0x9e3779b9 ^ options.toString().length ^ (STRATEGIES.findIndex((s) => s[1] === options) * 7919));
    const codes = new Map<string, number>();
    let ok = 0;
    let worst = 0;
    const memBefore = kernels.memory.buffer.byteLength;
    for (let i = 0; i < NONE_CASES_PER_STRATEGY; i++) {
      let { bytes } = mutate(base, rng);
      if (rng.int(4) === 0) bytes = mutate(bytes, rng).bytes; // sometimes two mutations
      let out: Outcome;
      try {
        out = decodeOutcome(bytes, options, 1 + rng.int(3), rng);
      } catch (e) {
        throw new Error(`case ${i}: ${(e as Error).message}\nbytes: ${toHex(bytes)}`);
      }
      if (out.ok) ok++;
      else codes.set(out.code!, (codes.get(out.code!) ?? 0) + 1);
      worst = Math.max(worst, out.ms);
    }
    expect(worst).toBeLessThan(2000); // no case anywhere near a hang
    expect(ok).toBeGreaterThan(0);
    expect(codes.size).toBeGreaterThan(5);
    // every decode gave its kernel memory back
    expect(kernels.memory.buffer.byteLength).toBeLessThanOrEqual(memBefore + (8 << 20));
  });
});
