// Streams written by the library's encoder that a real QEMU 7.2 loads (issue 5 (c)):
//  - `-machine none`: built from scratch from the library's own descriptions (timer, globalstate), with QEMU's
//    section ids and with ids of our own (ram never gets id 0: wire-format §2.12);
//  - `-machine pc -m 16 -nodefaults`: a QEMU save decoded, then a NEW stream written from the model (RAM from
//    the materialised blocks through ramEncode, devices through their descriptions); QEMU loads it and its
//    guest memory (pmemsave) equals the source's. Also the byte-identical replay (reencodeStream) of that save.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ByteWriter } from "../../src/io/writer.js";
import { nodeInflate } from "../../src/io/node.js";
import { StreamEncoder } from "../../src/savevm/encoder.js";
import { encodeFromModel, joinChunks, reencodeStream } from "../../src/sections/encode/convert.js";
import { RamWriter } from "../../src/sections/encode/ram.js";
import { decodeBytes } from "../../src/sections/stream.js";
import { globalState, timers } from "../../src/vmstate/devices/index.js";
import { encodeNoneStream } from "../helpers/encode-none.js";
import { describeQemu, findProcesses, loadFromFile, pmemsave, saveToFile, scratchDir, sha256File, startQemu, stopAllQemu } from "../helpers/qemu.js";

const X86 = "qemu-system-x86_64";
const FAST = { "max-bandwidth": 10 * 1024 * 1024 * 1024 };
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describeQemu(X86, "QEMU loads streams written by the encoder", () => {
  let scratch = "";
  beforeAll(() => {
    scratch = scratchDir();
  });
  afterAll(async () => {
    await stopAllQemu();
    expect(findProcesses()).toEqual([]);
  });

  describe("machine none, from scratch", () => {
    it("QEMU's own section ids: completed", async () => {
      const file = join(scratch, "none-enc.mig");
      writeFileSync(file, encodeNoneStream({ runstate: "paused" }));
      const dst = await startQemu({ binary: X86, args: ["-machine", "none"], incoming: "defer" });
      const res = await loadFromFile(dst, file, { timeoutMs: 20_000 });
      expect(res.info.status).toBe("completed");
      await dst.stop();
    });

    it("section ids of our own (ram 99, timer 7, globalstate 8): completed", async () => {
      const w = new ByteWriter();
      const enc = new StreamEncoder(w);
      const ram = new RamWriter(w, 4096);
      enc.header();
      enc.configuration({ machine: "none" });
      enc.begin("start", 99, "ram", 0, 4);
      ram.memSize([]);
      ram.eos();
      enc.end();
      enc.begin("end", 99);
      ram.eos();
      enc.end();
      enc.device({ id: 7, idstr: "timer", instanceId: 0, description: timers, state: { cpu_ticks_offset: 12345n, cpu_clock_offset: 0n } });
      const runstate = new Uint8Array(100);
      runstate.set(new TextEncoder().encode("paused"));
      enc.device({ id: 8, idstr: "globalstate", instanceId: 0, description: globalState, state: { size: 7, runstate } });
      enc.finishStream();
      const file = join(scratch, "none-ids.mig");
      writeFileSync(file, enc.bytes());
      const dst = await startQemu({ binary: X86, args: ["-machine", "none"], incoming: "defer" });
      const res = await loadFromFile(dst, file, { timeoutMs: 20_000 });
      expect(res.info.status).toBe("completed");
      await dst.stop();
    });
  });

  describe("machine pc, 16 MiB, re-encoded from the model", () => {
    const args = ["-machine", "pc", "-m", "16"];
    const MEM_START = 0x100000;
    const MEM_LEN = 16 * 1024 * 1024 - MEM_START;
    let saved = "";
    let srcMem = "";

    it("save a paused pc guest", async () => {
      const src = await startQemu({ binary: X86, args });
      await new Promise((r) => setTimeout(r, 300));
      await src.qmp.execute("stop");
      saved = join(scratch, "pc16-src.mig");
      const res = await saveToFile(src, saved, { parameters: FAST });
      expect(res.info.status).toBe("completed");
      const dump = join(src.dir, "src.mem");
      await pmemsave(src, MEM_START, MEM_LEN, dump);
      srcMem = sha256File(dump);
      await src.stop();
    });

    it("the replay (reencodeStream) is byte-identical", () => {
      const input = new Uint8Array(readFileSync(saved));
      const r = reencodeStream(input, { decode: { inflate: nodeInflate } });
      expect(sha(joinChunks(r.chunks))).toBe(sha(input));
      expect(r.report.vmdescGenerated).toBe(true);
    });

    it("a new stream from the model (ramEncode + device descriptions): QEMU loads it, same guest memory", async () => {
      const input = new Uint8Array(readFileSync(saved));
      const decoded = decodeBytes(input, { materialize: { ram: true }, inflate: nodeInflate });
      let out: Uint8Array;
      try {
        out = encodeFromModel(decoded);
      } finally {
        decoded.dispose();
      }
      const file = join(scratch, "pc16-model.mig");
      writeFileSync(file, out);
      const dst = await startQemu({ binary: X86, args, incoming: "defer" });
      const res = await loadFromFile(dst, file);
      expect(res.info.status).toBe("completed");
      const dump = join(dst.dir, "dst.mem");
      await pmemsave(dst, MEM_START, MEM_LEN, dump);
      expect(sha256File(dump)).toBe(srcMem);
      await dst.stop();
    }, 60_000);
  });
});
