// The steps the QEMU interop tests share (built on tests/helpers/qemu.ts): a suite's scratch dir and cleanup,
// saving a source QEMU that ran a while and was stopped, loading a stream into a fresh `-incoming defer` QEMU and
// letting its guest run, guest-memory hashes, decoding a save with materialised RAM, the x86 pc-with-a-disk
// command line and an HPTE that pseries accepts; for live migrations: the `vmstream` CLI as a child process,
// guest memory compared with a decoded RAM block, and the running multiboot guest of mbguest.ts.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, onTestFinished } from "vitest";
import { nodeInflate } from "../../src/io/node.js";
import type { QmpMigrationInfo } from "../../src/qmp/index.js";
import type { DecodeResult } from "../../src/savevm/types.js";
import { decodeBytes, type StreamDecoderOptions } from "../../src/sections/stream.js";
import { MBGUEST_DIRTY } from "./mbguest.js";
import { canUseSetpriv, findProcesses, loadFromFile, pmemsave, type QemuInstance, saveToFile, scratchDir, sha256File, startQemu, stopAllQemu } from "./qemu.js";

/** Migration parameters that make a save of a stopped guest go as fast as QEMU can write. */
export const FAST = { "max-bandwidth": 10 * 2 ** 30 };
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A guest-physical range (for pmemsave). */
export interface Range {
  readonly addr: number;
  readonly size: number;
}

/**
 * For a describeQemu block: a scratch dir made in beforeAll, and in afterAll every QEMU stopped and none of this
 * worker's left running. Returns the dir (call it inside tests).
 */
export function qemuSuite(): () => string {
  let scratch = "";
  beforeAll(() => {
    scratch = scratchDir();
  });
  afterAll(async () => {
    await stopAllQemu();
    expect(findProcesses()).toEqual([]);
  });
  return () => scratch;
}

/** The guest-physical ranges of a `pc -m MIB` guest that are plain pc.ram: below 640 KiB and from 1 MiB (not the VGA/ROM window). */
export const pcRamRanges = (mib: number): Range[] => [
  { addr: 0, size: 0xa0000 },
  { addr: 0x100000, size: mib * 2 ** 20 - 0x100000 },
];

/** x86 `pc -m 16` with `disk` as a raw IDE drive (ide0-hd0). */
export const pcWithDisk = (disk: string): string[] => ["-machine", "pc", "-m", "16", "-drive", `file=${disk},format=raw,if=ide`];

/** sha256 of each range of `inst`'s guest memory (pmemsave into its dir, files named `<tag><i>.mem`). */
export async function memoryHashes(inst: QemuInstance, ranges: readonly Range[], tag: string): Promise<string[]> {
  const hashes: string[] = [];
  for (let i = 0; i < ranges.length; i++) {
    const dump = join(inst.dir, `${tag}${i}.mem`);
    await pmemsave(inst, ranges[i]!.addr, ranges[i]!.size, dump);
    hashes.push(sha256File(dump));
  }
  return hashes;
}

export interface SaveStoppedOptions {
  /** How long the guest runs before `stop` (ms). */
  readonly runMs: number;
  readonly capabilities?: Record<string, boolean>;
  /** Ranges of guest memory to hash after the save (their hashes are returned). */
  readonly ranges?: readonly Range[];
}

/** Start `binary args`, let it run, stop it, save it to `file` (status completed), hash `ranges`, stop QEMU. */
export async function saveStopped(binary: string, args: string[], file: string, o: SaveStoppedOptions): Promise<string[]> {
  const src = await startQemu({ binary, args });
  await sleep(o.runMs);
  await src.qmp.execute("stop");
  const res = await saveToFile(src, file, { parameters: FAST, ...(o.capabilities ? { capabilities: o.capabilities } : {}) });
  expect(res.info.status).toBe("completed");
  const hashes = await memoryHashes(src, o.ranges ?? [], "src");
  await src.stop();
  return hashes;
}

/** A fresh `-incoming defer` QEMU with `args` that has loaded `file` (status completed), still paused. */
export async function loadInto(binary: string, args: string[], file: string): Promise<QemuInstance> {
  const dst = await startQemu({ binary, args, incoming: "defer" });
  expect((await loadFromFile(dst, file)).info.status).toBe("completed");
  return dst;
}

export interface LoadRunOptions {
  /** Ranges of guest memory whose hashes must equal `want` before the guest runs. */
  readonly ranges?: readonly Range[];
  readonly want?: readonly string[];
  /** More checks on the loaded, still paused destination (e.g. save it again). */
  readonly paused?: (dst: QemuInstance) => Promise<void>;
  /** A guest-physical word that must change once the guest runs (its own loop carries on from the loaded state). */
  readonly probe?: number;
  /** How long the guest runs before its status is read (default 200 ms). */
  readonly runMs?: number;
}

/** {@link loadInto}, the checks of `o` while paused, then `cont`: the guest is running (and the probe moved). */
export async function loadAndRun(binary: string, args: string[], file: string, o: LoadRunOptions = {}): Promise<void> {
  const dst = await loadInto(binary, args, file);
  const ranges = o.ranges ?? [];
  const got = await memoryHashes(dst, ranges, "dst");
  for (let i = 0; i < ranges.length; i++) expect(got[i], `range ${i} at 0x${ranges[i]!.addr.toString(16)}`).toBe(o.want?.[i]);
  await o.paused?.(dst);
  const word = async (): Promise<string> => {
    const f = join(dst.dir, "probe.mem");
    await pmemsave(dst, o.probe!, 4, f);
    return readFileSync(f).toString("hex");
  };
  const before = o.probe === undefined ? "" : await word();
  await dst.qmp.execute("cont");
  await sleep(o.runMs ?? 200);
  expect(((await dst.qmp.execute("query-status")) as { status: string }).status).toBe("running");
  if (o.probe !== undefined) expect(await word()).not.toBe(before);
  expect(dst.hasExited).toBe(false);
  await dst.stop();
}

/** Decode `input` with materialised RAM (zlib for compressed pages), run `use`, dispose the result. */
export function withDecoded<T>(input: Uint8Array, use: (decoded: DecodeResult) => T, materialize: StreamDecoderOptions["materialize"] = { ram: true }): T {
  const decoded = decodeBytes(input, { materialize, inflate: nodeInflate });
  try {
    return use(decoded);
  } finally {
    decoded.dispose();
  }
}

/** An HPTE that QEMU accepts while SLOF runs in real mode (AVPN-ish first word with V set, an RPN second word). */
export function hpte(index: number, salt: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, (BigInt(index) << 12n) | (BigInt(salt & 0xf) << 4n) | 0x1n);
  dv.setBigUint64(8, (BigInt(index) << 12n) | 0x192n | (BigInt(salt & 0x7) << 3n)); // RPN, WIMG/PP bits
  return b;
}

// ------------------------------------------------------------------------------------------------ live migration

/** guest memory (pmemsave of `q` over `ranges`) vs `ram` (ram offset = guest-physical below 4 GiB): first difference. */
export async function expectMemory(q: QemuInstance, ram: Uint8Array, ranges: readonly Range[], what: string): Promise<void> {
  for (const { addr, size } of ranges) {
    const f = join(q.dir, `mem-${addr.toString(16)}.bin`);
    await pmemsave(q, addr, size, f);
    const got = readFileSync(f);
    expect(got.length).toBe(size);
    const want = ram.subarray(addr, addr + size);
    expect(want.length, `${what}: RAM shorter than the range at 0x${addr.toString(16)}`).toBe(size);
    const diff = got.findIndex((b, i) => b !== want[i]);
    expect(diff === -1 ? -1 : `0x${(addr + diff).toString(16)}`, `${what}: first differing guest-physical byte`).toBe(-1);
  }
}

/** The mbguest counter (first dword of its first dirtied page), via pmemsave. */
export async function mbguestCounter(q: QemuInstance): Promise<number> {
  const f = join(q.dir, "counter.bin");
  await pmemsave(q, MBGUEST_DIRTY.start, 4, f);
  return readFileSync(f).readUInt32LE(0);
}

/** A running QEMU (`binary args`, args loading the mbguest kernel) whose guest is seen in its dirtying loop. */
export async function startMbguest(binary: string, args: string[], timeoutMs = 20_000): Promise<QemuInstance> {
  const q = await startQemu({ binary, args });
  const t0 = performance.now();
  let last = await mbguestCounter(q);
  for (;;) {
    await sleep(50); // firmware boot time varies: wait for the counter to move
    const now = await mbguestCounter(q);
    if (last !== 0 && now !== last) return q;
    last = now;
    if (performance.now() - t0 > timeoutMs) throw new Error(`the guest's counter did not start advancing within ${timeoutMs} ms`);
  }
}

const CLI_MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

/** A `vmstream` CLI child process (dist/cli/main.js, needs `npm run build`). */
export interface CliTool {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<number | null>;
}

/** Run `node dist/cli/main.js ARGS` (parent-death signal when available; killed when the current test ends). */
export function runVmstream(args: string[]): CliTool {
  const argv = [CLI_MAIN, ...args];
  const [file, fileArgs] = canUseSetpriv() ? ["setpriv", ["--pdeathsig", "KILL", "--", process.execPath, ...argv]] : [process.execPath, argv];
  const child = spawn(file, fileArgs, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (b: Buffer) => (out += b.toString("utf8")));
  child.stderr!.on("data", (b: Buffer) => (err += b.toString("utf8")));
  const exited = new Promise<number | null>((resolve) => {
    child.once("error", () => resolve(null));
    child.once("exit", (code) => resolve(code));
  });
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL"); // this child's pid only
      await exited;
    }
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Wait for `vmstream: listening on tcp:127.0.0.1:<port>` on the tool's stderr; returns the port. */
export async function cliListeningPort(t: CliTool, timeoutMs = 20_000): Promise<number> {
  const re = /^vmstream: listening on tcp:127\.0\.0\.1:(\d+)$/m;
  const t0 = performance.now();
  for (;;) {
    const m = re.exec(t.stderr());
    if (m) return Number(m[1]);
    if (t.child.exitCode !== null || t.child.signalCode !== null) throw new Error(`vmstream exited before listening: ${t.stderr()}`);
    if (performance.now() - t0 > timeoutMs) throw new Error(`vmstream did not report listening within ${timeoutMs} ms: ${t.stderr()}`);
    await sleep(10);
  }
}

/** The tool's exit code, or a clear failure if it is still running after `timeoutMs`. */
export async function cliExitCode(t: CliTool, timeoutMs = 30_000): Promise<number | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), timeoutMs)));
  const code = await Promise.race([t.exited, late]);
  clearTimeout(timer);
  if (code === "late") throw new Error(`vmstream still running after ${timeoutMs} ms; stderr: ${t.stderr()}`);
  return code;
}

const FINAL_STATUS = new Set(["completed", "failed", "cancelled"]);

/** A destination `-incoming defer` (paused, -S) listening on an ephemeral TCP port; returns the port. */
export async function listenIncoming(dst: QemuInstance): Promise<number> {
  await dst.qmp.execute("migrate-incoming", { uri: "tcp:127.0.0.1:0" });
  const info = await dst.qmp.execute("query-migrate");
  const addrs = info["socket-address"] as { type: string; port: string }[] | undefined;
  const port = Number(addrs?.[0]?.port);
  expect(port, JSON.stringify(info)).toBeGreaterThan(0);
  return port;
}

/** Poll `query-migrate` on a destination until a final status (returned, not checked). */
export async function waitIncoming(dst: QemuInstance, timeoutMs = 30_000): Promise<QmpMigrationInfo> {
  const t0 = performance.now();
  for (;;) {
    const info = await dst.qmp.execute("query-migrate");
    if (info.status !== undefined && FINAL_STATUS.has(info.status)) return info;
    if (performance.now() - t0 > timeoutMs) throw new Error(`destination: no final status within ${timeoutMs} ms: ${JSON.stringify(info)}`);
    await sleep(20);
  }
}
