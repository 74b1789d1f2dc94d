// The source engine's block and spapr/htab sections, checked by QEMU 7.2 itself. A real source is saved once for
// its RAM and device states (decoded, materialised); then MigrationSource writes a NEW stream from them over
// several rounds under a bandwidth cap, while the test changes the disk / the HPT between rounds:
//  - x86 `pc -m 16` with an 8 MiB raw IDE disk: block (id 1) then ram (id 2), zero chunks as ZERO_BLOCK; the
//    destination disk starts filled with 0xAA and must end byte-identical to the source image at the pause;
//  - ppc64 `pseries -m 256`: ram then spapr/htab (QEMU's ids), HPTEs added, overwritten and invalidated between
//    rounds; the destination is saved again and QEMU's own htab sections must carry exactly the valid entries
//    of the source table at the pause.
// Both destinations run after `cont`.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { nodeInflate } from "../../src/io/node.js";
import type { Kernels } from "../../src/kernels/types.js";
import { MigrationSource, type MigrationDevice, type MigrationOutcome, type MigrationSourceOptions } from "../../src/migration/index.js";
import type { BlockResult } from "../../src/sections/block/index.js";
import { deviceSpec } from "../../src/sections/encode/convert.js";
import type { HtabResult } from "../../src/sections/spapr-htab/index.js";
import { decodeBytes } from "../../src/sections/stream.js";
import type { DecodeResult } from "../../src/savevm/types.js";
import { ramBlocksOf } from "../helpers/model-stream.js";
import { describeQemu, findProcesses, loadFromFile, saveToFile, scratchDir, startQemu, stopAllQemu } from "../helpers/qemu.js";

const X86 = "qemu-system-x86_64";
const PPC = "qemu-system-ppc64";
const MiB = 1 << 20;
const FAST = { "max-bandwidth": 10 * 2 ** 30 };
const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Engine options from a decoded QEMU stream: its RAM blocks (sent once: the host log says nothing changes), its devices and ids. */
function fromDecoded(r: DecodeResult): Pick<MigrationSourceOptions, "kernels" | "blocks" | "dirtyLog" | "devices" | "machine" | "ramSectionId"> {
  const devices: MigrationDevice[] = r.devices.map((d) => {
    const s = deviceSpec(d);
    return { idstr: s.idstr, instanceId: s.instanceId, description: s.description, state: s.state, sectionId: s.id, ...(s.version !== undefined ? { version: s.version } : {}), ...(s.vmdesc !== undefined ? { vmdesc: s.vmdesc } : {}) };
  });
  return {
    kernels: r.kernels as Kernels,
    blocks: ramBlocksOf(r).map((b) => ({ name: b.name, ptr: b.ptr, length: Number(b.length) })),
    dirtyLog: () => undefined,
    devices,
    machine: r.configuration!.machine,
    ramSectionId: r.sections.find((s) => s.type === "start" && s.idstr === "ram")!.id,
  };
}

function runEngine(options: MigrationSourceOptions, advance: (round: number) => void): { bytes: Uint8Array; outcome: MigrationOutcome } {
  const chunks: Uint8Array[] = [];
  const src = new MigrationSource(options, (c) => chunks.push(c.slice()));
  let round = 0;
  try {
    const outcome = src.run(() => advance(++round));
    return { bytes: Buffer.concat(chunks), outcome };
  } finally {
    src.dispose();
  }
}

describeQemu(X86, "MigrationSource block section: QEMU 7.2 loads it and the disk is byte-exact", () => {
  let scratch = "";
  beforeAll(() => {
    scratch = scratchDir();
  });
  afterAll(async () => {
    await stopAllQemu();
    expect(findProcesses()).toEqual([]);
  });

  it("pc with an 8 MiB disk: bulk pass, dirty chunks re-sent over rounds, zero chunks as ZERO_BLOCK", async () => {
    const SIZE = 8 * MiB;
    const args = (disk: string): string[] => ["-machine", "pc", "-m", "16", "-drive", `file=${disk},format=raw,if=ide`];
    const srcDisk = join(scratch, "src.raw");
    writeFileSync(srcDisk, new Uint8Array(SIZE).fill(0x11));
    const src = await startQemu({ binary: X86, args: args(srcDisk) });
    await sleep(300);
    await src.qmp.execute("stop");
    const saved = join(scratch, "src.mig");
    expect((await saveToFile(src, saved, { capabilities: { block: true }, parameters: FAST })).info.status).toBe("completed");
    await src.stop();

    // the image: data chunks with zero sectors inside, chunks 1 and 4 all zero
    const img = new Uint8Array(SIZE);
    for (let s = 0; s < SIZE / 512; s++) {
      const chunk = Math.floor((s * 512) / MiB);
      if (chunk === 1 || chunk === 4 || s % 5 === 0) continue;
      for (let j = 0; j < 512; j += 7) img[s * 512 + j] = (s * 13 + j + chunk) & 0xff;
    }
    const input = new Uint8Array(readFileSync(saved));
    const decoded = decodeBytes(input, { materialize: { ram: true }, inflate: nodeInflate });
    let built: ReturnType<typeof runEngine>;
    try {
      const base = fromDecoded(decoded);
      const blockId = decoded.sections.find((s) => s.type === "start" && s.idstr === "block")!.id;
      built = runEngine(
        {
          ...base,
          blockDevices: [{ name: "ide0-hd0", data: img }],
          zeroBlocks: true,
          blockSectionId: blockId,
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
      );
    } finally {
      decoded.dispose();
    }
    const { bytes, outcome } = built;
    expect(outcome.reason).toBe("converged");
    expect(outcome.rounds.length).toBeGreaterThanOrEqual(8);
    // what the engine wrote decodes to the image, with the dirty chunks re-sent
    const check = decodeBytes(bytes, { materialize: { block: true } });
    const dev = (check.live.block as BlockResult).devices[0]!;
    expect(sha(dev.image!)).toBe(sha(img));
    expect(dev.dataChunks + dev.zeroChunks).toBeGreaterThan(8);
    expect(dev.zeroChunks).toBe(3); // chunks 1, 4 in the bulk pass, 6 later
    expect(check.sections.filter((s) => s.type === "start").map((s) => s.idstr)).toEqual(["block", "ram"]);
    check.dispose();

    const file = join(scratch, "engine.mig");
    writeFileSync(file, bytes);
    const dstDisk = join(scratch, "dst.raw");
    writeFileSync(dstDisk, new Uint8Array(SIZE).fill(0xaa));
    const dst = await startQemu({ binary: X86, args: args(dstDisk), incoming: "defer" });
    expect((await loadFromFile(dst, file)).info.status).toBe("completed");
    await dst.qmp.execute("cont");
    await sleep(200);
    expect(((await dst.qmp.execute("query-status")) as { status: string }).status).toBe("running");
    await dst.stop();
    expect(sha(readFileSync(dstDisk))).toBe(sha(img));
  }, 120_000);
});

/** An HPTE that QEMU accepts while SLOF runs in real mode (AVPN-ish first word with V set, an RPN second word). */
function hpte(index: number, salt: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, (BigInt(index) << 12n) | (BigInt(salt & 0xf) << 4n) | 0x1n);
  dv.setBigUint64(8, (BigInt(index) << 12n) | 0x192n | (BigInt(salt & 0x7) << 3n));
  return b;
}

describeQemu(PPC, "MigrationSource spapr/htab section: QEMU 7.2 loads the HPT and saves it back", () => {
  let scratch = "";
  beforeAll(() => {
    scratch = scratchDir();
  });
  afterAll(async () => {
    await stopAllQemu();
    expect(findProcesses()).toEqual([]);
  });

  it("pseries -m 256: first pass, then added, overwritten and invalidated entries over rounds", async () => {
    const args = ["-machine", "pseries", "-m", "256"];
    const src = await startQemu({ binary: PPC, args });
    await sleep(500);
    await src.qmp.execute("stop");
    const saved = join(scratch, "ppc.mig");
    expect((await saveToFile(src, saved, { parameters: FAST })).info.status).toBe("completed");
    await src.stop();

    const input = new Uint8Array(readFileSync(saved));
    const decoded = decodeBytes(input, { materialize: { ram: true }, inflate: nodeInflate });
    const shift = (decoded.live["spapr/htab"] as HtabResult).shift!;
    expect(shift).toBeGreaterThanOrEqual(18);
    const t = new Uint8Array(2 ** shift);
    const slots = t.length / 16;
    for (let i = 0; i < 64; i++) t.set(hpte(100 + i, 1), (100 + i) * 16);
    for (let i = 0; i < 72; i++) t.set(hpte(slots - 72 + i, 2), (slots - 72 + i) * 16);
    let built: ReturnType<typeof runEngine>;
    try {
      const base = fromDecoded(decoded);
      const htabId = decoded.sections.find((s) => s.type === "start" && s.idstr === "spapr/htab")!.id;
      built = runEngine(
        { ...base, htab: { hpt: t, sectionId: htabId }, bandwidth: 32 * MiB, roundTime: 0.25, downtimeTarget: 0, maxRounds: 20 },
        (round) => {
          if (round === 1) t.set(hpte(4096, 3), 4096 * 16); // a new entry
          if (round === 2) t.set(hpte(150, 9), 150 * 16); // an overwrite
          if (round === 3) t.fill(0, 120 * 16, 130 * 16); // an invalidated run
          if (round === 4) t[slots * 16 - 16 + 7]! &= ~1; // the last slot: V cleared, the rest left
        },
      );
    } finally {
      decoded.dispose();
    }
    const { bytes, outcome } = built;
    expect(outcome.reason).toBe("converged");
    expect(outcome.rounds.length).toBeGreaterThanOrEqual(5); // the changes of rounds 1..4 went out in PARTs
    const want = new Uint8Array(t.length);
    for (let i = 0; i < slots; i++) if (t[i * 16 + 7]! & 1) want.set(t.subarray(i * 16, i * 16 + 16), i * 16);
    const check = decodeBytes(bytes, { materialize: { htab: true } });
    const h = check.live["spapr/htab"] as HtabResult;
    expect(h.invalidated).toBeGreaterThanOrEqual(11);
    expect(sha(h.hpt!)).toBe(sha(want));
    check.dispose();

    const file = join(scratch, "engine-ppc.mig");
    writeFileSync(file, bytes);
    const dst = await startQemu({ binary: PPC, args, incoming: "defer" });
    expect((await loadFromFile(dst, file)).info.status).toBe("completed");
    const resaved = join(scratch, "ppc-resaved.mig");
    expect((await saveToFile(dst, resaved, { parameters: FAST })).info.status).toBe("completed");
    const back = decodeBytes(new Uint8Array(readFileSync(resaved)), { materialize: { htab: true }, inflate: nodeInflate });
    const hb = back.live["spapr/htab"] as HtabResult;
    expect(hb.shift).toBe(shift);
    expect(sha(hb.hpt!)).toBe(sha(want));
    back.dispose();
    await dst.qmp.execute("cont");
    await sleep(200);
    expect(((await dst.qmp.execute("query-status")) as { status: string }).status).toBe("running");
    await dst.stop();
  }, 180_000);
});
