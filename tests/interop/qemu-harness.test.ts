// Real QEMU 7.2 round trips through the test harness: save streams with QMP `migrate` to `exec:cat > FILE`, load
// them back into fresh QEMUs (`-incoming defer` + `migrate-incoming`), compare guest memory with `pmemsave`.
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { FAST, qemuSuite } from "../helpers/interop.js";
import { describeQemu, loadFromFile, type MigrationResult, pmemsave, saveToFile, sha256File, startQemu, streamTailComplete } from "../helpers/qemu.js";

const X86 = "qemu-system-x86_64";
/** wire-format §2.11: the complete stream of `qemu-system-x86_64 -machine none -S`. */
const NONE_SHA256 = "4d2a63664d12a2b1c5b9aba69cdc28bb650ccd9d52211250e303a862ee0f5a59";

const ms = (x: number): string => `${x.toFixed(1)} ms`;

describeQemu(X86, "QEMU harness: save and load real streams", () => {
  // Each describe saves its stream once (beforeAll) into this dir; every test reads it. A QEMU started in a test is
  // stopped (and its own dir removed) when the test ends. After the file, `pgrep -f` for this worker's QEMU tag
  // must find nothing.
  const scratch = qemuSuite();

  describe("machine none", () => {
    let file = "";
    let res: MigrationResult;
    let statusAfterSave: string | undefined;
    beforeAll(async () => {
      const src = await startQemu({ binary: X86, args: ["-machine", "none"], paused: true });
      file = join(scratch(), "none.mig");
      res = await saveToFile(src, file);
      statusAfterSave = (await src.qmp.execute("query-status")).status;
      await src.stop();
    });

    it("save: the 747-byte stream of wire-format §2.11, byte-identical", () => {
      expect(res.info.status).toBe("completed");
      const bytes = readFileSync(file);
      const sha = sha256File(file);
      console.info(`[qemu-harness] none.mig: ${bytes.length} bytes, sha256 ${sha}, save ${ms(res.wallMs)} (QMP total-time ${res.info["total-time"]} ms)`);
      expect(bytes.subarray(0, 8).toString("hex")).toBe("5145564d00000003");
      expect(bytes.includes(Buffer.from("prelaunch\0"))).toBe(true);
      expect(bytes.length).toBe(747);
      expect(sha).toBe(NONE_SHA256);
      expect(streamTailComplete(file)).toBe(true);
      expect(statusAfterSave).toBe("postmigrate");
    });

    it("load into a fresh -machine none -incoming defer: completed", async () => {
      expect(file).not.toBe("");
      const dst = await startQemu({ binary: X86, args: ["-machine", "none"], incoming: "defer" });
      const res = await loadFromFile(dst, file);
      expect(res.info.status).toBe("completed");
      // The globalstate section carries the source's runstate ("prelaunch"), which the destination adopts.
      expect((await dst.qmp.execute("query-status")).status).toBe("prelaunch");
      await dst.qmp.execute("cont");
      expect((await dst.qmp.execute("query-status")).status).toBe("running");
      await dst.stop();
    });

    it("a broken stream: QEMU rejects it and exits; loadFromFile fails with QEMU's message", async () => {
      const dst = await startQemu({ binary: X86, args: ["-machine", "none"], incoming: "defer" });
      const bad = join(dst.dir, "bad.mig");
      const good = readFileSync(file);
      // Valid header, then the configuration section names another machine.
      const b = Buffer.from(good);
      b.write("nonx", 0x0d, "latin1");
      writeFileSync(bad, b);
      await expect(loadFromFile(dst, bad, { timeoutMs: 10_000 })).rejects.toThrow(/load|nonx|Machine type/);
      const exit = await dst.exited;
      expect(exit.code).not.toBe(0);
      expect(dst.stderr()).toMatch(/Machine type received is 'nonx' and local is 'none'/);
      await dst.stop();
    });

    it("a save to an unwritable place: saveToFile throws", async () => {
      const src = await startQemu({ binary: X86, args: ["-machine", "none"], paused: true });
      // The shell's redirection fails, but a stream this small may already sit in the pipe buffer, so QEMU can
      // report "completed" (exec: cannot tell); the vmdesc-tail check then catches the missing file.
      await expect(saveToFile(src, join(src.dir, "no-such-dir", "x.mig"), { timeoutMs: 10_000, vmdescTimeoutMs: 500 })).rejects.toThrow(
        /status failed|does not end with a complete VMDESCRIPTION/,
      );
      await src.stop();
    });
  });

  describe("machine pc, 16 MiB", () => {
    const args = ["-machine", "pc", "-m", "16"];
    // Guest RAM above 1 MiB = pc.ram offsets 0x100000..end (README of the fixtures).
    const MEM_START = 0x100000;
    const MEM_LEN = 16 * 1024 * 1024 - MEM_START;
    let file = "";
    let srcMem = "";
    let res: MigrationResult;
    let dumpSize = 0;
    beforeAll(async () => {
      const src = await startQemu({ binary: X86, args });
      // Let the firmware run a little so RAM is not pristine, then pause for a deterministic memory image
      // (QEMU 7.2 under TCG can miss guest writes during a live migration; see the fixtures README).
      await new Promise((r) => setTimeout(r, 300));
      await src.qmp.execute("stop");
      file = join(scratch(), "pc16.mig");
      res = await saveToFile(src, file, { parameters: FAST });
      const dump = join(src.dir, "src.mem");
      await pmemsave(src, MEM_START, MEM_LEN, dump);
      srcMem = sha256File(dump);
      dumpSize = statSync(dump).size;
      await src.stop();
    });

    it("save (SeaBIOS ran, then stop; max-bandwidth 10 GiB/s)", () => {
      const size = statSync(file).size;
      const ram = res.info.ram;
      console.info(
        `[qemu-harness] pc16.mig: ${size} bytes; save wall ${ms(res.wallMs)} (QMP total-time ${res.info["total-time"]} ms, ` +
          `${res.polls} polls); ram normal ${ram?.normal} duplicate ${ram?.duplicate} transferred ${ram?.transferred}`,
      );
      expect(res.info.status).toBe("completed");
      expect(size).toBeGreaterThan(16 * 1024);
      expect(ram?.total).toBeGreaterThanOrEqual(16 * 1024 * 1024);
      expect(streamTailComplete(file)).toBe(true);
      expect(dumpSize).toBe(MEM_LEN);
    });

    it("load into a fresh -incoming defer QEMU: completed, same guest memory, runs after cont", async () => {
      expect(file).not.toBe("");
      const t0 = performance.now();
      const dst = await startQemu({ binary: X86, args, incoming: "defer" });
      const tStart = performance.now() - t0;
      const res = await loadFromFile(dst, file);
      console.info(`[qemu-harness] pc16.mig load wall ${ms(res.wallMs)} (${res.polls} polls); QEMU start+QMP ${ms(tStart)}`);
      expect(res.info.status).toBe("completed");
      expect((await dst.qmp.execute("query-status")).status).toBe("paused");
      const dump = join(dst.dir, "dst.mem");
      await pmemsave(dst, MEM_START, MEM_LEN, dump);
      expect(sha256File(dump)).toBe(srcMem);
      const resumed = dst.qmp.waitEvent("RESUME", undefined, 5000);
      await dst.qmp.execute("cont");
      await resumed;
      expect((await dst.qmp.execute("query-status")).status).toBe("running");
      await dst.stop();
    });
  });
});
