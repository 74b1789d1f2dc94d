// Issue 5 item 4 (d): block migration written by the library lands byte-exact on the destination's disk.
// A `pc -m 16` source with an 8 MiB raw IDE disk (ide0-hd0) is saved with block=on; the stream is decoded and
// a NEW stream written (RAM from the model, devices from their descriptions) whose block section carries an
// image of the test's own making through BlockWriter: data chunks (with zero sectors inside), all-zero chunks
// as ZERO_BLOCK records and as plain data chunks. The destination's disk starts filled with 0xAA, so every
// chunk must be written; afterwards its sha256 equals the image's.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { nodeInflate } from "../../src/io/node.js";
import { decodeBytes } from "../../src/sections/stream.js";
import { buildModelStream } from "../helpers/model-stream.js";
import { describeQemu, findProcesses, loadFromFile, saveToFile, scratchDir, startQemu, stopAllQemu } from "../helpers/qemu.js";

const X86 = "qemu-system-x86_64";
const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function image(): Uint8Array {
  const img = new Uint8Array(SIZE);
  for (let s = 0; s < SIZE / 512; s++) {
    const chunk = Math.floor((s * 512) / MiB);
    if (chunk === 1 || chunk === 4 || chunk === 6) continue; // all-zero chunks
    if (s % 5 === 0) continue; // zero sectors inside data chunks
    const off = s * 512;
    for (let j = 0; j < 512; j++) img[off + j] = (s * 13 + j + chunk) & 0xff;
  }
  return img;
}

describeQemu(X86, "block migration written by BlockWriter lands byte-exact on the destination's disk", () => {
  let scratch = "";
  let saved = "";
  const args = (disk: string): string[] => ["-machine", "pc", "-m", "16", "-drive", `file=${disk},format=raw,if=ide`];
  beforeAll(() => {
    scratch = scratchDir();
  });
  afterAll(async () => {
    await stopAllQemu();
    expect(findProcesses()).toEqual([]);
  });

  it("save a pc source with a raw disk (block=on)", async () => {
    const srcDisk = join(scratch, "src.raw");
    writeFileSync(srcDisk, new Uint8Array(SIZE).fill(0x11));
    const src = await startQemu({ binary: X86, args: [...args(srcDisk)] });
    await sleep(300);
    await src.qmp.execute("stop");
    saved = join(scratch, "src.mig");
    const res = await saveToFile(src, saved, { capabilities: { block: true }, parameters: { "max-bandwidth": 10 * 2 ** 30 } });
    expect(res.info.status).toBe("completed");
    await src.stop();
  }, 60_000);

  for (const zeroBlocks of [true, false]) {
    it(`a library-written image (${zeroBlocks ? "all-zero chunks as ZERO_BLOCK" : "every chunk as data"}) on a 0xAA-filled destination disk`, async () => {
      const img = image();
      const input = new Uint8Array(readFileSync(saved));
      const decoded = decodeBytes(input, { materialize: { ram: true }, inflate: nodeInflate });
      let bytes: Uint8Array;
      try {
        bytes = buildModelStream(input, decoded, { block: { device: "ide0-hd0", image: img, zeroBlocks } }).bytes;
      } finally {
        decoded.dispose();
      }
      // the stream is smaller by 3 MiB when the zero chunks travel as ZERO_BLOCK
      if (zeroBlocks) expect(bytes.length).toBeLessThan(input.length - 2.5 * MiB);
      const file = join(scratch, `lib-${zeroBlocks}.mig`);
      writeFileSync(file, bytes);
      const dstDisk = join(scratch, `dst-${zeroBlocks}.raw`);
      writeFileSync(dstDisk, new Uint8Array(SIZE).fill(0xaa));
      const dst = await startQemu({ binary: X86, args: args(dstDisk), incoming: "defer" });
      expect((await loadFromFile(dst, file)).info.status).toBe("completed");
      await dst.qmp.execute("cont");
      await sleep(200);
      expect(((await dst.qmp.execute("query-status")) as { status: string }).status).toBe("running");
      await dst.stop();
      expect(sha(readFileSync(dstDisk))).toBe(sha(img));
    }, 60_000);
  }
});
