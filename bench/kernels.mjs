#!/usr/bin/env node
// Kernel benchmarks: GB/s for every kernel x backend on data far larger than the caches, next to
// anchors measured in the same process (this machine is shared and noisy, so only ratios within
// one run mean anything). Tasks are interleaved: each round runs every task once (tinybench),
// and a task's figure is the median over rounds.
//
//   npm run bench                      table on stdout
//   npm run bench -- --json            one JSON object on stdout
//   npm run bench -- --ram-mib 256 --rounds 3    smaller/faster run
import { Bench } from "tinybench";
import { parseArgs } from "node:util";
import { readFileSync, existsSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import os from "node:os";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { createKernels, ENC, RAM_ENCODE, DEC, BLK } = await import(join(root, "dist/index.js"));
const { ByteWriter, ByteReader } = await import(join(root, "dist/io/index.js"));

const { values: args } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    "ram-mib": { type: "string", default: "1024" },
    rounds: { type: "string", default: "5" },
  },
});
const P = 4096;
const RAM_BYTES = Number(args["ram-mib"]) * 1024 * 1024;
const RAM_PAGES = RAM_BYTES / P;
const ROUNDS = Number(args.rounds);
const XBZ_PAGES = 16384; // 64 MiB per set: far larger than L3
const DEC_BYTES = Math.min(RAM_BYTES, 256 * 1024 * 1024); // ramDecode works on the stream of this much RAM
const log = (s) => process.stderr.write(s + "\n");

// ---- one memory shared by all backends, so every kernel reads the very same bytes ----
const memory = new WebAssembly.Memory({ initial: 1 });
const backends = ["wasm-simd", "wasm-scalar", "js"];
const K = Object.fromEntries(backends.map((b) => [b, createKernels({ backend: b, memory })]));
const k0 = K["wasm-simd"];

// The memory-read anchor: a v128 sum over the region, built here (a bench-only module).
function loadProbe() {
  const wasm = join(root, "build/probe.wasm");
  if (!existsSync(wasm)) execFileSync(join(root, "node_modules/.bin/asc"), ["--config", "bench/asconfig.json"], { cwd: root, stdio: "inherit" });
  const mod = new WebAssembly.Module(readFileSync(wasm));
  return new WebAssembly.Instance(mod, { env: { memory, abort() {} } }).exports;
}
const probe = loadProbe();

// ---- data (deterministic) ----
let seed = 0x12345678;
const rnd = () => {
  seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
  return seed >>> 0;
};
function fillRandom(ptr, len) {
  const w = new Uint32Array(memory.buffer, ptr, len >>> 2);
  for (let i = 0; i < w.length; i++) w[i] = rnd();
}
log(`preparing ${RAM_BYTES >>> 20} MiB RAM image (50% zero, 30% zero but one word, 20% random)...`);
const ram = k0.alloc(RAM_BYTES);
const kinds = new Uint8Array(RAM_PAGES);
{
  const u32 = new Uint32Array(memory.buffer, ram, RAM_BYTES >>> 2);
  u32.fill(0);
  for (let p = 0; p < RAM_PAGES; p++) {
    const r = rnd() % 10;
    kinds[p] = r < 5 ? 0 : r < 8 ? 1 : 2;
    if (kinds[p] === 1) u32[(p * P + P - 64 + 4 * (rnd() % 16)) >>> 2] = rnd() | 1;
    else if (kinds[p] === 2) fillRandom(ram + p * P, P);
  }
}
const shadow = k0.alloc(RAM_BYTES);
{
  // The shadow equals RAM except 10% of pages (one word changed): dirty detection's typical case.
  const u8 = k0.u8;
  u8.copyWithin(shadow, ram, ram + RAM_BYTES);
  const v = new Uint32Array(memory.buffer);
  for (let p = 0; p < RAM_PAGES; p++) if (rnd() % 10 === 0) v[(shadow + p * P + 4 * (rnd() % 1024)) >>> 2] ^= 0x5a5a5a5a;
}
const bitmap = k0.alloc(RAM_PAGES / 8 + 64);

log("preparing XBZRLE sets (16384 pages each: typical, clustered5, random50)...");
const xOld = k0.alloc(XBZ_PAGES * P);
fillRandom(xOld, XBZ_PAGES * P);
const xSets = {};
for (const set of ["typical", "clustered5", "random50"]) {
  const ptr = k0.alloc(XBZ_PAGES * P);
  const u8 = k0.u8;
  u8.copyWithin(ptr, xOld, xOld + XBZ_PAGES * P);
  for (let p = 0; p < XBZ_PAGES; p++) {
    const base = ptr + p * P;
    if (set === "typical") {
      for (let i = 0; i < 4; i++) { const at = base + 8 * (rnd() % 512); for (let b = 0; b < 8; b++) u8[at + b] ^= 0xff; }
    } else if (set === "clustered5") {
      for (let i = 0; i < 6; i++) { const at = base + (rnd() % (P - 34)); for (let b = 0; b < 34; b++) u8[at + b] ^= 0xa5; }
    } else {
      for (let b = 0; b < P; b++) if (rnd() & 1) u8[base + b] ^= 1 + (rnd() % 255);
    }
  }
  xSets[set] = ptr;
}
const xScratch = k0.alloc(P);
// Encoded deltas for the decode benchmark (the pages that did not overflow).
const xEnc = {};
for (const set of ["typical", "clustered5"]) {
  const buf = k0.alloc(XBZ_PAGES * (P + 8));
  const offs = [];
  let at = buf;
  for (let p = 0; p < XBZ_PAGES; p++) {
    const n = k0.xbzrleEncode(xOld + p * P, xSets[set] + p * P, at, P);
    if (n > 0) { offs.push(p, at, n); at += n; }
  }
  xEnc[set] = { offs, pages: offs.length / 3 };
}
const xDest = k0.alloc(XBZ_PAGES * P);
k0.u8.copyWithin(xDest, xOld, xOld + XBZ_PAGES * P);

// RAM record batch encode: 64 MiB output windows, whole image per iteration.
const WINDOW = 64 * 1024 * 1024;
const outWin = k0.alloc(WINDOW);
const encState = k0.alloc(64, 64);
const blockName = k0.alloc(16, 16);
k0.u8.set(new TextEncoder().encode("pc.ram"), blockName);
function ramEncodeAll(k) {
  let page = 0, cont = 0, bytes = 0;
  const st = new Uint32Array(memory.buffer, encState, ENC.SIZE);
  while (page < RAM_PAGES) {
    bytes += k.ramEncode(ram, P, page, RAM_PAGES, 0, 0, 0, blockName, 6, outWin, WINDOW, RAM_ENCODE.ZERO_DETECT | cont, encState);
    const s = new Uint32Array(memory.buffer, encState, ENC.SIZE);
    page = s[ENC.NEXT_PAGE];
    cont = s[ENC.CONTINUE] ? RAM_ENCODE.CONTINUE : 0;
  }
  void st;
  return bytes;
}
// A stream of the first DEC_BYTES of RAM for the decode benchmark, plus its target block.
const decPages = DEC_BYTES / P;
const decStream = k0.alloc(decPages * (P + 16) + 4096);
let decLen = 0;
{
  let page = 0, cont = 0;
  while (page < decPages) {
    const n = k0.ramEncode(ram, P, page, decPages, 0, 0, 0, blockName, 6, decStream + decLen, decPages * (P + 16) + 4096 - decLen, RAM_ENCODE.ZERO_DETECT | cont, encState);
    decLen += n;
    const s = new Uint32Array(memory.buffer, encState, ENC.SIZE);
    page = s[ENC.NEXT_PAGE];
    cont = s[ENC.CONTINUE] ? RAM_ENCODE.CONTINUE : 0;
    if (n === 0 && page < decPages) throw new Error("ramEncode made no progress");
  }
}
const decBlock = k0.alloc(DEC_BYTES);
const decTable = k0.alloc(BLK.WORDS * 4, 64);
const decState = k0.alloc(64, 64);
function ramDecodeAll(k) {
  new Uint32Array(memory.buffer, decTable, BLK.WORDS).set([blockName, 6, decBlock, DEC_BYTES, 0, 0, 0, 0]);
  const st = new Uint32Array(memory.buffer, decState, DEC.SIZE);
  st[DEC.BLOCK] = 0xffffffff;
  const status = k.ramDecode(decStream, decLen, decTable, 1, P, decState);
  if (status < 0) throw new Error(`ramDecode failed: ${status}`);
}

const BSWAP_BYTES = 64 * 1024 * 1024;
const bsw = k0.alloc(BSWAP_BYTES);
fillRandom(bsw, BSWAP_BYTES);
const copyDst = k0.alloc(256 * 1024 * 1024);

// ---- tasks: [kernel, backend, dataset, bytes, fn] ----
const tasks = [];
const add = (kernel, backend, dataset, bytes, fn, extra = {}) => tasks.push({ kernel, backend, dataset, bytes, fn, samples: [], ...extra });
let sink = 0;
for (const b of backends) {
  const k = K[b];
  add("zeroPages", b, "ram-1g-mixed", RAM_BYTES, () => { sink += k.zeroPages(ram, RAM_PAGES, bitmap); });
  add("changedPages", b, "ram-1g-10pct-dirty", RAM_BYTES, () => { sink += k.changedPages(ram, shadow, RAM_PAGES, bitmap, false); });
  for (const set of ["typical", "clustered5", "random50"]) {
    const np = xSets[set];
    add("xbzrleEncode", b, set, XBZ_PAGES * P, () => {
      for (let p = 0; p < XBZ_PAGES; p++) sink += k.xbzrleEncode(xOld + p * P, np + p * P, xScratch, P);
    });
  }
  for (const set of ["typical", "clustered5"]) {
    const { offs, pages } = xEnc[set];
    add("xbzrleDecode", b, set, pages * P, () => {
      for (let i = 0; i < offs.length; i += 3) sink += k.xbzrleDecode(offs[i + 1], offs[i + 2], xDest + offs[i] * P);
    });
  }
  add("ramEncode", b, "ram-1g-mixed", RAM_BYTES, () => { sink += ramEncodeAll(k); });
  add("ramDecode", b, "stream-of-256m-mixed", decLen, () => ramDecodeAll(k), { unit: "stream" });
  add("bswap", b, "u64-64m", BSWAP_BYTES, () => k.bswap64(bsw, BSWAP_BYTES / 8));
  add("bswap", b, "u32-64m", BSWAP_BYTES, () => k.bswap32(bsw, BSWAP_BYTES / 4));
}
const PUT_N = 10_000_000;
const writer = new ByteWriter({ initialCapacity: PUT_N * 4 + 16 });
add("put32", "js", "ByteWriter.be32-10M", PUT_N * 4, () => {
  writer.reset();
  for (let i = 0; i < PUT_N; i++) writer.be32(i);
}, { values: PUT_N });
const readBuf = new Uint8Array(PUT_N * 4);
add("get32", "js", "ByteReader.be32-10M", PUT_N * 4, () => {
  const r = new ByteReader(readBuf);
  for (let i = 0; i < PUT_N; i++) sink += r.be32();
}, { values: PUT_N });

// Anchors
const anchors = [];
const addAnchor = (name, bytes, fn) => anchors.push({ name, bytes, fn, samples: [] });
addAnchor("memory-read", RAM_BYTES, () => { sink += Number(probe.sumV128(ram, RAM_BYTES) & 1n); });
addAnchor("copy", 256 * 1024 * 1024, () => { const u8 = k0.u8; u8.copyWithin(copyDst, ram, ram + 256 * 1024 * 1024); });
const zeroPage = Buffer.alloc(P);
addAnchor("buffer-compare-zero", RAM_BYTES, () => {
  const buf = Buffer.from(memory.buffer);
  let z = 0;
  for (let p = 0; p < RAM_PAGES; p++) { const o = ram + p * P; if (buf.compare(zeroPage, 0, P, o, o + P) === 0) z++; }
  sink += z;
});

// ---- run: warm-up round, then ROUNDS interleaved rounds ----
const all = [...anchors, ...tasks];
for (let round = 0; round <= ROUNDS; round++) {
  const bench = new Bench({ iterations: 1, time: 0, warmup: false });
  for (const t of all) bench.add(`${t.kernel ?? t.name}|${t.backend ?? ""}|${t.dataset ?? ""}`, t.fn);
  await bench.run();
  if (round === 0) { log("warm-up round done"); continue; }
  bench.tasks.forEach((bt, i) => {
    if (bt.result?.error) throw bt.result.error;
    all[i].samples.push(bt.result.latency.mean); // ms, one iteration per round
  });
  log(`round ${round}/${ROUNDS} done`);
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const gbps = (t) => t.bytes / (median(t.samples) / 1e3) / 1e9;

const results = tasks.map((t) => ({
  kernel: t.kernel, backend: t.backend, dataset: t.dataset,
  gbps: +gbps(t).toFixed(3),
  ...(t.values ? { gvaluesPerSec: +(t.values / (median(t.samples) / 1e3) / 1e9).toFixed(3) } : {}),
  ...(t.unit === "stream" ? { of: "stream bytes" } : {}),
  ms: +median(t.samples).toFixed(3),
}));
const anchorOut = anchors.map((a) => ({ name: a.name, gbps: +gbps(a).toFixed(3), ms: +median(a.samples).toFixed(3) }));
const r = (kernel, backend, dataset) => results.find((x) => x.kernel === kernel && x.backend === backend && (!dataset || x.dataset === dataset));
const A = (name) => anchorOut.find((a) => a.name === name).gbps;
const bestJsZero = Math.max(r("zeroPages", "js").gbps, A("buffer-compare-zero"));
const wasmBest = (kernel, set) => Math.max(r(kernel, "wasm-simd", set).gbps, r(kernel, "wasm-scalar", set).gbps);
const ratios = [
  { name: "zeroPages wasm-simd / memory-read", value: r("zeroPages", "wasm-simd").gbps / A("memory-read"), target: 0.9 },
  { name: "zeroPages wasm-simd / best pure TS", value: r("zeroPages", "wasm-simd").gbps / bestJsZero, target: 1.8 },
  { name: "xbzrleEncode wasm-simd / js (typical)", value: r("xbzrleEncode", "wasm-simd", "typical").gbps / r("xbzrleEncode", "js", "typical").gbps, target: 5 },
  { name: "xbzrleEncode wasm-simd / js (clustered5)", value: r("xbzrleEncode", "wasm-simd", "clustered5").gbps / r("xbzrleEncode", "js", "clustered5").gbps, target: 5 },
  { name: "xbzrleEncode wasm-simd / wasm-scalar (random50)", value: r("xbzrleEncode", "wasm-simd", "random50").gbps / r("xbzrleEncode", "wasm-scalar", "random50").gbps, target: 0.95 },
  { name: "xbzrleDecode wasm best / js (typical)", value: wasmBest("xbzrleDecode", "typical") / r("xbzrleDecode", "js", "typical").gbps, target: 2 },
  { name: "xbzrleDecode wasm best / js (clustered5)", value: wasmBest("xbzrleDecode", "clustered5") / r("xbzrleDecode", "js", "clustered5").gbps, target: 2 },
  { name: "changedPages wasm-simd / memory-read", value: r("changedPages", "wasm-simd").gbps / A("memory-read"), target: 0.45 },
  { name: "ramEncode wasm-simd GB/s of guest RAM", value: r("ramEncode", "wasm-simd").gbps, target: 10 },
  { name: "put32 G values/s", value: r("put32", "js").gvaluesPerSec, target: 0.9 },
  { name: "get32 G values/s", value: r("get32", "js").gvaluesPerSec, target: 0.9 },
].map((x) => ({ ...x, value: +x.value.toFixed(3), met: x.value >= x.target }));

const machine = {
  cpu: os.cpus()[0]?.model, cores: os.cpus().length, memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
  node: process.version, v8: process.versions.v8, platform: `${os.platform()} ${os.arch()}`, loadavg: os.loadavg().map((x) => +x.toFixed(2)),
  date: new Date().toISOString(), ramMiB: RAM_BYTES >>> 20, rounds: ROUNDS,
};
if (args.json) {
  process.stdout.write(JSON.stringify({ machine, results, anchors: anchorOut, ratios }, null, 1) + "\n");
} else {
  const pad = (s, n) => String(s).padEnd(n);
  console.log(`vmstream kernel benchmark — ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.ramMiB} MiB image, median of ${ROUNDS} rounds`);
  console.log("\nanchors");
  for (const a of anchorOut) console.log(`  ${pad(a.name, 24)} ${a.gbps.toFixed(2).padStart(8)} GB/s`);
  console.log("\n  " + pad("kernel", 14) + pad("dataset", 24) + backends.map((b) => pad(b, 13)).join("") + " (GB/s)");
  const keys = [...new Set(results.map((x) => `${x.kernel}|${x.dataset}`))];
  for (const key of keys) {
    const [kernel, dataset] = key.split("|");
    const cells = backends.map((b) => { const x = results.find((y) => y.kernel === kernel && y.dataset === dataset && y.backend === b); return pad(x ? x.gbps.toFixed(2) : "-", 13); });
    console.log("  " + pad(kernel, 14) + pad(dataset, 24) + cells.join(""));
  }
  console.log("\nratios (same run)");
  for (const x of ratios) console.log(`  ${pad(x.name, 50)} ${x.value.toFixed(2).padStart(7)}  target >= ${x.target}  ${x.met ? "met" : "NOT met"}`);
}
if (sink === 0.5) console.log(""); // keep results observable
