// A slice of `npm run fuzz` on every test run: each target fuzzed for a few seconds from a fixed seed, under the
// same watchdog (5 s a case, process memory). A finding fails the test with where its input was saved (a temp
// dir: replay it with tests/fuzz/, then add it to tests/fuzz/regressions/ with the fix). docs/fuzzing.md.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fuzz, TARGET_NAMES } from "../fuzz/fuzz.js";
import { buildSeeds } from "../fuzz/seeds.js";

/** Seconds of fuzzing for all targets together. */
const SLICE_SECONDS = 18;

describe("fuzzing slice", () => {
  it(`every target for ${SLICE_SECONDS} s in all, seed 13: no finding`, async () => {
    const out = mkdtempSync(join(tmpdir(), "vmstream-fuzz-findings-"));
    const report = await fuzz({ targets: TARGET_NAMES, seed: 13, seconds: SLICE_SECONDS, seeds: buildSeeds(), out });
    const lines = report.findings.map((f) => `${f.target} ${f.kind} from ${f.origin} (case ${f.index}) -> ${f.file}\n  ${f.message.split("\n")[0]}`);
    expect(lines, `findings (inputs in ${out})`).toEqual([]);
    // the run did run: every target got cases (not a vacuous pass on a broken harness)
    for (const t of TARGET_NAMES) expect(report.perTarget[t], t).toBeGreaterThan(5);
  }, 120_000);
});
