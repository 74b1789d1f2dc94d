// `vmstream send` and `vmstream receive` as a user runs them (dist/cli/main.js; `npm test` builds first):
// a fixture sent over TCP on 127.0.0.1 (ephemeral ports) arrives complete, --out is byte-identical, --extract
// matches the reference hashes, --forward through a second receive is a byte-exact tap, and a truncated,
// garbled or interrupted migration makes both ends exit non-zero without leaving complete-looking output.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { sha256 } from "../helpers/bytes.js";
import { checkExtract } from "../helpers/extract-reference.js";
import { itIfInstalled, requireTool } from "../helpers/requires.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const FIX = (f: string) => fileURLToPath(new URL(`../fixtures/${f}`, import.meta.url));
const tmp = suiteTempDir("vmstream-sendrecv-");
const children = new Set<ChildProcess>();
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

const raw = (name: string) => gunzipSync(readFileSync(FIX(`${name}.mig.gz`)));

interface Done {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(args: string[]): { proc: ChildProcess; done: Promise<Done>; stderrSoFar: () => string } {
  const proc = spawn(process.execPath, [MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(proc);
  let stdout = "";
  let stderr = "";
  proc.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Done>((ok) =>
    proc.on("close", (code) => {
      children.delete(proc);
      ok({ code, stdout, stderr });
    }),
  );
  return { proc, done, stderrSoFar: () => stderr };
}

/** `vmstream receive tcp:127.0.0.1:0 ...`, resolved once it prints its listening line. */
async function receive(extra: string[] = []): Promise<{ address: string; done: Promise<Done>; proc: ChildProcess }> {
  const r = start(["receive", "tcp:127.0.0.1:0", ...extra]);
  for (;;) {
    const m = /^vmstream: listening on (tcp:127\.0\.0\.1:(\d+))$/m.exec(r.stderrSoFar());
    if (m) {
      // exactly one such line
      expect(r.stderrSoFar().match(/listening on/g)!.length).toBe(1);
      return { address: m[1]!, done: r.done, proc: r.proc };
    }
    if (r.proc.exitCode !== null) throw new Error(`receive exited early: ${r.stderrSoFar()}`);
    await new Promise((ok) => setTimeout(ok, 10));
  }
}

const send = (file: string, to: string, extra: string[] = []) => start(["send", file, to, ...extra]).done;

describe("vmstream send | receive over TCP", () => {
  it.each(["x86-pc-xbzrle", "x86-pc-block"])(
    "%s: exit 0 on both ends, --out identical to the input, --extract equal to the reference",
    async (name) => {
      const out = join(tmp(), `${name}.mig`);
      const dir = join(tmp(), `${name}-x`);
      const r = await receive(["--out", out, "--extract", dir]);
      const s = await send(FIX(`${name}.mig.gz`), r.address);
      const d = await r.done;
      expect(s.code, s.stderr).toBe(0);
      expect(d.code, d.stderr).toBe(0);
      const input = raw(name);
      expect(s.stdout).toMatch(new RegExp(`^sent: ${input.length} bytes in .* MB/s\\) to tcp:127\\.0\\.0\\.1:\\d+, \\d+ sections, \\d+ devices, complete\\n$`));
      expect(d.stdout).toMatch(
        new RegExp(
          `^complete: ${input.length} bytes in [\\d.]+ s \\([\\d.]+ MB/s\\), \\d+ sections, \\d+ devices, RAM pages: \\d+ zero, \\d+ normal, \\d+ xbzrle, \\d+ compressed, vmdesc\\n`,
        ),
      );
      if (name.includes("xbzrle")) expect(d.stdout).not.toMatch(/ 0 xbzrle/);
      expect(sha256(readFileSync(out))).toBe(sha256(input));
      expect(existsSync(out + ".partial")).toBe(false);
      expect(checkExtract(dir, name)).toBeGreaterThan(0);
      expect(existsSync(dir + ".partial")).toBe(false);
    },
    60_000,
  );

  it("--forward through a second receive: a byte-exact tap, both exit 0", async () => {
    const name = "x86-pc-64m";
    const outB = join(tmp(), "fwd-b.mig");
    const outA = join(tmp(), "fwd-a.mig");
    const b = await receive(["--out", outB, "--extract", join(tmp(), "fwd-b-x")]);
    const a = await receive(["--forward", b.address, "--out", outA]);
    const s = await send(FIX(`${name}.mig.gz`), a.address);
    const [da, db] = [await a.done, await b.done];
    expect(s.code, s.stderr).toBe(0);
    expect(da.code, da.stderr).toBe(0);
    expect(db.code, db.stderr).toBe(0);
    const want = sha256(raw(name));
    expect(sha256(readFileSync(outA))).toBe(want);
    expect(sha256(readFileSync(outB))).toBe(want);
    expect(da.stdout).toMatch(new RegExp(`^forward: ${raw(name).length} bytes to ${b.address.replace(/\./g, "\\.")}$`, "m"));
    checkExtract(join(tmp(), "fwd-b-x"), name);
  }, 60_000);

  it("a truncated stream: send and receive (and the receive behind a tap) exit 1; no complete-looking output", async () => {
    const input = raw("x86-pc-64m");
    const cutFile = join(tmp(), "cut.mig");
    writeFileSync(cutFile, input.subarray(0, input.length >> 1));
    const out = join(tmp(), "cut-out.mig");
    const dir = join(tmp(), "cut-x");
    const outB = join(tmp(), "cut-b.mig");
    const b = await receive(["--out", outB, "--extract", join(tmp(), "cut-b-x")]);
    const a = await receive(["--out", out, "--extract", dir, "--forward", b.address]);
    const s = await send(cutFile, a.address);
    const [da, db] = [await a.done, await b.done];
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/send failed: .*at byte \d+/);
    for (const [d, o, x] of [
      [da, out, dir],
      [db, outB, join(tmp(), "cut-b-x")],
    ] as const) {
      expect(d.code).toBe(1);
      expect(d.stdout).toBe("");
      expect(d.stderr).toMatch(/migration failed: .*at byte \d+/);
      expect(existsSync(o)).toBe(false);
      expect(readFileSync(o + ".partial").length).toBeLessThanOrEqual(input.length >> 1);
      expect(d.stderr).toContain(`${o}.partial`);
      expect(existsSync(x)).toBe(false);
      expect(existsSync(x + ".partial")).toBe(false);
    }
  }, 60_000);

  it("a garbled stream is caught by send before the rest goes out; receive exits 1", async () => {
    const input = Buffer.from(raw("x86-pc-64m"));
    // the QEMU_VM_EOF byte (just before the vmdesc trailer) becomes an unknown section type
    const eof = input.indexOf('{"page_size"') - 6;
    expect(input[eof]).toBe(0);
    input[eof] = 0xee;
    const bad = join(tmp(), "garbled.mig");
    writeFileSync(bad, input);
    const out = join(tmp(), "garbled-out.mig");
    const r = await receive(["--out", out]);
    // a rate cap makes send go in pieces (about rate/50 bytes), so it can stop partway
    const s = await send(bad, r.address, ["--bandwidth", "20M"]);
    const d = await r.done;
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(new RegExp(`send failed: .*at byte ${eof}`));
    const sent = Number(/cut off after (\d+) bytes/.exec(s.stderr)![1]);
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThanOrEqual(eof);
    expect(d.code).toBe(1);
    expect(d.stderr).toMatch(/migration failed: .*at byte \d+/);
    expect(existsSync(out)).toBe(false);
    expect(readFileSync(out + ".partial").length).toBe(sent);
  }, 60_000);

  it("a source that disappears mid-migration: receive exits 1 with the offset", async () => {
    const out = join(tmp(), "killed.mig");
    const r = await receive(["--out", out]);
    const s = start(["send", FIX("x86-pc-64m.mig.gz"), r.address, "--bandwidth", "100K"]);
    // wait until some bytes went through, then kill the sender
    while (!existsSync(out + ".partial") || readFileSync(out + ".partial").length < 100_000) await new Promise((ok) => setTimeout(ok, 20));
    s.proc.kill("SIGKILL");
    const d = await r.done;
    expect(d.code).toBe(1);
    expect(d.stderr).toMatch(/migration failed: .*at byte \d+/);
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  it("--bandwidth parses (100M, 512K, 1G, bytes) and the transfer completes; a bad rate is a usage error", async () => {
    const r = await receive();
    const s = await send(FIX("x86-pc-64m.mig.gz"), r.address, ["--bandwidth", "50M"]);
    expect(s.code, s.stderr).toBe(0);
    expect((await r.done).code).toBe(0);
    for (const bad of ["fast", "0", "-5M", "10X"]) {
      const u = spawnSync(process.execPath, [MAIN, "send", FIX("x86-pc-64m.mig.gz"), "tcp:127.0.0.1:1", "--bandwidth", bad], { encoding: "utf8" });
      expect(u.status, bad).toBe(2);
      expect(u.stderr).toMatch(/bandwidth/);
    }
  }, 60_000);

  it("send to a port where nothing listens: exit 1, connection refused", async () => {
    const r = await receive();
    r.proc.kill("SIGKILL");
    await r.done;
    const s = await send(FIX("x86-pc-64m.mig.gz"), r.address);
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/connection refused/);
  });
});

describe("vmstream send - | vmstream receive -", () => {
  it("pipes a migration through stdout and stdin", () => {
    const out = join(tmp(), "piped.mig");
    const dir = join(tmp(), "piped-x");
    const sh = `"${process.execPath}" "${MAIN}" send "${FIX("x86-pc-64m.mig.gz")}" - | "${process.execPath}" "${MAIN}" receive - --out "${out}" --extract "${dir}"`;
    const r = spawnSync("sh", ["-c", sh], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^complete: 908844 bytes/);
    expect(r.stderr).toMatch(/^vmstream: sent: 908844 bytes/m); // send's summary goes to stderr when the stream uses stdout
    expect(sha256(readFileSync(out))).toBe(sha256(raw("x86-pc-64m")));
    checkExtract(dir, "x86-pc-64m");
  });

  it("usage errors before listening: a non-empty --extract DIR, --forward to a non-tcp endpoint", () => {
    const dir = join(tmp(), "full");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "x"), "");
    const a = spawnSync(process.execPath, [MAIN, "receive", "tcp:127.0.0.1:0", "--extract", dir], { encoding: "utf8" });
    expect(a.status).toBe(2);
    expect(a.stderr).toMatch(/not empty/);
    expect(a.stderr).not.toMatch(/listening/);
    const b = spawnSync(process.execPath, [MAIN, "receive", "tcp:127.0.0.1:0", "--forward", "/tmp/file"], { encoding: "utf8" });
    expect(b.status).toBe(2);
    expect(b.stderr).toMatch(/--forward needs tcp/);
  });
});

describe("progress line", () => {
  // `script` (util-linux) gives the command a terminal; without one (the tests above) stderr carries no progress line
  const withScript = itIfInstalled(requireTool("script", "util-linux"));
  withScript("on a terminal send redraws one line (bar, MB, MB/s, phase) and erases it before the summary", () => {
    const out = join(tmp(), "tty.mig");
    const cmd = `"${process.execPath}" "${MAIN}" send "${FIX("x86-pc-64m.mig.gz")}" "${out}" --bandwidth 2M`;
    const r = spawnSync("script", ["-qec", cmd, "/dev/null"], { encoding: "utf8", timeout: 30_000 });
    expect(r.status, r.stdout).toBe(0);
    const redraws = r.stdout.split("\r\x1b[K").filter((s) => s.startsWith("vmstream: sending"));
    expect(redraws.length).toBeGreaterThan(2); // ~0.45 s at 2 MiB/s, redrawn every 100 ms
    for (const line of redraws) expect(line).toMatch(/^vmstream: sending( \[[#-]{24}\] \d+%)? \d+\.\d MB, \d+\.\d MB\/s, \S/);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the terminal's erase-line sequence is what the test looks for
    expect(r.stdout).toMatch(/\r\x1b\[Ksent: 908844 bytes in /); // the line is erased, then the summary
    expect(sha256(readFileSync(out))).toBe(sha256(raw("x86-pc-64m")));
    const plain = spawnSync(process.execPath, [MAIN, "send", FIX("x86-pc-64m.mig.gz"), join(tmp(), "notty.mig")], { encoding: "utf8" });
    expect(plain.status).toBe(0);
    expect(plain.stderr + plain.stdout).not.toContain("\r");
  });
});
