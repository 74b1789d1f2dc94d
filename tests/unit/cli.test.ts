// The `vmstream` command as a user runs it (the built dist/cli/main.js; `npm test` builds first).
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { checkExtract } from "../helpers/extract-reference.js";
import { noneStream } from "../helpers/none-stream.js";
import { memSize, page, RAM, StreamBuilder } from "../helpers/stream-builder.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const FIX = (f: string) => fileURLToPath(new URL(`../fixtures/${f}`, import.meta.url));
const tmp = suiteTempDir("vmstream-cli-");

function run(args: string[], input?: Uint8Array) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { input, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout.toString("utf8"), stderr: r.stderr.toString("utf8"), raw: r.stdout };
}

describe("vmstream analyze", () => {
  it("prints exactly what QEMU 7.2's analyze-migration.py printed (x86-pc-64m, ppc64-pseries)", () => {
    expect(existsSync(MAIN)).toBe(true);
    const x86 = run(["analyze", FIX("x86-pc-64m.mig.gz")]);
    expect(x86.status).toBe(0);
    expect(x86.stdout).toBe(readFileSync(FIX("x86-pc-64m.analyze.json"), "utf8"));
    const ppc = run(["analyze", FIX("ppc64-pseries.mig.gz")]);
    expect(ppc.status).toBe(0);
    expect(ppc.stdout).toBe(gunzipSync(readFileSync(FIX("ppc64-pseries.analyze.json.gz"))).toString("utf8"));
  });

  it("--dump desc prints the stream's vmdesc as the script does", () => {
    const r = run(["analyze", "--dump", "desc", FIX("x86-pc-64m.mig.gz")]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(readFileSync(FIX("x86-pc-64m.analyze-desc.json"), "utf8"));
  });

  it.each(["x86-pc-block", "x86-pc-block-zeroblocks", "x86-pc-xbzrle"])(
    "goes on where the script fails: %s (device sections and RAM sizes as the patched script)",
    (name) => {
      const r = run(["analyze", FIX(`${name}.mig.gz`)]);
      expect(r.status).toBe(0);
      const ours = JSON.parse(r.stdout) as Record<string, Record<string, unknown>>;
      const patched = JSON.parse(readFileSync(FIX(`${name}.analyze-patched.json`), "utf8")) as Record<string, Record<string, unknown>>;
      for (const [key, value] of Object.entries(patched)) {
        if (key.startsWith("ram (")) expect(ours[key]!["section sizes"], key).toEqual(value["section sizes"]);
        else if (key.startsWith("block (")) expect(ours[key], key).toBeDefined();
        else expect(ours[key], key).toEqual(value);
      }
      if (name.includes("block")) {
        const block = Object.entries(ours).find(([k]) => k.startsWith("block ("))![1] as { devices: Record<string, Record<string, string>> };
        expect(Object.keys(block.devices)).toEqual(["ide0-hd0"]);
        expect(block.devices["ide0-hd0"]!["bytes up to"]).toBe("0x0000000000800000");
      }
    },
  );

  it("--memory shows RAM by page, re-sent zero pages as zero", () => {
    const r = run(["analyze", "--memory", FIX("x86-pc-64m.mig.gz")]);
    expect(r.status).toBe(0);
    const doc = JSON.parse(r.stdout);
    const mem = doc["ram (2)"].memory;
    expect(Object.keys(mem["pc.ram"]).length).toBe(0x4000000 / 4096);
    expect(mem["/rom@etc/acpi/rsdp"]["0x0000000000000000"]).toMatch(/^52 53 44 20 50 54 52 20/); // "RSD PTR "
    expect(Object.values(mem["pc.ram"]).filter((v) => v === "Filled with 0x00").length).toBeGreaterThan(10000);
  });

  it("reads stdin (-), gzip or not", () => {
    const gz = readFileSync(FIX("x86-pc-64m.mig.gz"));
    const a = run(["analyze", "-"], gz);
    const b = run(["analyze", "-"], gunzipSync(gz));
    expect(a.status).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout).toBe(readFileSync(FIX("x86-pc-64m.analyze.json"), "utf8"));
  });
});

describe("vmstream dump", () => {
  it("prints the pretty trace of every device section after a header line, and iterative summaries", () => {
    const r = run(["dump", FIX("x86-pc-64m.mig.gz")]);
    expect(r.status).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^# ram: 8 blocks, 84484096 bytes; \d+ zero, \d+ normal, 0 xbzrle, 0 compressed page records; 3 sections$/);
    expect(lines.filter((l) => l.startsWith("# ") && / instance \d+ version \d+$/.test(l)).length).toBe(33);
    expect(lines).toContain("# i8259 instance 1 version 1");
    expect(lines).toContain("# 0000:00:01.0/PIIX3 instance 0 version 3");
    expect(lines.some((l) => /^PIIX3\.PCIDevice\.config\(256\)\(1\)\.\[255\] = \(uint8\) 0x[0-9a-f]+$/.test(l))).toBe(true);
    expect(lines.some((l) => /^PIIX3\.PCIDevice\.irq_state\(4\)\(4\)\.\[0\] = \(uint32\) 0x0$/.test(l))).toBe(true);
    expect(lines.some((l) => /^i8259\.last_irr = \(uint8\) 0x[0-9a-f]+$/.test(l))).toBe(true);
    for (const l of lines) if (l && !l.startsWith("# ")) expect(l).toMatch(/^\S.* = \((?:u?int(?:8|16|32|64)|bool|float32|float64|str|nullptr)\) \S+$/);
  });

  it("summarises block and htab sections", () => {
    expect(run(["dump", FIX("x86-pc-block-zeroblocks.mig.gz")]).stdout).toMatch(
      /^# block: ide0-hd0 \(4 data \+ 4 zero chunks\); 9 progress records; \d+ sections$/m,
    );
    expect(run(["dump", FIX("ppc64-pseries.mig.gz")]).stdout).toMatch(
      /^# spapr\/htab: HPT 2\^21 bytes; 0 chunks, 0 valid and 0 invalidated entries; 3 sections$/m,
    );
  });
});

describe("vmstream extract", () => {
  it.each(["x86-pc-64m", "x86-pc-block", "x86-pc-xbzrle", "ppc64-pseries"])("writes RAM blocks and disks equal to the reference hashes: %s", (name) => {
    const dir = join(tmp(), name);
    const r = run(["extract", FIX(`${name}.mig.gz`), dir]);
    expect(r.status, r.stderr).toBe(0);
    expect(checkExtract(dir, name)).toBeGreaterThan(0);
  });

  it("keeps hostile block and device names inside DIR and follows no planted link", () => {
    const b = new StreamBuilder().header().config("pc-i440fx-7.2");
    b.start(2, "ram", 4, (s) => {
      memSize(s, [
        ["../../escape", 4096],
        ["/abs/path", 4096],
        ["..", 4096],
      ]);
      page(s, RAM.PAGE, 0, "../../escape", new Uint8Array(4096).fill(0x41));
      page(s, RAM.PAGE, 0, "/abs/path", new Uint8Array(4096).fill(0x42));
      page(s, RAM.PAGE, 0, "..", new Uint8Array(4096).fill(0x43));
      s.be64(RAM.EOS);
    });
    b.end(2, (s) => s.be64(RAM.EOS)).eof();
    const stream = join(tmp(), "hostile.mig");
    writeFileSync(stream, b.build());
    const dir = join(tmp(), "hostile-out");
    mkdirSync(join(dir, "ram"), { recursive: true });
    const victim = join(tmp(), "victim.bin");
    writeFileSync(victim, "do not touch");
    symlinkSync(victim, join(dir, "ram", "escape.bin"));
    const r = run(["extract", stream, dir]);
    // The planted link makes the write fail rather than follow it; nothing outside DIR changes.
    expect(readFileSync(victim, "utf8")).toBe("do not touch");
    expect(existsSync(join(tmp(), "escape.bin"))).toBe(false);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/ELOOP|link/i);
    rmSync(join(dir, "ram", "escape.bin"));
    const ok = run(["extract", stream, dir]);
    expect(ok.status, ok.stderr).toBe(0);
    const names = readdirSync(join(dir, "ram")).sort();
    expect(names).toEqual(["abs_path.bin", "escape.bin", "unnamed.bin"]);
    for (const n of names) expect(lstatSync(join(dir, "ram", n)).isFile()).toBe(true);
    expect(readFileSync(join(dir, "ram", "escape.bin"))[0]).toBe(0x41);
  });

  it("zeroes a page that is re-sent as a zero page (analyze-migration.py -x keeps the stale data)", () => {
    const b = new StreamBuilder().header().config("pc-i440fx-7.2");
    b.start(2, "ram", 4, (s) => {
      memSize(s, [["pc.ram", 8192]]);
      page(s, RAM.PAGE, 4096, "pc.ram", new Uint8Array(4096).fill(7));
      s.be64(RAM.EOS);
    });
    b.part(2, (s) => page(s, RAM.ZERO, 4096, undefined, [0]).be64(RAM.EOS));
    b.end(2, (s) => s.be64(RAM.EOS)).eof();
    const stream = join(tmp(), "rezero.mig");
    writeFileSync(stream, b.build());
    const dir = join(tmp(), "rezero-out");
    expect(run(["extract", stream, dir]).status).toBe(0);
    expect(readFileSync(join(dir, "ram", "pc.ram.bin")).every((x) => x === 0)).toBe(true);
  });
});

describe("vmstream check", () => {
  it("says OK for every fixture", () => {
    for (const name of ["x86-pc-64m", "x86-pc-block-zeroblocks", "ppc64-pseries"]) {
      const r = run(["check", FIX(`${name}.mig.gz`)]);
      expect(r.status, r.stdout).toBe(0);
      expect(r.stdout).toMatch(/^OK: \d+ bytes, machine \S+, \d+ sections .*complete\n$/);
    }
  });

  it("says BROKEN, with the offset, for a truncated or damaged stream, and exits 1", () => {
    const none = noneStream();
    const cut = join(tmp(), "cut.mig");
    writeFileSync(cut, none.subarray(0, 0x80));
    const r = run(["check", cut]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^BROKEN: .*byte \d+/);
    const bad = Uint8Array.from(none);
    bad[0x75] = 0x7f; // the footer's section id of the timer section (footer at 0x74)
    writeFileSync(cut, bad);
    const r2 = run(["check", cut]);
    expect(r2.status).toBe(1);
    expect(r2.stdout).toMatch(/^BROKEN: mismatched section id in footer at byte 116 \(section timer id 0/);
  });
});

describe("vmstream --help", () => {
  it("documents every command", () => {
    const r = run(["--help"]);
    expect(r.status).toBe(0);
    for (const c of [
      "analyze FILE [--dump state|desc] [--memory [--max-memory SIZE]]",
      "dump FILE",
      "extract FILE DIR [--max-memory SIZE]",
      "check FILE",
      "demo",
    ])
      expect(r.stdout).toContain(c);
    expect(run(["nonsense"]).status).toBe(2);
    expect(run(["analyze"]).status).toBe(2);
  });
});
