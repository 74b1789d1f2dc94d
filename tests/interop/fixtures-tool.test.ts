// tools/make-fixtures.ts, run as `npm run fixtures` runs it, makes x86-pc-64m with real QEMU into a temp dir: the
// stream decodes completely, has the vendored fixture's shape (machine, devices, RAM blocks, iterative sections),
// and its reference.json states what the stream holds (hashes, counts) and what QEMU reported (pmemsave, counters).
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { expect, it, onTestFinished } from "vitest";
import { decodeBytes, ramOf } from "../../src/sections/stream.js";
import { sha256 } from "../helpers/bytes.js";
import { canUseSetpriv, describeQemu } from "../helpers/qemu.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** `node --import ./tools/ts-loader.mjs tools/make-fixtures.ts ARGS` (the `fixtures` npm script), killed with the test. */
function runTool(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const argv = ["--import", "./tools/ts-loader.mjs", "tools/make-fixtures.ts", ...args];
  const [file, fileArgs] = canUseSetpriv() ? ["setpriv", ["--pdeathsig", "KILL", "--", process.execPath, ...argv]] : [process.execPath, argv];
  const child = spawn(file, fileArgs, { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL"); // this child's pid only
  });
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString("utf8")));
  return new Promise((resolve) => {
    child.once("error", (e) => resolve({ code: null, stderr: stderr + e.message }));
    child.once("exit", (code) => resolve({ code, stderr }));
  });
}

describeQemu("qemu-system-x86_64", "tools/make-fixtures.ts", () => {
  const out = suiteTempDir("vmstream-fixtures-");

  it("makes x86-pc-64m: a complete stream of the vendored shape, and a reference.json that matches it", async () => {
    const run = await runTool(["--out", out(), "--settle", "1", "x86-pc-64m"]);
    expect(run.code, run.stderr).toBe(0);
    expect(existsSync(join(out(), "x86-pc-64m.analyze.json"))).toBe(false); // no --analyze given
    const bytes = new Uint8Array(gunzipSync(readFileSync(join(out(), "x86-pc-64m.mig.gz"))));
    const ref = JSON.parse(readFileSync(join(out(), "x86-pc-64m.reference.json"), "utf8"));
    const vendored = JSON.parse(readFileSync(join(ROOT, "tests/fixtures/x86-pc-64m.reference.json"), "utf8"));
    expect(bytes.length).toBe(ref.stream_bytes);
    expect(sha256(bytes)).toBe(ref.stream_sha256);

    const r = decodeBytes(bytes, { materialize: true });
    try {
      expect(r.completeness.complete).toBe(true);
      expect(r.footers).toBe(true);
      expect(r.warnings).toEqual([]);
      expect(r.configuration?.machine).toBe("pc-i440fx-7.2");
      // The vendored fixture's shape: the same device sections and RAM blocks, ram as the only iterative section.
      const devices = r.devices.map((d) => `${d.idstr} (instance ${d.instanceId}, version ${d.version})`);
      expect(devices).toEqual(ref.scan.device_sections);
      expect(devices).toEqual(vendored.scan.device_sections);
      const ram = ramOf(r)!;
      const blocks = Object.fromEntries(ram.blocks.map((b) => [b.name, Number(b.length)]));
      expect(blocks).toEqual(ref.scan.ram.blocks);
      expect(blocks).toEqual(vendored.scan.ram.blocks);
      const iterative = r.sections.filter((s) => s.type !== "full");
      expect(new Set(iterative.map((s) => s.idstr))).toEqual(new Set(["ram"]));
      expect([iterative[0]!.type, iterative.at(-1)!.type]).toEqual(["start", "end"]);
      const parts = iterative.filter((s) => s.type === "part").length;
      expect(ref.scan.iterative_section_sequence).toEqual(["START ram x1", `PART ram x${parts}`, "END ram x1"]);

      // reference.json: counts and hashes of the stream, and what QEMU reported about it.
      for (const b of ram.blocks) {
        const want = ref.scan.ram.per_block[b.name];
        expect({ PAGE: b.pages.normal, ZERO: b.pages.zero }, b.name).toEqual({ PAGE: want.PAGE ?? 0, ZERO: want.ZERO ?? 0 });
        expect(ref.analyze_migration.extract_patched.extracted_files[b.name.replace(/^\//, "")], b.name).toEqual({
          bytes: b.data!.length,
          sha256: sha256(b.data!),
        });
      }
      expect(ram.records.eos).toBe(ref.scan.ram.records.EOS);
      expect(ram.records.normal).toBe(ref.save.query_migrate_final.ram.normal);
      expect(ram.records.zero).toBe(ref.save.query_migrate_final.ram.duplicate);
      const pcRam = ram.blocks.find((b) => b.name === "pc.ram")!.data!;
      const [slice] = ref.guest_memory_sha256.decoded_from_stream;
      expect([slice.ramblock, slice.offset, slice.length]).toEqual(["pc.ram", "0x100000", "0x3f00000"]);
      const decoded = sha256(pcRam.subarray(0x100000, 0x4000000));
      expect(slice.sha256).toBe(decoded);
      expect(ref.guest_memory_sha256.destination[0].sha256).toBe(decoded); // the loaded QEMU's pmemsave
      expect(ref.load_back.status_after_cont.status).toBe("running");
    } finally {
      r.dispose();
    }
  });
});
