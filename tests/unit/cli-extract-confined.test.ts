// `vmstream extract` and `receive --extract / --raw / --out` write only inside their output, whatever it already
// contains: links planted at every level of every path extract writes (symbolic links to folders and files,
// absolute, relative and dangling; hard links to files: folders cannot have them) make the command fail with one
// line naming the link, and nothing outside the output folder changes. The paths come from what a clean run
// reports, so a file extract starts writing later is covered too.
import { spawnSync } from "node:child_process";
import { linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { sha256 } from "../helpers/bytes.js";
import { memSize, page, RAM, StreamBuilder } from "../helpers/stream-builder.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const tmp = suiteTempDir("vmstream-confined-");

function run(args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A small stream with every kind of file extract writes: a RAM block, a block-migration disk, a vmdesc. */
function smallStream(): Uint8Array {
  const b = new StreamBuilder().header().config("pc-i440fx-7.2");
  b.start(2, "ram", 4, (s) => {
    memSize(s, [["pc.ram", 8192]]);
    page(s, RAM.PAGE, 0, "pc.ram", new Uint8Array(4096).fill(0x41));
    s.be64(RAM.EOS);
  });
  // block migration: one ZERO_BLOCK chunk of device hd0 (DEVICE_BLOCK | ZERO_BLOCK), then EOS
  b.start(3, "block", 1, (s) =>
    s
      .be64(0x01 | 0x08)
      .cstr("hd0")
      .be64(0x02),
  );
  b.end(2, (s) => s.be64(RAM.EOS));
  b.end(3, (s) => s.be64(0x02));
  return b.eof().vmdesc({ page_size: 4096, devices: [] }).build();
}

/** Every entry under `root` but `skip`: type, link target or content hash, link count. */
function snapshot(root: string, skip: string): Map<string, string> {
  const seen = new Map<string, string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (p === skip || p.startsWith(skip + "/") || p.startsWith(skip + ".")) continue;
      const st = lstatSync(p);
      const rel = relative(root, p);
      if (st.isSymbolicLink()) seen.set(rel, `link ${readlinkSync(p)}`);
      else if (st.isDirectory()) {
        seen.set(rel, "dir");
        walk(p);
      } else seen.set(rel, `file ${sha256(readFileSync(p))} nlink ${st.nlink} size ${st.size}`);
    }
  };
  walk(root);
  return seen;
}

describe("extract writes only inside DIR", () => {
  const stream = () => join(tmp(), "small.mig");
  let n = 0;

  /** A case's own area: DIR, and outside it a victim file and an empty victim folder. */
  function area(): { root: string; dir: string; victimFile: string; victimDir: string } {
    const root = join(tmp(), `case-${n++}`);
    mkdirSync(root);
    const victimFile = join(root, "victim.bin");
    writeFileSync(victimFile, "do not touch");
    const victimDir = join(root, "victim-dir");
    mkdirSync(victimDir);
    return { root, dir: join(root, "out"), victimFile, victimDir };
  }

  // what a clean run writes: files relative to DIR, and the folders on their way
  let files: string[] = [];
  let folders: string[] = [];

  it("a clean run: RAM block, disk image, desc.json, state.json", () => {
    writeFileSync(stream(), smallStream());
    const a = area();
    const r = run(["extract", stream(), a.dir]);
    expect(r.status, r.stderr).toBe(0);
    files = r.stdout
      .trim()
      .split("\n")
      .map((l) => l.split("\t")[0]!);
    expect(files).toEqual(["ram/pc.ram.bin", "disk/hd0.img", "desc.json", "state.json"]);
    folders = [...new Set(files.map((f) => dirname(f)).filter((d) => d !== "."))];
    expect(
      readFileSync(join(a.dir, "ram/pc.ram.bin"))
        .subarray(0, 4096)
        .every((x) => x === 0x41),
    ).toBe(true);
    // running again over its own output replaces its files
    writeFileSync(join(a.dir, "state.json"), "old");
    expect(run(["extract", stream(), a.dir]).status).toBe(0);
    expect(readFileSync(join(a.dir, "state.json"), "utf8")).toMatch(/^\{/);
  });

  type Plant = (at: string, a: ReturnType<typeof area>) => void;
  const folderPlants: Record<string, Plant> = {
    "an absolute symbolic link to a folder outside": (at, a) => symlinkSync(a.victimDir, at),
    "a relative symbolic link to a folder outside": (at, a) => symlinkSync(relative(dirname(at), a.victimDir), at),
    "a dangling symbolic link": (at, a) => symlinkSync(join(a.victimDir, "made-by-extract"), at),
  };
  const filePlants: Record<string, Plant> = {
    "an absolute symbolic link to a file outside": (at, a) => symlinkSync(a.victimFile, at),
    "a relative symbolic link to a file outside": (at, a) => symlinkSync(relative(dirname(at), a.victimFile), at),
    "a dangling symbolic link": (at, a) => symlinkSync(join(a.victimDir, "made-by-extract"), at),
    "a hard link to a file outside": (at, a) => linkSync(a.victimFile, at),
  };

  function expectRefused(plantedAt: string, kind: string, plant: Plant): void {
    const a = area();
    const at = join(a.dir, plantedAt);
    mkdirSync(dirname(at), { recursive: true });
    plant(at, a);
    const outside = snapshot(a.root, a.dir);
    const r = run(["extract", stream(), a.dir]);
    expect(snapshot(a.root, a.dir), `${kind} at ${plantedAt}`).toEqual(outside);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr.split("\n").filter(Boolean), r.stderr).toHaveLength(1);
    const what = kind.includes("hard") ? "a hard link" : "a symbolic link";
    expect(r.stderr).toContain(`vmstream: refusing to write ${at}: it is ${what}`);
    // the link itself is left as it was, for whoever looks into it
    expect(lstatSync(at).isSymbolicLink() || lstatSync(at).nlink > 1).toBe(true);
  }

  it("a link planted at a folder extract writes into (ram/, disk/): refused, nothing outside changes", () => {
    expect(folders.length).toBeGreaterThan(0);
    for (const f of folders) for (const [kind, plant] of Object.entries(folderPlants)) expectRefused(f, kind, plant);
  });

  it("a link planted at a file extract writes (RAM block, disk image, desc.json, state.json): refused, nothing outside changes", () => {
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) for (const [kind, plant] of Object.entries(filePlants)) expectRefused(f, kind, plant);
  });

  it("DIR itself is taken as named: a symbolic link the user gives as DIR is followed", () => {
    const a = area();
    symlinkSync(a.victimDir, a.dir);
    expect(run(["extract", stream(), a.dir]).status).toBe(0);
    expect(readdirSync(a.victimDir).sort()).toEqual(["desc.json", "disk", "ram", "state.json"]);
  });

  it("something else than a folder or a file at a path: refused with its name", () => {
    const a = area();
    mkdirSync(join(a.dir, "state.json"), { recursive: true });
    writeFileSync(join(a.dir, "disk"), "a file where a folder goes");
    const r = run(["extract", stream(), a.dir]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^vmstream: refusing to write \S+\/out\/disk: it is not a folder/);
  });
});

describe("receive writes only inside its outputs", () => {
  it("--extract DIR / --raw DIR: a link planted at DIR.partial (dangling included) is a usage error before listening", () => {
    for (const flag of ["--extract", "--raw"]) {
      const root = join(tmp(), `partial${flag}`);
      mkdirSync(join(root, "victim-dir"), { recursive: true });
      const dir = join(root, "out");
      symlinkSync(join(root, "victim-dir", "new"), `${dir}.partial`);
      const r = run(["receive", "tcp:127.0.0.1:0", flag, dir]);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/\.partial exists/);
      expect(r.stderr).not.toMatch(/listening/);
      expect(readdirSync(join(root, "victim-dir"))).toEqual([]);
    }
  });

  it("--out FILE: a link planted at FILE.partial is refused, the file it leads to is untouched", () => {
    const root = join(tmp(), "out-partial");
    mkdirSync(root);
    const victim = join(root, "victim.bin");
    for (const plant of ["hard", "symbolic"] as const) {
      writeFileSync(victim, "do not touch");
      const out = join(root, `${plant}.mig`);
      if (plant === "hard") linkSync(victim, `${out}.partial`);
      else symlinkSync(victim, `${out}.partial`);
      const r = run(["receive", "tcp:127.0.0.1:0", "--out", out]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`vmstream: refusing to write ${out}.partial: it is a ${plant} link`);
      expect(readFileSync(victim, "utf8")).toBe("do not touch");
      rmSync(`${out}.partial`);
    }
  });
});
