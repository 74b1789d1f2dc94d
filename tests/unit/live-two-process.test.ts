// Two Node processes (tests/helpers/live-peer.mjs on the built dist/) migrate a live simulated guest over TCP on
// 127.0.0.1: the source's guest writes RAM on a real timer while the rounds go out under a bandwidth cap; the
// source hashes its RAM at the pause, the destination hashes the RAM it decoded after EOF: they must be equal.
// Broken transfers: the destination killed mid-stream (the source fails, its guest keeps running), the source's
// socket destroyed in the complete phase (the source fails and resumes its paused guest; the destination reports
// failed, never complete).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { sha256 } from "../helpers/bytes.js";

const PEER = fileURLToPath(new URL("../helpers/live-peer.mjs", import.meta.url));
const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

type Line = Record<string, unknown> & { event: string };
interface Peer {
  child: ChildProcess;
  lines: Line[];
  /** Resolves with the first line of this event. */
  next(event: string): Promise<Line>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
}

const children = new Set<ChildProcess>();
const dirs: string[] = [];
afterEach(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  children.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function peer(args: string[]): Peer {
  const child = spawn(process.execPath, [PEER, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  const lines: Line[] = [];
  const waiters: { event: string; resolve: (l: Line) => void }[] = [];
  let err = "";
  child.stderr!.on("data", (d) => (err = (err + d).slice(-4000)));
  createInterface({ input: child.stdout! }).on("line", (s) => {
    const l = JSON.parse(s) as Line;
    lines.push(l);
    for (const w of waiters.filter((x) => x.event === l.event)) waiters.splice(waiters.indexOf(w), 1), w.resolve(l);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once("exit", (code, signal) => res({ code, signal })));
  return {
    child,
    lines,
    exited,
    stderr: () => err,
    next: (event) => {
      const l = lines.find((x) => x.event === event);
      if (l) return Promise.resolve(l);
      return new Promise<Line>((resolve, reject) => {
        waiters.push({ event, resolve });
        void exited.then(() => setImmediate(() => reject(new Error(`peer exited before "${event}": ${err}\n${JSON.stringify(lines).slice(0, 2000)}`))));
      });
    },
  };
}

async function migrate(destArgs: string[], sourceArgs: string[]) {
  const dest = peer(["dest", ...destArgs]);
  const { port } = await dest.next("listening");
  const source = peer(["source", "--port", String(port), ...sourceArgs]);
  const [s, d] = await Promise.all([source.exited, dest.exited]);
  const result = (p: Peer) => p.lines.find((l) => l.event === "result");
  return { source, dest, sExit: s, dExit: d, sResult: result(source), dResult: result(dest) };
}

interface Round {
  round: number;
  pagesSent: number;
  dirtied: number;
}

/** `vmstream receive tcp:127.0.0.1:0 --extract DIR` as the destination; the source peer connects to it. */
async function migrateToCli(sourceArgs: string[]) {
  const dir = mkdtempSync(join(tmpdir(), "vmstream-live-"));
  dirs.push(dir);
  const extract = join(dir, "out");
  const cli = spawn(process.execPath, [MAIN, "receive", "tcp:127.0.0.1:0", "--extract", extract, "--quiet"], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(cli);
  let err = "";
  const port = await new Promise<number>((resolve, reject) => {
    cli.stderr!.on("data", (d) => {
      err += d;
      const m = /vmstream: listening on tcp:127\.0\.0\.1:(\d+)/.exec(err);
      if (m) resolve(Number(m[1]));
    });
    cli.once("exit", (code) => reject(new Error(`receive exited ${code} before listening: ${err}`)));
  });
  const exited = new Promise<number | null>((res) => cli.once("exit", (code) => res(code)));
  const source = peer(["source", "--port", String(port), ...sourceArgs]);
  const [s, code] = await Promise.all([source.exited, exited]);
  return { source, sExit: s, sResult: source.lines.find((l) => l.event === "result"), code, extract, stderr: () => err };
}

describe("two processes over TCP (the built dist/: npm run build)", () => {
  for (const mode of [
    { name: "host dirty log", args: ["--dirty", "log"] },
    { name: "dirty scan against a shadow, XBZRLE", args: ["--dirty", "scan", "--xbzrle-mib", "4"] },
  ]) {
    it(`a live guest migrates; the destination RAM equals the source RAM at the pause (${mode.name})`, async () => {
      const m = await migrate(
        [],
        ["--ram-mib", "32", "--bandwidth-mib", "32", "--dirty-rate", "5000", "--downtime-ms", "5", "--max-rounds", "30", ...mode.args],
      );
      const ctx = `source: ${m.source.stderr()} dest: ${m.dest.stderr()}`;
      expect(m.sResult, ctx).toMatchObject({ status: "complete" });
      expect(m.dResult, ctx).toMatchObject({ status: "complete" });
      expect(m.sExit.code).toBe(0);
      expect(m.dExit.code).toBe(0);
      const paused = m.source.lines.find((l) => l.event === "paused")!;
      expect(paused.hashes).toEqual(m.dResult!.hashes);
      expect(Object.keys(paused.hashes as object)).toEqual(["pc.ram"]);
      const rounds = m.sResult!.rounds as Round[];
      expect(rounds.length).toBeGreaterThan(1);
      expect(rounds[0]!.dirtied).toBeGreaterThan(0); // the guest wrote while the first pass went out
      expect(rounds.slice(1).reduce((a, r) => a + r.pagesSent, 0)).toBeGreaterThan(0);
      expect(m.dResult!.bytes).toBe(m.sResult!.totalBytes);
      if (mode.args.includes("--xbzrle-mib")) expect((m.dResult!.records as { xbzrle: number }).xbzrle).toBeGreaterThan(0);
    });
  }

  it("to `vmstream receive --extract`: the extracted RAM equals the source RAM at the pause", async () => {
    const m = await migrateToCli([
      "--ram-mib",
      "32",
      "--bandwidth-mib",
      "32",
      "--dirty-rate",
      "5000",
      "--downtime-ms",
      "5",
      "--dirty",
      "scan",
      "--xbzrle-mib",
      "4",
    ]);
    expect(m.sResult, m.stderr()).toMatchObject({ status: "complete" });
    expect(m.code, m.stderr()).toBe(0);
    expect((m.sResult!.rounds as Round[]).length).toBeGreaterThan(1);
    const paused = m.source.lines.find((l) => l.event === "paused")!;
    const ram = readFileSync(join(m.extract, "ram", "pc.ram.bin"));
    expect(ram.length).toBe(32 << 20);
    expect(sha256(ram)).toBe((paused.hashes as Record<string, string>)["pc.ram"]);
  });

  it("the destination killed mid-stream: the source reports failure and its guest runs on", async () => {
    const m = await migrate(["--die-after-bytes", String(4 << 20)], ["--ram-mib", "32", "--bandwidth-mib", "32"]);
    expect(m.dExit.signal).toBe("SIGKILL");
    expect(m.dResult).toBeUndefined();
    expect(m.sExit.code).toBe(1);
    const r = m.sResult!;
    expect(r).toMatchObject({ status: "failed", code: "MIGRATION_FAILED", guestPaused: false });
    expect(r.paused === false || r.resumed === true).toBe(true);
    expect(r.guestWritesAfter as number).toBeGreaterThan(0);
  });

  it("the source's socket destroyed in the complete phase: the source resumes its paused guest, the destination reports failed", async () => {
    const m = await migrate(
      [],
      ["--ram-mib", "32", "--bandwidth-mib", "32", "--dirty-rate", "20000", "--max-rounds", "2", "--downtime-ms", "0", "--break-after-pause"],
    );
    expect(m.source.lines.some((l) => l.event === "paused")).toBe(true);
    expect(m.sResult).toMatchObject({ status: "failed", stage: "complete", paused: true, resumed: true, guestPaused: false });
    expect(m.sResult!.guestWritesAfter as number).toBeGreaterThan(0);
    expect(m.sExit.code).toBe(1);
    expect(m.dResult).toMatchObject({ status: "failed" });
    expect(String(m.dResult!.error)).toMatch(/truncated|end of stream/);
    expect(m.dExit.code).toBe(1);
    expect(m.dest.lines.some((l) => l.status === "complete")).toBe(false);
  });

  it("the same break against `vmstream receive --extract`: exit 1, nothing extracted", async () => {
    const m = await migrateToCli([
      "--ram-mib",
      "32",
      "--bandwidth-mib",
      "32",
      "--dirty-rate",
      "20000",
      "--max-rounds",
      "2",
      "--downtime-ms",
      "0",
      "--break-after-pause",
    ]);
    expect(m.sResult).toMatchObject({ status: "failed", stage: "complete", paused: true, resumed: true, guestPaused: false });
    expect(m.code).toBe(1);
    expect(existsSync(m.extract)).toBe(false);
  });
});
