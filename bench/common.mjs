// What the benchmarks share: the memory-read probe and the deterministic 1 GiB-style RAM image.

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
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
