#!/usr/bin/env node
// Every-core benchmark: the 1 GiB RAM image of bench/common.mjs (50 % zero pages, 30 % zero but one word, 20 %
// random) in a shared memory, encoded and decoded by a KernelPool of 1 and of 2 workers, interleaved in each round:
// encode = ramEncode of the whole block into the pool's output windows, taken in order by the main thread (views,
// no copy); the same into one contiguous buffer (each window copied into place by a worker: the concatenation off
// the main thread); the same into a pipe (`cat > /dev/null`, windows written as they come, end to end; anchor: the
// encoded stream written to the pipe); decode = ramDecode of the whole stream into a zeroed block with a
// written-page bitmap. The ratio 2 workers / 1 worker is against the 1-worker anchor of the same run; next to them
// the same kernels on the main thread, and threads that only spin (how late a timer fires on this machine anyway).
// While a task runs, the main thread is watched: how late a 1 ms timer fired (monitorEventLoopDelay) and the most
// CPU it used between two timer turns (its own work). GB/s = 1e9 bytes of guest RAM per second; medians over
// rounds after a warm-up round.
//
//   npm run bench:parallel                 table on stdout
//   npm run -s bench:parallel -- --json    one JSON object on stdout
//   options: --ram-mib N (default 1024), --rounds N (default 3), --backend wasm-simd|wasm-scalar|js
import { spawn } from "node:child_process";
import { openSync, readFileSync, readSync } from "node:fs";
import { join } from "node:path";
import { monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";

import { fillRamImage, machineInfo, makeRng, median, root } from "./common.mjs";

const { KernelPool, sharedKernelMemory, createKernels, BLK, DEC, DEC_STATUS, ENC, RAM_ENCODE, encodeWindowBytes } = await import(join(root, "dist/index.js"));
const { nodeWorkerFactory } = await import(join(root, "dist/node.js"));

const { values: args } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    "ram-mib": { type: "string", default: "1024" },
    rounds: { type: "string", default: "3" },
    backend: { type: "string", default: "wasm-simd" },
  },
});
const P = 4096;
const RAM_BYTES = Number(args["ram-mib"]) * 1048576;
const PAGES = RAM_BYTES / P;
const ROUNDS = Number(args.rounds);
const BACKEND = args.backend;
const log = (s) => process.stderr.write(s + "\n");

const memory = sharedKernelMemory();
const k = createKernels({ backend: BACKEND, memory });
log(`preparing ${RAM_BYTES >>> 20} MiB RAM image (50% zero, 30% zero but one word, 20% random)...`);
const ram = k.alloc(RAM_BYTES);
fillRamImage(memory, ram, RAM_BYTES, makeRng(), P);
const name = new TextEncoder().encode("pc.ram");
const namePtr = k.alloc(256);
k.u8.set(name, namePtr);

// The stream once, on the main thread: the decode input and the reference bytes.
// (encoded into a worst-case window, then moved into one of its size: RAM, stream, copy and destination fit in 4 GiB)
const worstCase = k.alloc(encodeWindowBytes(PAGES, P));
const encState = k.alloc(64, 8);
const streamBytes = k.ramEncode(ram, P, 0, PAGES, 0, 0, 0, namePtr, name.length, worstCase, encodeWindowBytes(PAGES, P), RAM_ENCODE.ZERO_DETECT, encState);
const encoded = new Uint32Array(memory.buffer, encState, ENC.SIZE).slice();
log(`stream: ${streamBytes} bytes (${encoded[ENC.ZERO]} ZERO, ${encoded[ENC.NORMAL]} PAGE records)`);
const stream = k.alloc(streamBytes);
k.u8.copyWithin(stream, worstCase, worstCase + streamBytes);
k.free(worstCase);
// room for the stream and the free space ramEncode wants before each page
const streamCap = streamBytes + 2 * (8 + 1 + 255 + 3 + P);
const contiguous = k.alloc(streamCap);

// The decode side: a destination block, its written-page bitmap, a one-entry table, the state.
const dst = k.alloc(RAM_BYTES);
const written = k.alloc(PAGES / 8);
const table = k.alloc(BLK.WORDS * 4, 8);
const decState = k.alloc(DEC.SIZE * 4, 8);
function resetDestination() {
  new Uint32Array(memory.buffer, dst, RAM_BYTES / 4).fill(0);
  k.u8.fill(0, written, written + PAGES / 8);
  new Uint32Array(memory.buffer, table, BLK.WORDS).set([namePtr, name.length, dst, RAM_BYTES, written, 0, 0, 0]);
  new Uint32Array(memory.buffer, decState, DEC.SIZE).fill(0).set([0xffffffff]);
}
function checkDecoded(status) {
  const st = new Uint32Array(memory.buffer, decState, DEC.SIZE);
  if (status !== DEC_STATUS.NEED_MORE || st[DEC.CONSUMED] !== streamBytes)
    throw new Error(`decode stopped: status ${status}, ${st[DEC.CONSUMED]} of ${streamBytes} bytes`);
}

log("starting pools of 1 and 2 workers...");
const factory = nodeWorkerFactory();
const pools = {
  1: await KernelPool.start({ memory, factory, workers: 1, backend: BACKEND, kernels: k }),
  2: await KernelPool.start({ memory, factory, workers: 2, backend: BACKEND, kernels: k }),
};

// ---- tasks: each returns nothing; the checks run once before the rounds ----
let sinkBytes = 0;
const encodeViews = (w) => () =>
  pools[w].ramEncode({ blockPtr: ram, pageSize: P, firstPage: 0, endPage: PAGES, name, options: RAM_ENCODE.ZERO_DETECT }, (chunks) => {
    for (const c of chunks) sinkBytes += c.length;
  });
// The windows go into one buffer: copied by the workers (the main thread copies only a renamed record's head).
const encodeContiguous = (w) => async () => {
  let at = contiguous;
  const u8 = k.u8;
  await pools[w].ramEncode({ blockPtr: ram, pageSize: P, firstPage: 0, endPage: PAGES, name, options: RAM_ENCODE.ZERO_DETECT }, (chunks) => {
    const copies = [];
    for (const c of chunks) {
      if (c.buffer === memory.buffer) copies.push(pools[w].copyBytes(at, c.byteOffset, c.length));
      else u8.set(c, at);
      at += c.length;
    }
    return Promise.all(copies);
  });
  sinkBytes += at - contiguous;
};
// Into a pipe (`cat > /dev/null`, end to end): each window is written as it is (a view of the shared memory, no
// copy) and comes back to the pool once the pipe took it, while the workers encode the next ones.
let cat = null;
async function spawnCat() {
  const child = spawn("sh", ["-c", "exec cat > /dev/null"], { stdio: ["pipe", "ignore", "inherit"] });
  await new Promise((res, rej) => (child.once("spawn", res), child.once("error", rej)));
  cat = { child, exited: new Promise((res) => child.once("exit", res)) };
}
// Writes go out in pieces of at most 1 MiB: a pipe (or socket) write copies into the kernel on the calling thread,
// and with a reader draining as fast, one write of a whole window can hold the main thread for milliseconds.
const PIECE = 1 << 20;
const pieces = (c) => Array.from({ length: Math.ceil(c.length / PIECE) }, (_, i) => c.subarray(i * PIECE, Math.min(c.length, (i + 1) * PIECE)));
const encodePipe = (w) => async () => {
  const stdin = cat.child.stdin;
  await pools[w].ramEncode({ blockPtr: ram, pageSize: P, firstPage: 0, endPage: PAGES, name, options: RAM_ENCODE.ZERO_DETECT }, (chunks) => {
    return new Promise((resolve, reject) => {
      const all = chunks.flatMap(pieces);
      all.forEach((c, i) => {
        sinkBytes += c.length;
        stdin.write(c, i === all.length - 1 ? (e) => (e ? reject(e) : resolve()) : undefined);
      });
    });
  });
  stdin.end();
  const code = await cat.exited;
  if (code !== 0) throw new Error(`cat exited ${code}`);
};
// Anchor: the stream already encoded, written to the pipe in 1 MiB views, 16 MiB queued at most.
const rawPipe = async () => {
  const stdin = cat.child.stdin;
  for (let at = 0; at < streamBytes; at += PIECE) {
    stdin.write(new Uint8Array(memory.buffer, stream + at, Math.min(PIECE, streamBytes - at)));
    if (stdin.writableLength >= 16 << 20) await new Promise((r) => stdin.once("drain", r));
  }
  stdin.end();
  const code = await cat.exited;
  if (code !== 0) throw new Error(`cat exited ${code}`);
};
const decode = (w) => async () => checkDecoded(await pools[w].ramDecode(stream, streamBytes, table, 1, P, decState));
const mainEncode = () => {
  sinkBytes += k.ramEncode(ram, P, 0, PAGES, 0, 0, 0, namePtr, name.length, contiguous, streamCap, RAM_ENCODE.ZERO_DETECT, encState);
};
const mainDecode = () => checkDecoded(k.ramDecode(stream, streamBytes, table, 1, P, decState));

// Baseline: the main thread idle while n threads spin for as long as the 1-worker encode took (no pool work): how
// late a 1 ms timer fires on this machine anyway (the OS scheduling the main thread among busy threads).
const spinners = [0, 1].map(
  () =>
    new Worker(
      "const { parentPort } = require('node:worker_threads'); parentPort.on('message', (ms) => { const end = performance.now() + ms; while (performance.now() < end); parentPort.postMessage(0); });",
      { eval: true },
    ),
);
const spin = (n) => () => {
  const ms = tasks[0].samples.at(-1) ?? 70;
  return Promise.all(spinners.slice(0, n).map((w) => new Promise((r) => (w.once("message", r), w.postMessage(ms)))));
};

const tasks = [
  { name: "encode, windows taken in order", workers: 1, fn: encodeViews(1) },
  { name: "encode, windows taken in order", workers: 2, fn: encodeViews(2) },
  { name: "encode into one buffer", workers: 1, fn: encodeContiguous(1) },
  { name: "encode into one buffer", workers: 2, fn: encodeContiguous(2) },
  { name: "encode into a pipe (cat > /dev/null)", workers: 1, fn: encodePipe(1), before: spawnCat },
  { name: "encode into a pipe (cat > /dev/null)", workers: 2, fn: encodePipe(2), before: spawnCat },
  { name: "raw pipe write of the stream (anchor)", workers: 0, fn: rawPipe, before: spawnCat },
  { name: "decode into a zeroed block", workers: 1, fn: decode(1), before: resetDestination },
  { name: "decode into a zeroed block", workers: 2, fn: decode(2), before: resetDestination },
  { name: "encode, one call on the main thread", workers: 0, fn: mainEncode },
  { name: "decode, one call on the main thread", workers: 0, fn: mainDecode, before: resetDestination },
  { name: "(baseline) threads spinning, no work", workers: 1, fn: spin(1), baseline: true },
  { name: "(baseline) threads spinning, no work", workers: 2, fn: spin(2), baseline: true },
].map((t) => ({ ...t, samples: [], delays: [], busy: [], gc: [], otherMs: 0, wallMs: 0 }));

// ---- checks: the pools' bytes are the main thread's ----
{
  const ref = k.u8.slice(stream, stream + streamBytes);
  for (const w of [1, 2]) {
    await encodeContiguous(w)();
    if (Buffer.compare(ref, k.u8.subarray(contiguous, contiguous + streamBytes)) !== 0) throw new Error(`${w} worker(s): the stream differs`);
    resetDestination();
    await decode(w)();
    if (Buffer.compare(k.u8.subarray(ram, ram + RAM_BYTES), k.u8.subarray(dst, dst + RAM_BYTES)) !== 0) throw new Error(`${w} worker(s): decoded RAM differs`);
  }
  log("checked: 1 and 2 workers write the main thread's stream and decode it to the image");
}

/**
 * CPU time the main thread (tid = pid) has used, in ms (Linux schedstat, ns), or undefined. Read into one buffer
 * through an open descriptor: the watcher runs every millisecond and should not itself allocate (and collect).
 */
let statFd;
const statBuf = Buffer.alloc(64);
try {
  statFd = openSync(`/proc/self/task/${process.pid}/schedstat`, "r");
} catch {
  statFd = undefined;
}
function mainThreadCpuMs() {
  if (statFd === undefined) return undefined;
  const n = readSync(statFd, statBuf, 0, 64, 0);
  let ns = 0;
  for (let i = 0; i < n && statBuf[i] >= 48 && statBuf[i] <= 57; i++) ns = ns * 10 + (statBuf[i] - 48);
  return ns / 1e6;
}

/**
 * Watches the main thread while a task runs: `delay`, how late a 1 ms timer fired at worst (monitorEventLoopDelay:
 * what an emulator on this thread would feel, OS scheduling included), and `busy`, the most CPU the main thread
 * used between two turns of the timer (schedstat; without it eventLoopUtilization, which also counts time the
 * thread was preempted while running): the longest piece of main-thread work, our code's share of the delay.
 */
let gcMax = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMax = Math.max(gcMax, e.duration);
}).observe({ entryTypes: ["gc"] });

function watchMainThread() {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  gcMax = 0;
  let prevElu = performance.eventLoopUtilization();
  let prevCpu = mainThreadCpuMs();
  let busy = 0;
  const tick = () => {
    const cpu = mainThreadCpuMs();
    if (cpu !== undefined) {
      busy = Math.max(busy, cpu - prevCpu);
      prevCpu = cpu;
    } else {
      const elu = performance.eventLoopUtilization();
      busy = Math.max(busy, performance.eventLoopUtilization(elu, prevElu).active);
      prevElu = elu;
    }
  };
  const timer = setInterval(tick, 1);
  return () => {
    clearInterval(timer);
    h.disable();
    tick();
    return { delay: h.max / 1e6, busy, gc: gcMax };
  };
}

/** CPU time of the whole machine (/proc/stat, Linux) and of this process (all its threads), in ms. */
function cpuNow() {
  let machine = Number.NaN;
  try {
    const f = readFileSync("/proc/stat", "latin1").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    machine = ((f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) * 1000) / 100; // user nice system irq softirq steal, USER_HZ = 100
  } catch {
    /* not Linux */
  }
  const own = process.cpuUsage();
  return { machine, own: (own.user + own.system) / 1000 };
}

try {
  for (let round = 0; round <= ROUNDS; round++) {
    // the task order rotates, so no task always runs after the same one
    const order = tasks.map((_, i) => tasks[(i + round) % tasks.length]);
    for (const t of order) {
      await t.before?.();
      const stop = watchMainThread();
      // the delay monitor records from its second tick on: let it tick before the work starts
      await new Promise((r) => setTimeout(r, 5));
      const c0 = cpuNow();
      const t0 = performance.now();
      await t.fn();
      const ms = performance.now() - t0;
      const c1 = cpuNow();
      // a timer that the work held up fires now: the stall of a long synchronous call is counted too
      await new Promise((r) => setTimeout(r, 5));
      const w = stop();
      if (round > 0) {
        t.samples.push(ms);
        t.delays.push(w.delay);
        t.busy.push(w.busy);
        t.gc.push(w.gc);
        t.otherMs += c1.machine - c0.machine - (c1.own - c0.own);
        t.wallMs += ms;
      }
    }
    log(round === 0 ? "warm-up round done" : `round ${round}/${ROUNDS} done`);
  }
} finally {
  await pools[1].close();
  await pools[2].close();
  await Promise.all(spinners.map((w) => w.terminate()));
}

const results = tasks.map((t) => ({
  task: t.name,
  workers: t.workers,
  ...(t.baseline ? {} : { gbps: +(RAM_BYTES / (median(t.samples) / 1e3) / 1e9).toFixed(3) }),
  ms: +median(t.samples).toFixed(1),
  samplesMs: t.samples.map((x) => +x.toFixed(1)),
  longestDelayMs: +Math.max(...t.delays).toFixed(1),
  /** The median over rounds of each round's longest delay: the typical worst case, not one burst from elsewhere. */
  medianDelayMs: +median(t.delays).toFixed(1),
  longestBusyMs: +Math.max(...t.busy).toFixed(1),
  medianBusyMs: +median(t.busy).toFixed(1),
  /** The longest garbage-collection pause of the main thread while the task ran. */
  longestGcMs: +Math.max(...t.gc).toFixed(1),
  /** CPU the rest of the machine used while this task ran, in cores (other processes, and the pipe rows' `cat`); /proc/stat ticks: +-0.3. */
  otherCores: +(t.otherMs / t.wallMs).toFixed(2),
}));
const R = (task, w) => results.find((x) => x.task.startsWith(task) && x.workers === w);
const ratios = [
  { name: "encode (windows): 2 workers / 1 worker", value: R("encode, windows", 2).gbps / R("encode, windows", 1).gbps, target: 1.7 },
  { name: "encode (one buffer): 2 workers / 1 worker", value: R("encode into one", 2).gbps / R("encode into one", 1).gbps, target: null },
  { name: "encode (pipe): 2 workers / 1 worker", value: R("encode into a pipe", 2).gbps / R("encode into a pipe", 1).gbps, target: null },
  { name: "encode (pipe), 1 worker / raw pipe write", value: R("encode into a pipe", 1).gbps / R("raw pipe write", 0).gbps, target: null },
  { name: "decode: 2 workers / 1 worker", value: R("decode into", 2).gbps / R("decode into", 1).gbps, target: 1.7 },
  { name: "encode (windows), 1 worker / main-thread call", value: R("encode, windows", 1).gbps / R("encode, one call", 0).gbps, target: null },
  { name: "decode, 1 worker / main-thread call", value: R("decode into", 1).gbps / R("decode, one call", 0).gbps, target: null },
].map((x) => ({ ...x, value: +x.value.toFixed(3), ...(x.target !== null ? { met: x.value >= x.target } : {}) }));
const inWorkers = results.filter((r) => r.workers > 0 && r.gbps !== undefined);
const busyMs = Math.max(...inWorkers.map((r) => r.longestBusyMs));
const stall = {
  name: "most main-thread CPU between two timer turns while workers run (ms)",
  value: busyMs,
  target: 10,
  met: busyMs < 10,
  medianOfRounds: Math.max(...inWorkers.map((r) => r.medianBusyMs)),
  longestDelayMs: Math.max(...inWorkers.map((r) => r.longestDelayMs)),
  baselineDelayMs: Math.max(...results.filter((r) => r.gbps === undefined).map((r) => r.longestDelayMs)),
};

const machine = machineInfo({ ramMiB: RAM_BYTES >>> 20, rounds: ROUNDS, backend: BACKEND });
const image = { pages: PAGES, streamBytes, zeroRecords: encoded[ENC.ZERO], pageRecords: encoded[ENC.NORMAL] };
if (args.json) {
  process.stdout.write(JSON.stringify({ machine, image, results, ratios, stall }, null, 1) + "\n");
} else {
  const pad = (s, n) => String(s).padEnd(n);
  console.log(
    `vmstream every-core benchmark — ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.ramMiB} MiB image, ${BACKEND}, median of ${ROUNDS} rounds`,
  );
  console.log(`stream: ${streamBytes} bytes (${image.pageRecords} PAGE, ${image.zeroRecords} ZERO records); load ${machine.loadavg.join(" ")}\n`);
  console.log("  " + pad("task", 40) + pad("workers", 9) + "GB/s of RAM      ms   timer late ms (med/max)   main CPU ms (med/max)  GC ms  other cores");
  for (const x of results)
    console.log(
      "  " +
        pad(x.task, 40) +
        pad(x.workers || "main", 9) +
        (x.gbps === undefined ? "-" : x.gbps.toFixed(2)).padStart(11) +
        x.ms.toFixed(1).padStart(8) +
        `${x.medianDelayMs.toFixed(1)} / ${x.longestDelayMs.toFixed(1)}`.padStart(26) +
        `${x.medianBusyMs.toFixed(1)} / ${x.longestBusyMs.toFixed(1)}`.padStart(24) +
        x.longestGcMs.toFixed(1).padStart(7) +
        x.otherCores.toFixed(2).padStart(14),
    );
  console.log("\nratios (same run)");
  for (const x of ratios)
    console.log(`  ${pad(x.name, 50)} ${x.value.toFixed(2).padStart(7)}${x.target !== null ? `  target >= ${x.target}  ${x.met ? "met" : "NOT met"}` : ""}`);
  console.log(
    `  ${pad(stall.name, 50)} ${stall.value.toFixed(1).padStart(7)}  target < ${stall.target}  ${stall.met ? "met" : "NOT met"}  (median of the rounds' longest: ${stall.medianOfRounds})`,
  );
  console.log(
    `  (a 1 ms timer on the main thread fired up to ${stall.longestDelayMs} ms late while workers ran, and up to ${stall.baselineDelayMs} ms late next to threads that only spin: the OS)`,
  );
}
if (sinkBytes === 0.5) console.log("");
