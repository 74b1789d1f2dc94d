#!/usr/bin/env node
import { spawn, spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
// Encoding benchmark: the 1 GiB RAM image of the kernel benchmark (bench/kernels.mjs, same recipe) written as
// the `pc.ram` block of a `pc` machine stream, (1) into memory, (2) into a pipe (`cat > /dev/null`, write +
// 'drain' backpressure, end to end), next to anchors measured in the same process (the wasm memory-read probe,
// the bare ramEncode kernel, a raw pipe write of the same byte count), and (3) QEMU 7.2 itself saving a guest
// of the same size and content to `exec:cat > /dev/null`, in the same run (one save per round, interleaved
// with our rounds). GB/s = 1e9 bytes of guest RAM per second; medians over rounds.
//
//   npm run bench:encode                 table on stdout
//   npm run -s bench:encode -- --json    one JSON object on stdout
//   options: --ram-mib N (default 1024), --rounds N (default 5), --slice-mib N (guest RAM per pipe write
//            batch, default 4), --window-kib N (RamWriter output window, default 1024), --no-qemu
import { Bench } from "tinybench";

import { fillRamImage, loadProbe, machineInfo, makeRng, median, root, startBenchQemu } from "./common.mjs";

const lib = await import(join(root, "dist/index.js"));
const { createKernels, ENC, RAM_ENCODE, ByteWriter, StreamEncoder, RamWriter, deviceSpec } = lib;
const { decodeFile } = await import(join(root, "dist/sections/node.js"));

const { values: args } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    "ram-mib": { type: "string", default: "1024" },
    rounds: { type: "string", default: "5" },
    "slice-mib": { type: "string", default: "4" },
    "window-kib": { type: "string", default: "1024" },
    "no-qemu": { type: "boolean", default: false },
  },
});
const P = 4096;
const RAM_BYTES = Number(args["ram-mib"]) * 1024 * 1024;
const RAM_PAGES = RAM_BYTES / P;
const ROUNDS = Number(args.rounds);
const SLICE_PAGES = (Number(args["slice-mib"]) * 1024 * 1024) / P;
const WINDOW = Number(args["window-kib"]) * 1024;
const QEMU = "qemu-system-x86_64";
const log = (s) => process.stderr.write(s + "\n");

// ---- one memory shared by both backends and the probe (as bench/kernels.mjs) ----
const memory = new WebAssembly.Memory({ initial: 1 });
const backends = ["wasm-simd", "js"];
const K = Object.fromEntries(backends.map((b) => [b, createKernels({ backend: b, memory })]));
const k0 = K["wasm-simd"];
const probe = loadProbe(memory);

// ---- the image: the recipe of bench/kernels.mjs (same seed, same order of draws) ----
log(`preparing ${RAM_BYTES >>> 20} MiB RAM image (50% zero, 30% zero but one word, 20% random)...`);
const ram = k0.alloc(RAM_BYTES);
const pageKinds = fillRamImage(memory, ram, RAM_BYTES, makeRng(), P);
const kinds = { zero: 0, oneWord: 0, random: 0 };
for (const k of pageKinds) k === 0 ? kinds.zero++ : k === 1 ? kinds.oneWord++ : kinds.random++;

// ---- (1) a pc machine stream holding the image as pc.ram, into memory ----
const MACHINE = "pc-i440fx-7.2";
const BLOCK = { name: "pc.ram", ptr: ram, length: RAM_BYTES };
// One ByteWriter per backend, reset() per round: its buffer keeps the capacity reached in the warm-up round.
const memWriters = Object.fromEntries(backends.map((b) => [b, new ByteWriter({ initialCapacity: 64 << 20 })]));
const memRam = Object.fromEntries(backends.map((b) => [b, new RamWriter(memWriters[b], P, { window: WINDOW }, K[b])]));
function encodeToMemory(b) {
  const out = memWriters[b];
  out.reset();
  const rw = memRam[b];
  rw.resetContinue();
  const enc = new StreamEncoder(out, { vmdesc: false });
  enc.header();
  enc.configuration({ machine: MACHINE });
  enc.begin("start", 2, "ram", 0, 4);
  rw.memSize([{ name: BLOCK.name, length: BigInt(RAM_BYTES) }]);
  rw.eos();
  enc.end();
  enc.begin("part", 2);
  const st = rw.sendBlock(BLOCK, { zeroDetect: true });
  rw.eos();
  enc.end();
  enc.begin("end", 2);
  rw.eos();
  enc.end();
  enc.eof();
  return { bytes: out.byteLength, st };
}

// The bare kernel (no ByteWriter): ramEncode of the whole image into a 64 MiB window, reused.
const KWIN = 64 << 20;
const kOut = k0.alloc(KWIN, 64);
const kState = k0.alloc(64, 64);
const kName = k0.alloc(16, 16);
k0.u8.set(new TextEncoder().encode("pc.ram"), kName);
function ramEncodeKernel() {
  let page = 0,
    cont = 0,
    bytes = 0;
  while (page < RAM_PAGES) {
    bytes += k0.ramEncode(ram, P, page, RAM_PAGES, 0, 0, 0, kName, 6, kOut, KWIN, RAM_ENCODE.ZERO_DETECT | cont, kState);
    const s = new Uint32Array(memory.buffer, kState, ENC.SIZE);
    page = s[ENC.NEXT_PAGE];
    cont = s[ENC.CONTINUE] ? RAM_ENCODE.CONTINUE : 0;
  }
  return bytes;
}

// ---- (2) the same stream into a pipe ----
// A ByteWriter per backend; the block is sent SLICE_PAGES at a time; after each slice the bytes are handed to
// the pipe (takeChunks, zero copy), and the writer is reset once the pipe has taken them (write callback).
const pipeWriters = Object.fromEntries(backends.map((b) => [b, new ByteWriter({ initialCapacity: Math.min(RAM_BYTES, SLICE_PAGES * (P + 16)) + (1 << 20) })]));
const pipeRam = Object.fromEntries(backends.map((b) => [b, new RamWriter(pipeWriters[b], P, { window: WINDOW }, K[b])]));
let sink = null; // the current `cat > /dev/null` child, spawned by a beforeEach hook (not timed)
async function spawnSink() {
  const child = spawn("sh", ["-c", "exec cat > /dev/null"], { stdio: ["pipe", "ignore", "inherit"] });
  await new Promise((res, rej) => {
    child.once("spawn", res);
    child.once("error", rej);
  });
  const exited = new Promise((res) => child.once("exit", (code, signal) => res({ code, signal })));
  sink = { child, exited };
}
function writeAll(stdin, chunks) {
  // write + 'drain'; resolves when the last chunk has been handed to the kernel (its callback)
  return new Promise((resolve, reject) => {
    let i = 0;
    const next = () => {
      while (i < chunks.length) {
        const c = chunks[i++];
        const last = i === chunks.length;
        const ok = stdin.write(c, last ? (err) => (err ? reject(err) : resolve()) : undefined);
        if (last) return;
        if (!ok) {
          stdin.once("drain", next);
          return;
        }
      }
      resolve();
    };
    next();
  });
}
async function finishSink() {
  const { child, exited } = sink;
  child.stdin.end();
  const ex = await exited;
  sink = null;
  if (ex.code !== 0) throw new Error(`cat exited ${ex.code} ${ex.signal}`);
}
async function encodeToPipe(b) {
  const out = pipeWriters[b];
  const rw = pipeRam[b];
  const stdin = sink.child.stdin;
  out.reset();
  rw.resetContinue();
  let total = 0;
  const flush = async () => {
    const chunks = out.takeChunks();
    for (const c of chunks) total += c.length;
    if (chunks.length) await writeAll(stdin, chunks);
    out.reset();
  };
  const enc = new StreamEncoder(out, { vmdesc: false });
  enc.header();
  enc.configuration({ machine: MACHINE });
  enc.begin("start", 2, "ram", 0, 4);
  rw.memSize([{ name: BLOCK.name, length: BigInt(RAM_BYTES) }]);
  rw.eos();
  enc.end();
  enc.begin("part", 2);
  for (let first = 0; first < RAM_PAGES; first += SLICE_PAGES) {
    rw.sendBlock(BLOCK, { firstPage: first, endPage: Math.min(RAM_PAGES, first + SLICE_PAGES), zeroDetect: true });
    await flush();
  }
  rw.eos();
  enc.end();
  enc.begin("end", 2);
  rw.eos();
  enc.end();
  enc.eof();
  await flush();
  await finishSink();
  return total;
}
// Pipe anchor: the same number of bytes, already encoded (the in-memory stream), written in the same batches.
let pipeAnchorChunks = [];
async function rawPipe() {
  const stdin = sink.child.stdin;
  for (const c of pipeAnchorChunks) await writeAll(stdin, [c]);
  await finishSink();
}

// ---- (3) QEMU saving a guest of the same size and content ----
const tmp = mkdtempSync(join(os.tmpdir(), "vmstream-bench-encode-"));
const qemus = new Set();
// QEMU as bench/common.mjs starts it; every one stopped at the end or on exit
async function startQemu(extra = []) {
  const q = await startBenchQemu({ binary: QEMU, dir: tmp, ramMiB: RAM_BYTES >>> 20, extra });
  qemus.add(q);
  return q;
}
async function stopQemu(q) {
  if (!qemus.delete(q)) return;
  await q.stop();
}
async function poll(q, what, t0) {
  for (;;) {
    const info = await q.qmp.execute("query-migrate");
    if (info.status === "completed") return { info, wallMs: performance.now() - t0 };
    if (info.status === "failed" || info.status === "cancelled") throw new Error(`${what}: ${info.status} ${info["error-desc"] ?? ""}\n${q.stderr()}`);
    if (performance.now() - t0 > 120_000) throw new Error(`${what}: timeout`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
const sq = (s) => `'${s.replace(/'/g, `'\\''`)}'`;
function tailComplete(file) {
  // the file ends with a complete vmdesc block (0x06, be32 len, JSON)
  const size = statSync(file).size;
  const want = Math.min(size, 1 << 20);
  const buf = Buffer.alloc(want);
  const fd = openSync(file, "r");
  try {
    readSync(fd, buf, 0, want, size - want);
  } finally {
    closeSync(fd);
  }
  const needle = Buffer.from('{"page_size"', "latin1");
  for (let at = buf.lastIndexOf(needle); at >= 5; at = at > 0 ? buf.lastIndexOf(needle, at - 1) : -1) {
    if (buf[at - 5] === 0x06 && at + buf.readUInt32BE(at - 4) === want) return true;
  }
  return false;
}

const qemuRuns = [];
let qemuInfo = null;
let qemuSaver = null;
async function prepareQemu() {
  const version = spawnSync(QEMU, ["--version"], { encoding: "utf8" });
  if (version.error || version.status !== 0) {
    log(`${QEMU} not available: QEMU rows skipped`);
    return;
  }
  qemuInfo = { binary: QEMU, version: version.stdout.split("\n")[0].trim() };
  // a. the real block list and device sections: save a fresh paused `pc` machine of the same size
  const empty = join(tmp, "empty.mig");
  const a = await startQemu();
  try {
    const t0 = performance.now();
    await a.qmp.execute("migrate", { uri: `exec:cat > ${sq(empty)}` });
    await poll(a, "save (empty machine)", t0);
    for (let i = 0; i < 500 && !tailComplete(empty); i++) await new Promise((r) => setTimeout(r, 10));
  } finally {
    await stopQemu(a);
  }
  // b. decode it (RAM materialised into our memory), put the image into pc.ram, write a new stream
  const r = await decodeFile(empty, { materialize: { ram: true }, kernels: k0 });
  const blocks = r.live.ram.blocks;
  const pcRam = blocks.find((b) => b.name === "pc.ram");
  if (!pcRam || Number(pcRam.length) !== RAM_BYTES) throw new Error(`pc.ram of ${pcRam?.length} bytes, expected ${RAM_BYTES}`);
  k0.u8.copyWithin(pcRam.ptr, ram, ram + RAM_BYTES);
  const loaded = join(tmp, "image.mig");
  const fd = openSync(loaded, "w");
  let streamBytes = 0;
  try {
    const out = new ByteWriter({ initialCapacity: 32 << 20 });
    const drain = () => {
      for (const c of out.takeChunks()) {
        writeSync(fd, c);
        streamBytes += c.length;
      }
      out.reset();
    };
    const enc = new StreamEncoder(out, {
      configuration: r.configuration !== undefined,
      footers: r.footers ?? true,
      vmdesc: r.vmdesc !== undefined,
      pageSize: r.pageSize,
    });
    enc.header(r.version);
    const c = r.configuration;
    if (c)
      enc.configuration({
        machine: c.machine,
        ...(c.targetPageBits !== undefined ? { targetPageBits: c.targetPageBits } : {}),
        ...(c.capabilities ? { capabilities: c.capabilities } : {}),
        ...(c.uuid ? { uuid: c.uuid } : {}),
      });
    const start = r.sections.find((s) => s.idstr === "ram" && s.type === "start");
    const rw = new RamWriter(out, r.pageSize, {}, r.kernels);
    enc.begin("start", start.id, "ram", start.instanceId, start.version);
    rw.memSize(blocks.map((b) => ({ name: b.name, length: b.length })));
    rw.eos();
    enc.end();
    enc.begin("part", start.id);
    for (const b of blocks) {
      const pages = Number(b.length) / r.pageSize;
      for (let f = 0; f < pages; f += 4096) {
        rw.sendBlock({ name: b.name, ptr: b.ptr, length: Number(b.length) }, { firstPage: f, endPage: Math.min(pages, f + 4096), zeroDetect: true });
        drain();
      }
    }
    rw.eos();
    enc.end();
    enc.begin("end", start.id);
    rw.eos();
    enc.end();
    rw.dispose();
    for (const dev of r.devices) enc.device(deviceSpec(dev));
    enc.eof();
    if (r.vmdesc) {
      const text = enc.vmdescText();
      enc.vmdescTrailer(text === r.vmdesc.text ? text : r.vmdesc.text);
    }
    drain();
  } finally {
    closeSync(fd);
  }
  qemuInfo.blocks = blocks.map((b) => ({ name: b.name, bytes: Number(b.length) }));
  qemuInfo.devices = r.devices.length;
  qemuInfo.loadStreamBytes = streamBytes;
  r.dispose?.();
  rmSync(empty, { force: true });
  loadedFile = loaded;
  qemuInfo.loadWallMs = [];
  qemuSaver = await loadedQemu();
}
// c. load the stream into a fresh `-incoming defer` QEMU: that QEMU holds a guest with the image in pc.ram.
// QEMU 7.2 refuses a second migration from the postmigrate state ("Can't migrate the vm that was paused due
// to previous migration") unless the guest runs in between (which would let the firmware change RAM), so
// every save is made by a fresh QEMU loaded from the same stream (the load is not timed).
let loadedFile = null;
async function loadedQemu() {
  const q = await startQemu(["-incoming", "defer"]);
  const t0 = performance.now();
  await q.qmp.execute("migrate-incoming", { uri: `exec:cat ${sq(loadedFile)}` });
  const ld = await poll(q, "load", t0);
  qemuInfo.loadWallMs.push(+ld.wallMs.toFixed(1));
  await q.qmp.execute("migrate-set-parameters", { "max-bandwidth": 100 * 2 ** 30 });
  return q;
}
async function qemuSave() {
  const q = qemuSaver;
  const t0 = performance.now();
  await q.qmp.execute("migrate", { uri: "exec:cat > /dev/null" });
  const { info, wallMs } = await poll(q, "save", t0);
  await stopQemu(q);
  qemuSaver = null;
  qemuRuns.push({
    wallMs: +wallMs.toFixed(1),
    totalTimeMs: info["total-time"],
    downtimeMs: info.downtime,
    setupTimeMs: info["setup-time"],
    transferred: info.ram?.transferred,
    ramTotal: info.ram?.total,
    normal: info.ram?.normal,
    duplicate: info.ram?.duplicate,
  });
}

// ---- tasks ----
const tasks = [];
const add = (name, backend, bytes, fn, hooks) => tasks.push({ name, backend, bytes, fn, hooks, samples: [] });
let keep = 0;
add("memory-read (anchor)", "probe", RAM_BYTES, () => {
  keep += Number(probe.sumV128(ram, RAM_BYTES) & 1n);
});
add("ramEncode kernel, 64 MiB window (anchor)", "wasm-simd", RAM_BYTES, () => {
  keep += ramEncodeKernel();
});
for (const b of backends)
  add("stream into memory", b, RAM_BYTES, () => {
    keep += encodeToMemory(b).bytes;
  });
for (const b of backends)
  add(
    "stream into a pipe (cat > /dev/null)",
    b,
    RAM_BYTES,
    async () => {
      keep += await encodeToPipe(b);
    },
    { beforeEach: spawnSink },
  );
add("raw pipe write of the same bytes (anchor)", "-", RAM_BYTES, rawPipe, { beforeEach: spawnSink });

const stopAll = async () => {
  for (const q of [...qemus]) await stopQemu(q);
  if (sink) {
    try {
      sink.child.kill("SIGKILL");
    } catch {
      /* gone */
    }
  }
  rmSync(tmp, { recursive: true, force: true });
};
process.on("exit", () => {
  for (const q of qemus) {
    try {
      q.child.kill("SIGKILL");
    } catch {
      /* gone */
    }
  }
  rmSync(tmp, { recursive: true, force: true });
});
for (const sig of ["SIGINT", "SIGTERM"])
  process.on(sig, () => {
    stopAll().finally(() => process.exit(130));
  });

let streamInfo;
try {
  // the stream once, for its size and record counts, and the pipe anchor's batches
  {
    const { bytes, st } = encodeToMemory("wasm-simd");
    streamInfo = { streamBytes: bytes, zeroRecords: st.zero, pageRecords: st.normal };
    const all = memWriters["wasm-simd"].chunks();
    const flat = all.length === 1 ? all[0] : Buffer.concat(all);
    const per = Math.ceil(flat.length / Math.ceil(RAM_PAGES / SLICE_PAGES));
    pipeAnchorChunks = [];
    for (let o = 0; o < flat.length; o += per) pipeAnchorChunks.push(flat.subarray(o, Math.min(flat.length, o + per)));
    // check: the js backend writes the very same bytes
    const js = encodeToMemory("js");
    const jsFlat = memWriters.js.concat();
    if (js.bytes !== bytes || Buffer.compare(Buffer.from(jsFlat), Buffer.from(flat)) !== 0) throw new Error("js and wasm-simd streams differ");
    // and the pipe path the same count
    await spawnSink();
    const piped = await encodeToPipe("wasm-simd");
    streamInfo.pipeStreamBytes = piped;
  }
  if (!args["no-qemu"]) {
    log("preparing QEMU: save an empty pc machine, decode, put the image in pc.ram, encode, load into a fresh QEMU...");
    await prepareQemu();
    if (qemuSaver) log(`QEMU holds the image (load ${qemuInfo.loadWallMs[0]} ms); saves to exec:cat > /dev/null interleave with our rounds`);
  }

  // ---- run: warm-up round, then ROUNDS interleaved rounds (tinybench runs every task once per round) ----
  for (let round = 0; round <= ROUNDS; round++) {
    const bench = new Bench({ iterations: 1, time: 0, warmup: false, throws: true });
    for (const t of tasks) bench.add(`${t.name}|${t.backend}`, t.fn, t.hooks);
    await bench.run();
    if (qemuSaver) {
      await qemuSave();
      if (round < ROUNDS) qemuSaver = await loadedQemu();
    }
    if (round === 0) {
      qemuRuns.length = 0;
      log("warm-up round done");
      continue;
    }
    bench.tasks.forEach((bt, i) => {
      if (bt.result?.error) throw bt.result.error;
      tasks[i].samples.push(bt.result.latency.mean); // ms, one iteration per round
    });
    log(`round ${round}/${ROUNDS} done`);
  }
} finally {
  await stopAll();
}

const results = tasks.map((t) => ({
  task: t.name,
  backend: t.backend,
  gbps: +(t.bytes / (median(t.samples) / 1e3) / 1e9).toFixed(3),
  ms: +median(t.samples).toFixed(2),
  samplesMs: t.samples.map((x) => +x.toFixed(2)),
}));
let qemu = null;
if (qemuInfo && qemuRuns.length) {
  const tt = median(qemuRuns.map((r) => r.totalTimeMs));
  const wall = median(qemuRuns.map((r) => r.wallMs));
  qemu = {
    ...qemuInfo,
    runs: qemuRuns,
    medianTotalTimeMs: tt,
    medianWallMs: +wall.toFixed(1),
    guestRamBytes: qemuRuns[0].ramTotal,
    gbpsByTotalTime: +(qemuRuns[0].ramTotal / (tt / 1e3) / 1e9).toFixed(3),
    gibpsByTotalTime: +(qemuRuns[0].ramTotal / (tt / 1e3) / 2 ** 30).toFixed(3),
    gbpsByWall: +(qemuRuns[0].ramTotal / (wall / 1e3) / 1e9).toFixed(3),
  };
}
const R = (name, backend) => results.find((x) => x.task.startsWith(name) && x.backend === backend).gbps;
const memRead = R("memory-read", "probe");
const ratios = [
  { name: "stream into memory, wasm-simd: GB/s of guest RAM", value: R("stream into memory", "wasm-simd"), target: 10 },
  { name: "stream into memory, wasm-simd / memory-read", value: R("stream into memory", "wasm-simd") / memRead, target: null },
  { name: "stream into memory, js / memory-read", value: R("stream into memory", "js") / memRead, target: null },
  {
    name: "stream into memory, wasm-simd / bare ramEncode kernel",
    value: R("stream into memory", "wasm-simd") / R("ramEncode kernel", "wasm-simd"),
    target: null,
  },
  { name: "stream into a pipe, wasm-simd / raw pipe write", value: R("stream into a pipe", "wasm-simd") / R("raw pipe write", "-"), target: null },
  ...(qemu
    ? [
        { name: "stream into a pipe, wasm-simd / QEMU save (total-time)", value: R("stream into a pipe", "wasm-simd") / qemu.gbpsByTotalTime, target: 1 },
        { name: "stream into a pipe, js / QEMU save (total-time)", value: R("stream into a pipe", "js") / qemu.gbpsByTotalTime, target: 1 },
        { name: "stream into a pipe, wasm-simd / QEMU save (wall clock)", value: R("stream into a pipe", "wasm-simd") / qemu.gbpsByWall, target: 1 },
      ]
    : []),
].map((x) => ({ ...x, value: +x.value.toFixed(3), ...(x.target !== null ? { met: x.value >= x.target } : {}) }));

const machine = machineInfo({ ramMiB: RAM_BYTES >>> 20, rounds: ROUNDS, sliceMiB: (SLICE_PAGES * P) >>> 20, windowKiB: WINDOW >>> 10 });
const image = { pages: RAM_PAGES, ...kinds, ...streamInfo };
if (args.json) {
  process.stdout.write(JSON.stringify({ machine, image, results, qemu, ratios }, null, 1) + "\n");
} else {
  const pad = (s, n) => String(s).padEnd(n);
  console.log(
    `vmstream encode benchmark — ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.ramMiB} MiB image, median of ${ROUNDS} rounds`,
  );
  console.log(`stream: ${image.streamBytes} bytes (${image.pageRecords} PAGE, ${image.zeroRecords} ZERO records)\n`);
  console.log("  " + pad("task", 46) + pad("backend", 11) + "GB/s of guest RAM    ms");
  for (const x of results) console.log("  " + pad(x.task, 46) + pad(x.backend, 11) + x.gbps.toFixed(2).padStart(8) + x.ms.toFixed(1).padStart(12));
  if (qemu) {
    console.log(
      "  " +
        pad(`QEMU save to exec:cat > /dev/null (total-time)`, 46) +
        pad("qemu", 11) +
        qemu.gbpsByTotalTime.toFixed(2).padStart(8) +
        String(qemu.medianTotalTimeMs).padStart(12),
    );
    console.log(
      "  " +
        pad(`QEMU save (wall clock incl. QMP polling)`, 46) +
        pad("qemu", 11) +
        qemu.gbpsByWall.toFixed(2).padStart(8) +
        qemu.medianWallMs.toFixed(1).padStart(12),
    );
    console.log(`  (${qemu.version}; ${qemu.guestRamBytes} bytes of guest RAM: ${qemu.blocks.map((b) => `${b.name} ${b.bytes}`).join(", ")})`);
  }
  console.log("\nratios (same run)");
  for (const x of ratios)
    console.log(`  ${pad(x.name, 58)} ${x.value.toFixed(2).padStart(7)}${x.target !== null ? `  target >= ${x.target}  ${x.met ? "met" : "NOT met"}` : ""}`);
}
if (keep === 0.5) console.log("");
