// OutputDir and createOutputFile (src/io/output-files.ts) in the process: files are new (a replaced name gets a
// new inode), links are refused at every level, names cannot leave the folder; with folder descriptors
// (/proc/self/fd, Linux) a folder swapped for a link after it was opened changes nothing outside; without them
// (other systems) the planted links are refused the same way.
import { closeSync, existsSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";
import { createOutputFile, OutputDir } from "../../src/io/output-files.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const tmp = suiteTempDir("vmstream-output-files-");
const procThere = existsSync("/proc/self/fd");
let n = 0;

function area(): { dir: string; victimFile: string; victimDir: string } {
  const root = join(tmp(), `a${n++}`);
  mkdirSync(join(root, "victim-dir"), { recursive: true });
  writeFileSync(join(root, "victim.bin"), "do not touch");
  return { dir: join(root, "out"), victimFile: join(root, "victim.bin"), victimDir: join(root, "victim-dir") };
}

function write(d: OutputDir, rel: string, text: string): void {
  const fd = d.create(rel);
  writeSync(fd, text);
  closeSync(fd);
}

const refused = (f: () => unknown, message: RegExp) => {
  expect(f).toThrow(VmstreamError);
  expect(f).toThrow(message);
};

for (const viaProc of procThere ? [true, false] : [false]) {
  describe(`OutputDir ${viaProc ? "through folder descriptors" : "by path"}`, () => {
    it("creates nested files new; a name already there as a plain file is replaced by a new file", () => {
      const a = area();
      const d = OutputDir.open(a.dir, { viaProc });
      write(d, "ram/a.bin", "one");
      write(d, "x/y/z.txt", "deep");
      // a reader holding the old file keeps its bytes: the name gets a new file, the old one is not written over
      const old = openSync(join(a.dir, "ram/a.bin"), "r");
      write(d, "ram/a.bin", "two");
      d.close();
      expect(readFileSync(join(a.dir, "ram/a.bin"), "utf8")).toBe("two");
      expect(readFileSync(old, "utf8")).toBe("one");
      closeSync(old);
      expect(readFileSync(join(a.dir, "x/y/z.txt"), "utf8")).toBe("deep");
    });

    it("refuses links at every level, names that leave the folder, and leaves the outside alone", () => {
      const a = area();
      mkdirSync(join(a.dir, "real"), { recursive: true });
      symlinkSync(a.victimDir, join(a.dir, "abs"));
      symlinkSync("../victim-dir", join(a.dir, "rel"));
      symlinkSync(join(a.victimDir, "nothing"), join(a.dir, "dangling"));
      symlinkSync(a.victimFile, join(a.dir, "real", "file-link"));
      symlinkSync(join(a.victimDir, "nothing"), join(a.dir, "real", "dangling-file"));
      linkSync(a.victimFile, join(a.dir, "real", "hard"));
      const d = OutputDir.open(a.dir, { viaProc });
      for (const f of ["abs", "rel", "dangling"]) refused(() => d.create(`${f}/x.bin`), new RegExp(`refusing to write .*/out/${f}: it is a symbolic link`));
      refused(() => d.create("real/file-link"), /it is a symbolic link/);
      refused(() => d.create("real/dangling-file"), /it is a symbolic link/);
      refused(() => d.create("real/hard"), /it is a hard link \(one of 2 names of a file\)/);
      for (const bad of ["../x", "a/../../x", "/abs", "", "a//b", "."]) refused(() => d.create(bad), /refusing to write outside/);
      d.close();
      expect(readFileSync(a.victimFile, "utf8")).toBe("do not touch");
      expect(readdirSync(a.victimDir)).toEqual([]);
    });

    it("fresh: the folder must not exist yet, a dangling link there included", () => {
      const a = area();
      symlinkSync(join(a.victimDir, "new"), `${a.dir}.partial`);
      refused(() => OutputDir.open(`${a.dir}.partial`, { fresh: true, viaProc }), /exists \(left by another run\?\)/);
      expect(readdirSync(a.victimDir)).toEqual([]);
      const d = OutputDir.open(join(a.dir, "new.partial"), { fresh: true, viaProc });
      write(d, "main.bin", "x");
      d.close();
      expect(readFileSync(join(a.dir, "new.partial", "main.bin"), "utf8")).toBe("x");
    });
  });
}

describe.runIf(procThere)("OutputDir through folder descriptors: links swapped in while it writes", () => {
  it("a folder replaced by a link after it was opened: the files still go into the folder first opened", () => {
    const a = area();
    const d = OutputDir.open(a.dir, { viaProc: true });
    write(d, "ram/a.bin", "first");
    // an attacker moves ram/ away and puts a link to the outside in its place
    renameSync(join(a.dir, "ram"), join(a.dir, "moved"));
    symlinkSync(a.victimDir, join(a.dir, "ram"));
    write(d, "ram/b.bin", "second");
    d.close();
    expect(readdirSync(a.victimDir)).toEqual([]);
    expect(readdirSync(join(a.dir, "moved")).sort()).toEqual(["a.bin", "b.bin"]);
  });

  it("DIR itself moved away and replaced by a link: the files follow the folder that was opened", () => {
    const a = area();
    const d = OutputDir.open(a.dir, { viaProc: true });
    renameSync(a.dir, `${a.dir}-moved`);
    symlinkSync(a.victimDir, a.dir);
    write(d, "state.json", "{}");
    d.close();
    expect(readdirSync(a.victimDir)).toEqual([]);
    expect(readdirSync(`${a.dir}-moved`)).toEqual(["state.json"]);
  });
});

describe("createOutputFile", () => {
  it("creates the file new; refuses a symbolic link, a hard link or a folder at the name", () => {
    const a = area();
    mkdirSync(a.dir);
    const p = join(a.dir, "out.mig.partial");
    writeFileSync(p, "old");
    const old = openSync(p, "r");
    closeSync(createOutputFile(p));
    expect(readFileSync(p, "utf8")).toBe("");
    expect(readFileSync(old, "utf8")).toBe("old");
    closeSync(old);
    const sym = join(a.dir, "sym.partial");
    symlinkSync(a.victimFile, sym);
    refused(() => createOutputFile(sym), /refusing to write .*sym\.partial: it is a symbolic link/);
    const hard = join(a.dir, "hard.partial");
    linkSync(a.victimFile, hard);
    refused(() => createOutputFile(hard), /refusing to write .*hard\.partial: it is a hard link/);
    mkdirSync(join(a.dir, "dir.partial"));
    refused(() => createOutputFile(join(a.dir, "dir.partial")), /it is a folder/);
    expect(readFileSync(a.victimFile, "utf8")).toBe("do not touch");
  });
});
