// Issue 5 item 4 (d): block migration written by the library lands byte-exact on the destination's disk.
// A `pc -m 16` source with an 8 MiB raw IDE disk (ide0-hd0) is saved with block=on; the stream is decoded and
// a NEW stream written (RAM from the model, devices from their descriptions) whose block section carries an
// image of the test's own making through BlockWriter: data chunks (with zero sectors inside), all-zero chunks
// as ZERO_BLOCK records and as plain data chunks. The destination's disk starts filled with 0xAA, so every
// chunk must be written; afterwards its sha256 equals the image's.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, expect, it } from "vitest";
import { sha256 } from "../helpers/bytes.js";
import { loadAndRun, pcWithDisk, qemuSuite, saveStopped, withDecoded } from "../helpers/interop.js";
import { buildModelStream } from "../helpers/model-stream.js";
import { describeQemu } from "../helpers/qemu.js";

const X86 = "qemu-system-x86_64";
const MiB = 1024 * 1024;
const SIZE = 8 * MiB;

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
  const scratch = qemuSuite();
  let saved = "";

  beforeAll(async () => {
    // the source: a pc with a raw disk, saved with block=on
    const srcDisk = join(scratch(), "src.raw");
    writeFileSync(srcDisk, new Uint8Array(SIZE).fill(0x11));
    saved = join(scratch(), "src.mig");
    await saveStopped(X86, pcWithDisk(srcDisk), saved, { runMs: 300, capabilities: { block: true } });
  }, 60_000);

  for (const zeroBlocks of [true, false]) {
    it(`a library-written image (${zeroBlocks ? "all-zero chunks as ZERO_BLOCK" : "every chunk as data"}) on a 0xAA-filled destination disk`, async () => {
      const img = image();
      const input = new Uint8Array(readFileSync(saved));
      const { bytes } = withDecoded(input, (decoded) => buildModelStream(input, decoded, { block: { device: "ide0-hd0", image: img, zeroBlocks } }));
      // the stream is smaller by 3 MiB when the zero chunks travel as ZERO_BLOCK
      if (zeroBlocks) expect(bytes.length).toBeLessThan(input.length - 2.5 * MiB);
      const file = join(scratch(), `lib-${zeroBlocks}.mig`);
      writeFileSync(file, bytes);
      const dstDisk = join(scratch(), `dst-${zeroBlocks}.raw`);
      writeFileSync(dstDisk, new Uint8Array(SIZE).fill(0xaa));
      await loadAndRun(X86, pcWithDisk(dstDisk), file);
      expect(sha256(readFileSync(dstDisk))).toBe(sha256(img));
    }, 60_000);
  }
});
