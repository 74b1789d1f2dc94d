// Every input the fuzzer kept (tests/fuzz/regressions/TARGET-HASH.bin[.gz]) replayed through its target under the
// fuzzer's watchdog: each must end in success or a clean VmstreamError within the time limit. docs/fuzzing.md.
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { REGRESSIONS, replay, TARGET_NAMES } from "../fuzz/fuzz.js";

const dir = fileURLToPath(REGRESSIONS);
const files = readdirSync(dir).filter((f) => /\.bin(\.gz)?$/.test(f));
const byTarget = new Map<string, string[]>();
for (const f of files) {
  const target = TARGET_NAMES.find((t) => f.startsWith(`${t}-`));
  if (!target) throw new Error(`${f}: the name does not start with a target (${TARGET_NAMES.join(", ")})`);
  byTarget.set(target, [...(byTarget.get(target) ?? []), f]);
}

describe("fuzz regressions", () => {
  it("the folder holds only inputs named after a target", () => {
    // (the loop above throws otherwise) and the replay below covers every file
    expect([...byTarget.values()].flat().sort()).toEqual(files.sort());
  });

  it.each([...byTarget])(
    "%s: every saved input is handled cleanly",
    async (target, names) => {
      const inputs = names.map((f) => {
        const b = readFileSync(`${dir}/${f}`);
        return new Uint8Array(f.endsWith(".gz") ? gunzipSync(b) : b);
      });
      const verdicts = await replay(target, inputs, { qemu: [], ber: [] });
      const bad = verdicts.flatMap((v, i) => (v.ok ? [] : [`${names[i]}: ${v.kind}: ${v.message.split("\n")[0]}`]));
      expect(bad).toEqual([]);
    },
    300_000,
  );
});
