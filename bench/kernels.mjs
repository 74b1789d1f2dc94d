#!/usr/bin/env node
import { join } from "node:path";
import { parseArgs } from "node:util";
// Kernel benchmarks: GB/s for every kernel x backend on data far larger than the caches, next to
// anchors measured in the same process (this machine is shared and noisy, so only ratios within
// one run mean anything). Tasks are interleaved: each round runs every task once (tinybench),
// and a task's figure is the median over rounds.
//
//   npm run bench                      table on stdout
//   npm run bench -- --json            one JSON object on stdout
//   npm run bench -- --ram-mib 256 --rounds 3    smaller/faster run
import { Bench } from "tinybench";
import { fillRamImage, loadProbe, machineInfo, makeRng, median, root } from "./common.mjs";

const { createKernels, ENC, RAM_ENCODE, DEC, BLK } = await import(join(root, "dist/index.js"));
const { ByteWriter, ByteReader } = await import(join(root, "dist/index.js"));

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

const probe = loadProbe(memory);

// ---- data (deterministic) ----
const rng = makeRng();
const { rnd } = rng;
const fillRandom = (ptr, len) => rng.fillRandom(memory, ptr, len);
log(`preparing ${RAM_BYTES >>> 20} MiB RAM image (50% zero, 30% zero but one word, 20% random)...`);
const ram = k0.alloc(RAM_BYTES);
fillRamImage(memory, ram, RAM_BYTES, rng, P);
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
      for (let i = 0; i < 4; i++) {
        const at = base + 8 * (rnd() % 512);
        for (let b = 0; b < 8; b++) u8[at + b] ^= 0xff;
      }
    } else if (set === "clustered5") {
      for (let i = 0; i < 6; i++) {
        const at = base + (rnd() % (P - 34));
        for (let b = 0; b < 34; b++) u8[at + b] ^= 0xa5;
      }
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
    if (n > 0) {
      offs.push(p, at, n);
      at += n;
    }
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
  let page = 0,
    cont = 0,
    bytes = 0;
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
  let page = 0,
    cont = 0;
  while (page < decPages) {
    const n = k0.ramEncode(
      ram,
      P,
      page,
      decPages,
      0,
      0,
      0,
      blockName,
      6,
      decStream + decLen,
      decPages * (P + 16) + 4096 - decLen,
      RAM_ENCODE.ZERO_DETECT | cont,
      encState,
    );
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
  add("zeroPages", b, "ram-1g-mixed", RAM_BYTES, () => {
    sink += k.zeroPages(ram, RAM_PAGES, bitmap);
  });
  add("changedPages", b, "ram-1g-10pct-dirty", RAM_BYTES, () => {
    sink += k.changedPages(ram, shadow, RAM_PAGES, bitmap, false);
  });
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
  add("ramEncode", b, "ram-1g-mixed", RAM_BYTES, () => {
    sink += ramEncodeAll(k);
  });
  add("ramDecode", b, "stream-of-256m-mixed", decLen, () => ramDecodeAll(k), { unit: "stream" });
  add("bswap", b, "u64-64m", BSWAP_BYTES, () => k.bswap64(bsw, BSWAP_BYTES / 8));
  add("bswap", b, "u32-64m", BSWAP_BYTES, () => k.bswap32(bsw, BSWAP_BYTES / 4));
}
const PUT_N = 10_000_000;
const writer = new ByteWriter({ initialCapacity: PUT_N * 4 + 16 });
function put32Loop(w, n) {
  w.reset();
  for (let i = 0; i < n; i++) w.be32(i);
  return w.pos;
}
add(
  "put32",
  "js",
  "ByteWriter.be32-10M",
  PUT_N * 4,
  () => {
    sink += put32Loop(writer, PUT_N);
  },
  { values: PUT_N },
);
const readBuf = new Uint8Array(PUT_N * 4);
function get32Loop(r, n) {
  let acc = 0;
  for (let i = 0; i < n; i++) acc = (acc + r.be32()) | 0;
  return acc;
}
add(
  "get32",
  "js",
  "ByteReader.be32-10M",
  PUT_N * 4,
  () => {
    sink += get32Loop(new ByteReader(readBuf), PUT_N);
  },
  { values: PUT_N },
);

// Cache-resident variants: the compute ceiling of each kernel, where this machine's DRAM
// bandwidth does not decide the result (each pass re-reads a region that fits in L2).
const HOT_BYTES = 1024 * 1024;
const HOT_REPS = 64;
const HOT_PAGES = HOT_BYTES / P;
const XHOT = 64; // pages: 256 KiB old + 256 KiB new
for (const b of backends) {
  const k = K[b];
  add("zeroPages", b, "hot-1m-mixed", HOT_BYTES * HOT_REPS, () => {
    for (let r = 0; r < HOT_REPS; r++) sink += k.zeroPages(ram, HOT_PAGES, bitmap);
  });
  add("changedPages", b, "hot-1m-10pct-dirty", HOT_BYTES * HOT_REPS, () => {
    for (let r = 0; r < HOT_REPS; r++) sink += k.changedPages(ram, shadow, HOT_PAGES, bitmap, false);
  });
  for (const set of ["typical", "clustered5", "random50"]) {
    const np = xSets[set];
    add("xbzrleEncode", b, `hot-${set}`, XHOT * P * HOT_REPS, () => {
      for (let r = 0; r < HOT_REPS; r++) for (let p = 0; p < XHOT; p++) sink += k.xbzrleEncode(xOld + p * P, np + p * P, xScratch, P);
    });
  }
  for (const set of ["typical", "clustered5"]) {
    const { offs } = xEnc[set];
    const hot = offs.slice(0, 3 * XHOT);
    add("xbzrleDecode", b, `hot-${set}`, (hot.length / 3) * P * HOT_REPS, () => {
      for (let r = 0; r < HOT_REPS; r++) for (let i = 0; i < hot.length; i += 3) sink += k.xbzrleDecode(hot[i + 1], hot[i + 2], xDest + hot[i] * P);
    });
  }
  add("bswap", b, "hot-u64-1m", HOT_BYTES * HOT_REPS, () => {
    for (let r = 0; r < HOT_REPS; r++) k.bswap64(bsw, HOT_BYTES / 8);
  });
}

// Anchors
const anchors = [];
const addAnchor = (name, bytes, fn) => anchors.push({ name, bytes, fn, samples: [] });
addAnchor("memory-read", RAM_BYTES, () => {
  sink += Number(probe.sumV128(ram, RAM_BYTES) & 1n);
});
const dvBuf = new DataView(new ArrayBuffer(PUT_N * 4));
function dvPut(dv, n) {
  for (let i = 0; i < n; i++) dv.setUint32(i * 4, i);
  return n;
}
function dvGet(dv, n) {
  let acc = 0;
  for (let i = 0; i < n; i++) acc = (acc + dv.getUint32(i * 4)) | 0;
  return acc;
}
addAnchor("dataview-put32", PUT_N * 4, () => {
  sink += dvPut(dvBuf, PUT_N);
});
addAnchor("dataview-get32", PUT_N * 4, () => {
  sink += dvGet(dvBuf, PUT_N);
});
addAnchor("memory-read-hot-1m", HOT_BYTES * HOT_REPS, () => {
  for (let r = 0; r < HOT_REPS; r++) sink += Number(probe.sumV128(ram, HOT_BYTES) & 1n);
});
addAnchor("copy", 256 * 1024 * 1024, () => {
  const u8 = k0.u8;
  u8.copyWithin(copyDst, ram, ram + 256 * 1024 * 1024);
});
const zeroPage = Buffer.alloc(P);
addAnchor("buffer-compare-zero", RAM_BYTES, () => {
  const buf = Buffer.from(memory.buffer);
  let z = 0;
  for (let p = 0; p < RAM_PAGES; p++) {
    const o = ram + p * P;
    if (buf.compare(zeroPage, 0, P, o, o + P) === 0) z++;
  }
  sink += z;
});

// ---- run: warm-up round, then ROUNDS interleaved rounds ----
const all = [...anchors, ...tasks];
for (let round = 0; round <= ROUNDS; round++) {
  const bench = new Bench({ iterations: 1, time: 0, warmup: false });
  for (const t of all) bench.add(`${t.kernel ?? t.name}|${t.backend ?? ""}|${t.dataset ?? ""}`, t.fn);
  await bench.run();
  if (round === 0) {
    log("warm-up round done");
    continue;
  }
  bench.tasks.forEach((bt, i) => {
    if (bt.result?.error) throw bt.result.error;
    all[i].samples.push(bt.result.latency.mean); // ms, one iteration per round
  });
  log(`round ${round}/${ROUNDS} done`);
}
const gbps = (t) => t.bytes / (median(t.samples) / 1e3) / 1e9;

const results = tasks.map((t) => ({
  kernel: t.kernel,
  backend: t.backend,
  dataset: t.dataset,
  gbps: +gbps(t).toFixed(3),
  ...(t.values ? { gvaluesPerSec: +(t.values / (median(t.samples) / 1e3) / 1e9).toFixed(3) } : {}),
  ...(t.unit === "stream" ? { of: "stream bytes" } : {}),
  ms: +median(t.samples).toFixed(3),
}));
const anchorOut = anchors.map((a) => ({ name: a.name, gbps: +gbps(a).toFixed(3), ms: +median(a.samples).toFixed(3) }));
const r = (kernel, backend, dataset) => results.find((x) => x.kernel === kernel && x.backend === backend && (!dataset || x.dataset === dataset));
const A = (name) => anchorOut.find((a) => a.name === name).gbps;
const bestJsZero = (ds) => Math.max(r("zeroPages", "js", ds).gbps, ds === "ram-1g-mixed" ? A("buffer-compare-zero") : 0);
const wasmBest = (kernel, set) => Math.max(r(kernel, "wasm-simd", set).gbps, r(kernel, "wasm-scalar", set).gbps);
const ratio = (kernel, set, num = "wasm-simd", den = "js") => r(kernel, num, set).gbps / r(kernel, den, set).gbps;
// The targets, on data far larger than the caches (DRAM), then the same comparisons with
// the data in cache (the compute ceiling, where DRAM bandwidth does not decide).
const ratios = [
  { name: "zeroPages wasm-simd / memory-read", value: r("zeroPages", "wasm-simd", "ram-1g-mixed").gbps / A("memory-read"), target: 0.9 },
  { name: "zeroPages wasm-simd / best pure TS", value: r("zeroPages", "wasm-simd", "ram-1g-mixed").gbps / bestJsZero("ram-1g-mixed"), target: 1.8 },
  { name: "xbzrleEncode wasm-simd / js (typical)", value: ratio("xbzrleEncode", "typical"), target: 5 },
  { name: "xbzrleEncode wasm-simd / js (clustered5)", value: ratio("xbzrleEncode", "clustered5"), target: 5 },
  { name: "xbzrleEncode wasm-simd / wasm-scalar (random50)", value: ratio("xbzrleEncode", "random50", "wasm-simd", "wasm-scalar"), target: 0.95 },
  { name: "xbzrleDecode wasm best / js (typical)", value: wasmBest("xbzrleDecode", "typical") / r("xbzrleDecode", "js", "typical").gbps, target: 2 },
  { name: "xbzrleDecode wasm best / js (clustered5)", value: wasmBest("xbzrleDecode", "clustered5") / r("xbzrleDecode", "js", "clustered5").gbps, target: 2 },
  { name: "changedPages wasm-simd / memory-read", value: r("changedPages", "wasm-simd", "ram-1g-10pct-dirty").gbps / A("memory-read"), target: 0.45 },
  { name: "ramEncode wasm-simd GB/s of guest RAM", value: r("ramEncode", "wasm-simd", "ram-1g-mixed").gbps, target: 10 },
  { name: "ramEncode wasm-simd / memory-read", value: r("ramEncode", "wasm-simd", "ram-1g-mixed").gbps / A("memory-read"), target: 10 / 34.2 },
  { name: "put32 G values/s", value: r("put32", "js").gvaluesPerSec, target: 0.9 },
  { name: "get32 G values/s", value: r("get32", "js").gvaluesPerSec, target: 0.9 },
  { name: "put32 / DataView.setUint32 loop", value: r("put32", "js").gbps / A("dataview-put32"), target: 0.9 },
  { name: "get32 / DataView.getUint32 loop", value: r("get32", "js").gbps / A("dataview-get32"), target: 0.9 },
  { name: "[hot] zeroPages wasm-simd / memory-read-hot", value: r("zeroPages", "wasm-simd", "hot-1m-mixed").gbps / A("memory-read-hot-1m"), target: 0.9 },
  { name: "[hot] zeroPages wasm-simd / js", value: ratio("zeroPages", "hot-1m-mixed"), target: 1.8 },
  { name: "[hot] xbzrleEncode wasm-simd / js (typical)", value: ratio("xbzrleEncode", "hot-typical"), target: 5 },
  { name: "[hot] xbzrleEncode wasm-simd / js (clustered5)", value: ratio("xbzrleEncode", "hot-clustered5"), target: 5 },
  { name: "[hot] xbzrleEncode wasm-simd / wasm-scalar (random50)", value: ratio("xbzrleEncode", "hot-random50", "wasm-simd", "wasm-scalar"), target: 0.95 },
  {
    name: "[hot] xbzrleDecode wasm best / js (typical)",
    value: wasmBest("xbzrleDecode", "hot-typical") / r("xbzrleDecode", "js", "hot-typical").gbps,
    target: 2,
  },
  {
    name: "[hot] xbzrleDecode wasm best / js (clustered5)",
    value: wasmBest("xbzrleDecode", "hot-clustered5") / r("xbzrleDecode", "js", "hot-clustered5").gbps,
    target: 2,
  },
  {
    name: "[hot] changedPages wasm-simd / memory-read-hot",
    value: r("changedPages", "wasm-simd", "hot-1m-10pct-dirty").gbps / A("memory-read-hot-1m"),
    target: 0.45,
  },
].map((x) => ({ ...x, value: +x.value.toFixed(3), met: x.value >= x.target }));

const machine = machineInfo({ ramMiB: RAM_BYTES >>> 20, rounds: ROUNDS });
if (args.json) {
  process.stdout.write(JSON.stringify({ machine, results, anchors: anchorOut, ratios }, null, 1) + "\n");
} else {
  const pad = (s, n) => String(s).padEnd(n);
  console.log(
    `vmstream kernel benchmark — ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.ramMiB} MiB image, median of ${ROUNDS} rounds`,
  );
  console.log("\nanchors");
  for (const a of anchorOut) console.log(`  ${pad(a.name, 24)} ${a.gbps.toFixed(2).padStart(8)} GB/s`);
  console.log("\n  " + pad("kernel", 14) + pad("dataset", 24) + backends.map((b) => pad(b, 13)).join("") + " (GB/s)");
  const keys = [...new Set(results.map((x) => `${x.kernel}|${x.dataset}`))];
  for (const key of keys) {
    const [kernel, dataset] = key.split("|");
    const cells = backends.map((b) => {
      const x = results.find((y) => y.kernel === kernel && y.dataset === dataset && y.backend === b);
      return pad(x ? x.gbps.toFixed(2) : "-", 13);
    });
    console.log("  " + pad(kernel, 14) + pad(dataset, 24) + cells.join(""));
  }
  console.log("\nratios (same run)");
  for (const x of ratios) console.log(`  ${pad(x.name, 50)} ${x.value.toFixed(2).padStart(7)}  target >= ${x.target}  ${x.met ? "met" : "NOT met"}`);
}
if (sink === 0.5) console.log(""); // keep results observable
