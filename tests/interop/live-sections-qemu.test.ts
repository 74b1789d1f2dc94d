// The source engine's block and spapr/htab sections, checked by QEMU 7.2 itself. A real source is saved once for
// its RAM and device states (decoded, materialised); then MigrationSource writes a NEW stream from them over
// several rounds under a bandwidth cap, while the test changes the disk / the HPT between rounds:
//  - x86 `pc -m 16` with an 8 MiB raw IDE disk: block (id 1) then ram (id 2), zero chunks as ZERO_BLOCK; the
//    destination disk starts filled with 0xAA and must end byte-identical to the source image at the pause;
//  - ppc64 `pseries -m 256`: ram then spapr/htab (QEMU's ids), HPTEs added, overwritten and invalidated between
//    rounds; the destination is saved again and QEMU's own htab sections must carry exactly the valid entries
//    of the source table at the pause.
// Both destinations run after `cont`.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import type { BlockResult } from "../../src/sections/block/handler.js";
import type { HtabResult } from "../../src/sections/spapr-htab/handler.js";
import { sha256 } from "../helpers/bytes.js";
import { FAST, hpte, loadAndRun, pcWithDisk, qemuSuite, saveStopped, withDecoded } from "../helpers/interop.js";
import { engineOptionsOf, liveSectionId, runEngine } from "../helpers/model-stream.js";
import { describeQemu, saveToFile } from "../helpers/qemu.js";

const X86 = "qemu-system-x86_64";
const PPC = "qemu-system-ppc64";
const MiB = 1 << 20;

describeQemu(X86, "MigrationSource block section: QEMU 7.2 loads it and the disk is byte-exact", () => {
  const scratch = qemuSuite();

  it("pc with an 8 MiB disk: bulk pass, dirty chunks re-sent over rounds, zero chunks as ZERO_BLOCK", async () => {
    const SIZE = 8 * MiB;
    const srcDisk = join(scratch(), "src.raw");
    writeFileSync(srcDisk, new Uint8Array(SIZE).fill(0x11));
    const saved = join(scratch(), "src.mig");
    await saveStopped(X86, pcWithDisk(srcDisk), saved, { runMs: 300, capabilities: { block: true } });

    // the image: data chunks with zero sectors inside, chunks 1 and 4 all zero
    const img = new Uint8Array(SIZE);
    for (let s = 0; s < SIZE / 512; s++) {
      const chunk = Math.floor((s * 512) / MiB);
      if (chunk === 1 || chunk === 4 || s % 5 === 0) continue;
      for (let j = 0; j < 512; j += 7) img[s * 512 + j] = (s * 13 + j + chunk) & 0xff;
    }
    const { bytes, outcome } = withDecoded(new Uint8Array(readFileSync(saved)), (decoded) =>
      runEngine(
        {
          ...engineOptionsOf(decoded),
          blockDevices: [{ name: "ide0-hd0", data: img }],
          zeroBlocks: true,
          blockSectionId: liveSectionId(decoded, "block"),
          bandwidth: 4 * MiB,
          roundTime: 0.25,
          downtimeTarget: 0.001,
          maxRounds: 40,
        },
        (round) => {
          // the guest writes its disk while the migration runs
          if (round === 2) img.fill(0x5a, 100, 600); // chunk 0 (already sent)
          if (round === 4) img.fill(0, 6 * MiB, 7 * MiB); // chunk 6 becomes all zero
          if (round === 5) img.fill(0x33, 4 * MiB + 4096, 4 * MiB + 8192); // chunk 4 gets data
          if (round === 7) img[SIZE - 1] = 0x77; // the last byte
        },
      ),
    );
    expect(outcome.reason).toBe("converged");
    expect(outcome.rounds.length).toBeGreaterThanOrEqual(8);
    // what the engine wrote decodes to the image, with the dirty chunks re-sent
    withDecoded(
      bytes,
      (check) => {
        const dev = (check.live.block as BlockResult).devices[0]!;
        expect(sha256(dev.image!)).toBe(sha256(img));
        expect(dev.dataChunks + dev.zeroChunks).toBeGreaterThan(8);
        expect(dev.zeroChunks).toBe(3); // chunks 1, 4 in the bulk pass, 6 later
        expect(check.sections.filter((s) => s.type === "start").map((s) => s.idstr)).toEqual(["block", "ram"]);
      },
      { block: true },
    );

    const file = join(scratch(), "engine.mig");
    writeFileSync(file, bytes);
    const dstDisk = join(scratch(), "dst.raw");
    writeFileSync(dstDisk, new Uint8Array(SIZE).fill(0xaa));
    await loadAndRun(X86, pcWithDisk(dstDisk), file);
    expect(sha256(readFileSync(dstDisk))).toBe(sha256(img));
  }, 120_000);
});

describeQemu(PPC, "MigrationSource spapr/htab section: QEMU 7.2 loads the HPT and saves it back", () => {
  const scratch = qemuSuite();

  it("pseries -m 256: first pass, then added, overwritten and invalidated entries over rounds", async () => {
    const args = ["-machine", "pseries", "-m", "256"];
    const saved = join(scratch(), "ppc.mig");
    await saveStopped(PPC, args, saved, { runMs: 500 });

    const { bytes, outcome, shift, t } = withDecoded(new Uint8Array(readFileSync(saved)), (decoded) => {
      const shift = (decoded.live["spapr/htab"] as HtabResult).shift!;
      expect(shift).toBeGreaterThanOrEqual(18);
      const t = new Uint8Array(2 ** shift);
      const slots = t.length / 16;
      for (let i = 0; i < 64; i++) t.set(hpte(100 + i, 1), (100 + i) * 16);
      for (let i = 0; i < 72; i++) t.set(hpte(slots - 72 + i, 2), (slots - 72 + i) * 16);
      const built = runEngine(
        {
          ...engineOptionsOf(decoded),
          htab: { hpt: t, sectionId: liveSectionId(decoded, "spapr/htab") },
          bandwidth: 32 * MiB,
          roundTime: 0.25,
          downtimeTarget: 0,
          maxRounds: 20,
        },
        (round) => {
          if (round === 1) t.set(hpte(4096, 3), 4096 * 16); // a new entry
          if (round === 2) t.set(hpte(150, 9), 150 * 16); // an overwrite
          if (round === 3) t.fill(0, 120 * 16, 130 * 16); // an invalidated run
          if (round === 4) t[slots * 16 - 16 + 7]! &= ~1; // the last slot: V cleared, the rest left
        },
      );
      return { ...built, shift, t };
    });
    const slots = t.length / 16;
    expect(outcome.reason).toBe("converged");
    expect(outcome.rounds.length).toBeGreaterThanOrEqual(5); // the changes of rounds 1..4 went out in PARTs
    const want = new Uint8Array(t.length);
    for (let i = 0; i < slots; i++) if (t[i * 16 + 7]! & 1) want.set(t.subarray(i * 16, i * 16 + 16), i * 16);
    withDecoded(
      bytes,
      (check) => {
        const h = check.live["spapr/htab"] as HtabResult;
        expect(h.invalidated).toBeGreaterThanOrEqual(11);
        expect(sha256(h.hpt!)).toBe(sha256(want));
      },
      { htab: true },
    );

    const file = join(scratch(), "engine-ppc.mig");
    writeFileSync(file, bytes);
    await loadAndRun(PPC, args, file, {
      // QEMU saves what it loaded: its htab sections carry exactly the valid entries
      paused: async (dst) => {
        const resaved = join(scratch(), "ppc-resaved.mig");
        expect((await saveToFile(dst, resaved, { parameters: FAST })).info.status).toBe("completed");
        withDecoded(
          new Uint8Array(readFileSync(resaved)),
          (back) => {
            const hb = back.live["spapr/htab"] as HtabResult;
            expect(hb.shift).toBe(shift);
            expect(sha256(hb.hpt!)).toBe(sha256(want));
          },
          { htab: true },
        );
      },
    });
  }, 180_000);
});
