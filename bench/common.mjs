// What the benchmarks share: the memory-read probe and the deterministic 1 GiB-style RAM image.

import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The memory-read anchor: a bench-only wasm module summing every v128 of a region of `memory`. */
export function loadProbe(memory) {
  const wasm = join(root, "build/probe.wasm");
  if (!existsSync(wasm)) execFileSync(join(root, "node_modules/.bin/asc"), ["--config", "bench/asconfig.json"], { cwd: root, stdio: "inherit" });
  const mod = new WebAssembly.Module(readFileSync(wasm));
  return new WebAssembly.Instance(mod, { env: { memory, abort() {} } }).exports;
}

/** xorshift32 from a fixed seed: every benchmark draws the same data. */
export function makeRng(seed = 0x12345678) {
  let s = seed;
  const rnd = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  const fillRandom = (memory, ptr, len) => {
    const w = new Uint32Array(memory.buffer, ptr, len >>> 2);
    for (let i = 0; i < w.length; i++) w[i] = rnd();
  };
  return { rnd, fillRandom };
}

/**
 * The RAM image of the foundation benchmark at `ram` (`bytes` long, 4 KiB pages): 50 % zero pages,
 * 30 % zero but one u32 in the last 64 bytes, 20 % random. Returns each page's kind (0, 1, 2).
 */
export function fillRamImage(memory, ram, bytes, rng, P = 4096) {
  const pages = bytes / P;
  const kinds = new Uint8Array(pages);
  const u32 = new Uint32Array(memory.buffer, ram, bytes >>> 2);
  u32.fill(0);
  for (let p = 0; p < pages; p++) {
    const r = rng.rnd() % 10;
    kinds[p] = r < 5 ? 0 : r < 8 ? 1 : 2;
    if (kinds[p] === 1) u32[(p * P + P - 64 + 4 * (rng.rnd() % 16)) >>> 2] = rng.rnd() | 1;
    else if (kinds[p] === 2) rng.fillRandom(memory, ram + p * P, P);
  }
  return kinds;
}

/** The machine a benchmark ran on (name it in every result), plus the run's own settings. */
export function machineInfo(extra = {}) {
  return {
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.arch()}`,
    loadavg: os.loadavg().map((x) => +x.toFixed(2)),
    date: new Date().toISOString(),
    ...extra,
  };
}

/**
 * A paused (-S) x86 `pc` QEMU for a benchmark: `ramMiB` of RAM, `extra` arguments, QMP on a socket in `dir`,
 * killed with its parent when setpriv is there; `prefix`: a command to run it under (e.g. one that turns
 * transparent huge pages off). Returns { child, qmp, argv, stderr(), stop() }.
 */
export async function startBenchQemu({ binary = "qemu-system-x86_64", dir, ramMiB, extra = [], prefix = [] }) {
  const { QmpClient } = await import(join(root, "dist/qmp/index.js"));
  const sock = join(dir, `qmp-${process.pid}-${benchQemuCount++}.sock`);
  const argv = [
    "-machine",
    "pc",
    "-m",
    String(ramMiB),
    "-nodefaults",
    "-accel",
    "tcg",
    "-display",
    "none",
    "-S",
    ...extra,
    "-qmp",
    `unix:${sock},server=on,wait=off`,
  ];
  const setpriv = !spawnSync("setpriv", ["--pdeathsig", "KILL", "--", "true"]).error;
  const cmd = [...prefix, ...(setpriv ? ["setpriv", "--pdeathsig", "KILL", "--"] : []), binary, ...argv];
  const child = spawn(cmd[0], cmd.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr.on("data", (d) => (err = (err + d).slice(-4000)));
  const exited = new Promise((res) => child.once("exit", res));
  let qmp;
  try {
    qmp = await QmpClient.connect(sock, { connectTimeoutMs: 30_000, commandTimeoutMs: 120_000 });
  } catch (e) {
    child.kill("SIGKILL");
    throw new Error(`QEMU did not start: ${e.message}\n${err}`);
  }
  return {
    child,
    qmp,
    argv: [binary, ...argv],
    stderr: () => err,
    async stop() {
      await qmp.execute("quit", undefined, { timeoutMs: 3000 }).catch(() => undefined);
      const t = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(t);
      qmp.close();
      rmSync(sock, { force: true });
    },
  };
}
let benchQemuCount = 0;

/** The median of a list of numbers (the mean of the middle two for an even count). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
