// spapr/htab written by the library, checked by QEMU itself: a `pseries -m 256` save (SLOF, real mode: its
// htab sections carry no entries) is decoded and written again with HPTE chunks of the test's own through
// HtabWriter — valid runs in the PART (one ending on the table's last slot), in the END an overwrite and an
// invalidating run (n_valid 0, n_invalid 10). QEMU loads it (its loader bounds-checks every chunk); then the
// destination is saved again and the library decodes QEMU's own htab sections: their valid entries are exactly
// the expected table; then `cont` and the guest runs.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import type { HtabChunk, HtabItem } from "../../src/sections/spapr-htab/format.js";
import { toHex } from "../helpers/bytes.js";
import { FAST, hpte, loadAndRun, qemuSuite, saveStopped, withDecoded } from "../helpers/interop.js";
import { buildModelStream } from "../helpers/model-stream.js";
import { describeQemu, saveToFile } from "../helpers/qemu.js";
import { liveRecords, recordsAt } from "../helpers/records.js";

const PPC = "qemu-system-ppc64";

function run(index: number, n: number, salt: number): HtabChunk {
  const hptes = new Uint8Array(16 * n);
  for (let i = 0; i < n; i++) hptes.set(hpte(index + i, salt), 16 * i);
  return { index, nValid: n, nInvalid: 0, hptes };
}

/** index -> HPTE hex, for every chunk entry of every htab PART/END section of a stream (later wins). */
function htabTable(input: Uint8Array): { shift: number; entries: Map<number, string> } {
  const entries = new Map<number, string>();
  let shift = -1;
  withDecoded(
    input,
    (r) => {
      const all = liveRecords(input);
      for (const s of r.sections) {
        if (s.idstr !== "spapr/htab" || s.type === "full") continue;
        for (const x of recordsAt<HtabItem>(all, s.offset)) {
          if (x.kind === "header" && s.type === "start") shift = x.value;
          if (x.kind !== "chunk") continue;
          for (let i = 0; i < x.nValid; i++) entries.set(x.index + i, toHex(x.hptes.subarray(16 * i, 16 * i + 16)));
          for (let i = 0; i < x.nInvalid; i++) entries.delete(x.index + x.nValid + i);
        }
      }
    },
    false,
  );
  return { shift, entries };
}

describeQemu(PPC, "spapr/htab entries written by HtabWriter: QEMU loads them and saves them back", () => {
  const scratch = qemuSuite();

  it("pseries -m 256: valid runs, an overwrite, an invalidated run and the last slot survive load + re-save", async () => {
    const args = ["-machine", "pseries", "-m", "256"];
    const saved = join(scratch(), "ppc.mig");
    await saveStopped(PPC, args, saved, { runMs: 500 });

    const input = new Uint8Array(readFileSync(saved));
    const orig = htabTable(input);
    expect(orig.shift).toBeGreaterThanOrEqual(18); // a hash page table (SLOF runs in real mode)
    expect(orig.entries.size).toBe(0);
    const slots = 2 ** orig.shift / 16;

    const part = [run(100, 64, 1), run(4096, 1, 2), run(slots - 72, 72, 3)];
    const end: HtabChunk[] = [run(150, 1, 9), { index: 120, nValid: 0, nInvalid: 10, hptes: new Uint8Array(0) }];
    const want = new Map<number, string>();
    for (const c of [...part, ...end]) {
      for (let i = 0; i < c.nValid; i++) want.set(c.index + i, toHex(c.hptes.subarray(16 * i, 16 * i + 16)));
      for (let i = 0; i < c.nInvalid; i++) want.delete(c.index + c.nValid + i);
    }
    expect(want.size).toBe(64 - 10 + 1 + 72);

    const built = withDecoded(input, (decoded) => buildModelStream(input, decoded, { htab: { part, end } }));
    expect(built.htabChunks).toBe(5);
    const file = join(scratch(), "ppc-hptes.mig");
    writeFileSync(file, built.bytes);
    // what the library wrote decodes to the expected table
    expect(htabTable(built.bytes).entries).toEqual(want);

    await loadAndRun(PPC, args, file, {
      // QEMU saves what it loaded: the first htab pass sends every valid entry
      paused: async (dst) => {
        const resaved = join(scratch(), "ppc-resaved.mig");
        expect((await saveToFile(dst, resaved, { parameters: FAST })).info.status).toBe("completed");
        const back = htabTable(new Uint8Array(readFileSync(resaved)));
        expect(back.shift).toBe(orig.shift);
        expect(back.entries).toEqual(want);
      },
    });
  }, 120_000);
});
