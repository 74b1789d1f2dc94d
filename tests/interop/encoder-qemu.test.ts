// Streams written by the library's encoder that a real QEMU 7.2 loads (issue 5 (c)):
//  - `-machine none`: built from scratch from the library's own descriptions (timer, globalstate), with QEMU's
//    section ids and with ids of our own (ram never gets id 0: wire-format §2.12);
//  - `-machine pc -m 16 -nodefaults`: a QEMU save decoded, then a NEW stream written from the model (RAM from
//    the materialised blocks through ramEncode, devices through their descriptions); QEMU loads it and its
//    guest memory (pmemsave) equals the source's. Also the byte-identical replay (reencodeStream) of that save.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { encodeFromModel } from "../../src/convert/model.js";
import { reencodeStream } from "../../src/convert/qemu.js";
import { joinChunks } from "../../src/io/chunks.js";
import { nodeInflate } from "../../src/io/node.js";
import { sha256 } from "../helpers/bytes.js";
import { encodeNoneStream } from "../helpers/encode-none.js";
import { loadInto, memoryHashes, qemuSuite, saveStopped, withDecoded } from "../helpers/interop.js";
import { describeQemu } from "../helpers/qemu.js";

const X86 = "qemu-system-x86_64";

describeQemu(X86, "QEMU loads streams written by the encoder", () => {
  const scratch = qemuSuite();

  describe("machine none, from scratch", () => {
    it("QEMU's own section ids: completed", async () => {
      const file = join(scratch(), "none-enc.mig");
      writeFileSync(file, encodeNoneStream({ runstate: "paused" }));
      await (await loadInto(X86, ["-machine", "none"], file)).stop();
    });

    it("section ids of our own (ram 99, timer 7, globalstate 8): completed", async () => {
      const file = join(scratch(), "none-ids.mig");
      writeFileSync(file, encodeNoneStream({ runstate: "paused", ids: { ram: 99, timer: 7, globalstate: 8 }, cpuTicksOffset: 12345n }));
      await (await loadInto(X86, ["-machine", "none"], file)).stop();
    });
  });

  describe("machine pc, 16 MiB, re-encoded from the model", () => {
    const args = ["-machine", "pc", "-m", "16"];
    // guest RAM above 1 MiB
    const MEM = [{ addr: 0x100000, size: 16 * 1024 * 1024 - 0x100000 }];
    let saved = "";
    let srcMem = "";

    beforeAll(async () => {
      // the source: a pc guest that ran a little, stopped and saved
      saved = join(scratch(), "pc16-src.mig");
      [srcMem] = await saveStopped(X86, args, saved, { runMs: 300, ranges: MEM });
    });

    it("the replay (reencodeStream) is byte-identical", () => {
      const input = new Uint8Array(readFileSync(saved));
      const r = reencodeStream(input, { decode: { inflate: nodeInflate } });
      expect(sha256(joinChunks(r.chunks))).toBe(sha256(input));
      expect(r.report.vmdescGenerated).toBe(true);
    });

    it("a new stream from the model (ramEncode + device descriptions): QEMU loads it, same guest memory", async () => {
      const input = new Uint8Array(readFileSync(saved));
      const file = join(scratch(), "pc16-model.mig");
      writeFileSync(
        file,
        withDecoded(input, (decoded) => encodeFromModel(decoded)),
      );
      const dst = await loadInto(X86, args, file);
      expect((await memoryHashes(dst, MEM, "dst"))[0]).toBe(srcMem);
      await dst.stop();
    }, 60_000);
  });
});
