// `vmstream convert IN OUT [--to qemu|ber]` as a user runs it (the built dist/cli/main.js).
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { sha256 } from "../helpers/bytes.js";
import { noneStream } from "../helpers/none-stream.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const FIX = (f: string) => fileURLToPath(new URL(`../fixtures/${f}`, import.meta.url));
const tmp = suiteTempDir("vmstream-convert-");

function run(args: string[], input?: Uint8Array) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { input, maxBuffer: 128 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString("utf8") };
}

describe("vmstream convert", () => {
  it.each(["x86-pc-xbzrle", "x86-pc-block-zeroblocks", "ppc64-pseries"])(
    "%s: QEMU -> QEMU is byte-identical (gzip input)",
    (name) => {
      const out = join(tmp(), `${name}.mig`);
      const r = run(["convert", FIX(`${name}.mig.gz`), out]);
      expect(r.status, r.stderr).toBe(0);
      expect(sha256(readFileSync(out))).toBe(sha256(gunzipSync(readFileSync(FIX(`${name}.mig.gz`)))));
    },
    60_000,
  );

  it("reads stdin and writes stdout with - (the none stream)", () => {
    const r = run(["convert", "-", "-", "--to", "qemu"], noneStream());
    expect(r.status, r.stderr).toBe(0);
    expect(sha256(r.stdout)).toBe(sha256(noneStream()));
  });

  it.each(["x86-pc-64m", "ppc64-pseries"])(
    "%s: QEMU -> BER -> QEMU is byte-identical (--to ber, then a BER input --to qemu)",
    (name) => {
      const ber = join(tmp(), `${name}.ber`);
      const back = join(tmp(), `${name}.back.mig`);
      const a = run(["convert", FIX(`${name}.mig.gz`), ber, "--to", "ber"]);
      expect(a.status, a.stderr).toBe(0);
      const berBytes = readFileSync(ber);
      expect(berBytes[0]).toBe(0x70); // [APPLICATION 16] Stream
      const b = run(["convert", ber, back, "--to", "qemu"]);
      expect(b.status, b.stderr).toBe(0);
      expect(sha256(readFileSync(back))).toBe(sha256(gunzipSync(readFileSync(FIX(`${name}.mig.gz`)))));
      // BER in, BER out: the same BER again
      const again = join(tmp(), `${name}.again.ber`);
      expect(run(["convert", ber, again, "--to", "ber"]).status).toBe(0);
      expect(sha256(readFileSync(again))).toBe(sha256(berBytes));
    },
    60_000,
  );

  it("--to ber through stdin/stdout (the none stream); bad --to, broken QEMU and broken BER input fail", () => {
    const ber = run(["convert", "-", "-", "--to", "ber"], noneStream());
    expect(ber.status, ber.stderr).toBe(0);
    expect(ber.stdout[0]).toBe(0x70);
    const back = run(["convert", "-", "-"], ber.stdout);
    expect(back.status, back.stderr).toBe(0);
    expect(sha256(back.stdout)).toBe(sha256(noneStream()));
    const inFile = join(tmp(), "none.mig");
    writeFileSync(inFile, noneStream());
    expect(run(["convert", inFile, join(tmp(), "x"), "--to", "xml"]).status).toBe(1);
    const broken = join(tmp(), "broken.mig");
    writeFileSync(broken, noneStream().subarray(0, 100));
    const b = run(["convert", broken, join(tmp(), "y")]);
    expect(b.status).toBe(1);
    expect(b.stderr).toMatch(/truncated/);
    const brokenBer = join(tmp(), "broken.ber");
    writeFileSync(brokenBer, ber.stdout.subarray(0, ber.stdout.length - 5));
    const c = run(["convert", brokenBer, join(tmp(), "z")]);
    expect(c.status).toBe(1);
    expect(c.stderr).toMatch(/vmstream: /);
  });

  it("is in the help text; wrong arity is a usage error", () => {
    expect(run(["help"]).stdout.toString()).toMatch(/convert IN OUT \[--to qemu\|ber\]/);
    const r = run(["convert", "onlyone"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/usage: vmstream convert/);
  });
});
