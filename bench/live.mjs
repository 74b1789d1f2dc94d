#!/usr/bin/env node
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import { join } from "node:path";
// Live-migration benchmark: the source throughput of the 1 GiB RAM image (bench/common.mjs recipe) migrated by
// runLiveSource over loopback TCP to a receiving process, in GiB/s of guest RAM, end to end (from the start of
// the migration to the receiver having decoded EOF). Receivers (child processes of this script): `discard`
// (counts bytes), `decode` (StreamDecoder, RAM validated, not kept), `materialize` (RAM written into the
// receiver's memory). Next to it, in the same run: the raw loopback rate (a plain socket pump of the very bytes
// our source wrote, in the same chunks) and QEMU 7.2 migrating a paused guest of the same size and content
// (`migrate tcp:` to the same receivers; the image is put into guest RAM with `-device loader`).
// multifd: the source engine with N channels (runLiveSource + MultifdConnections) and QEMU's multifd migrate
// with the same N, into receivers that take a main stream and N channels: `mfd-discard` (counts bytes on every
// connection) and `mfd-decode` (IncomingMigration joins them, StreamDecoder validates). For every vmstream run the
// longest main-thread stall is measured (perf_hooks monitorEventLoopDelay, 1 ms resolution).
// GiB/s = 2^30 bytes of guest RAM per second; medians over rounds after a warm-up round, task order rotating.
//
//   npm run bench:live                 table on stdout
//   npm run -s bench:live -- --json    one JSON object on stdout (also written to bench/results/live-DATE.json)
//   options: --ram-mib N (default 1024), --rounds N (default 5), --part-mib N (default 4), --no-qemu,
//            --multifd N[,N...] (channel counts, default 2), --only multifd (skip the single-channel variants)
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

import { fillRamImage, machineInfo, makeRng, median, root, startBenchQemu } from "./common.mjs";

const lib = await import(join(root, "dist/index.js"));
const { ByteWriter, createKernels, MigrationSource, StreamDecoder, runLiveSource } = lib;
const { connectTcp, StreamWriter, IncomingMigration, MultifdConnections, MultifdChannelWorkers, runLiveSourceTcp } = await import(join(root, "dist/node.js"));

const { values: args } = parseArgs({
  options: {
    receiver: { type: "string" },
    json: { type: "boolean", default: false },
    "ram-mib": { type: "string", default: "1024" },
    rounds: { type: "string", default: "5" },
    "part-mib": { type: "string", default: "4" },
    "no-qemu": { type: "boolean", default: false },
    multifd: { type: "string", default: "2" },
    only: { type: "string" },
    channels: { type: "string" },
  },
});
const now = () => performance.timeOrigin + performance.now(); // epoch ms, comparable across processes

// ---------------------------------------------------------------------------------------------- receiver child
// One line per connection on stdout: {bytes, complete, error?, endAt (epoch ms when the verdict was known)}.
if (args.receiver === "mfd-discard" || args.receiver === "mfd-decode") {
  await multifdReceiver(args.receiver, Number(args.channels));
} else if (args.receiver) {
  const mode = args.receiver;
  const k = mode === "discard" ? null : createKernels();
  const server = net.createServer((sock) => {
    let bytes = 0;
    let d = k ? new StreamDecoder({ kernels: k, materialize: mode === "materialize" ? { ram: true } : false }) : null;
    let error = null;
    sock.on("data", (c) => {
      bytes += c.length;
      if (d && !error)
        try {
          d.push(c);
        } catch (e) {
          error = e;
        }
    });
    const done = () => {
      let complete = false,
        ramBytes = 0;
      if (d && !error) {
        try {
          const r = d.end();
          complete = r.completeness.complete;
          ramBytes = (r.live.ram?.blocks ?? []).reduce((a, b) => a + Number(b.length), 0);
          r.dispose();
        } catch (e) {
          error = e;
        }
      } else if (!d) complete = true;
      d = null;
      process.stdout.write(JSON.stringify({ bytes, complete, ramBytes, error: error ? String(error.message) : undefined, endAt: now() }) + "\n");
      sock.destroy();
    };
    sock.on("end", done);
    sock.on("error", (e) => {
      error ??= e;
    });
  });
  server.listen(0, "127.0.0.1", () => process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n"));
  process.on("SIGTERM", () => process.exit(0));
} else {
  await main();
}

/**
 * A receiver of multifd migrations (a main stream and `channels` channel connections). mfd-discard: counts the
 * bytes of every connection; a migration is over when all of its connections have ended (main stream first
 * seen by its QEVM magic). mfd-decode: IncomingMigration (one per migration, on the same port) joins the channels
 * with the main stream, StreamDecoder validates it, each joined chunk given back to the join once decoded.
 */
async function multifdReceiver(mode, channels) {
  const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
  process.on("SIGTERM", () => process.exit(0));
  if (mode === "mfd-discard") {
    let conns = 0;
    let ended = 0;
    let bytes = 0;
    let mains = 0;
    let failed;
    const server = net.createServer((sock) => {
      conns++;
      let first = true;
      sock.on("data", (c) => {
        if (first && c.length >= 4 && c.readUInt32BE(0) === 0x5145564d) mains++;
        first = false;
        bytes += c.length;
      });
      let done = false;
      const over = () => {
        if (done) return;
        done = true;
        if (++ended < channels + 1) return;
        say({ bytes, complete: mains === 1 && conns === channels + 1 && !failed, ramBytes: 0, endAt: now(), ...(failed ? { error: failed } : {}) });
        conns = ended = bytes = mains = 0;
        failed = undefined;
      };
      sock.on("error", (e) => {
        failed ??= e.message;
        over();
      });
      sock.on("close", over);
      sock.on("end", () => {
        sock.end();
        over();
      });
    });
    server.listen(0, "127.0.0.1", () => say({ port: server.address().port }));
    return;
  }
  const k = createKernels();
  const { nodeStreamCodecs } = await import(join(root, "dist/node.js"));
  // the next migration's listener is up before the verdict goes out (the parent then starts it)
  const listen = async (port) => {
    for (let i = 0; ; i++) {
      try {
        return await IncomingMigration.listen({ host: "127.0.0.1", port }, { channels, codecs: nodeStreamCodecs });
      } catch (e) {
        if (i > 100) throw e;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  let m = await listen(0);
  const port = m.port;
  say({ port });
  for (;;) {
    const d = new StreamDecoder({ kernels: k, materialize: false });
    let bytes = 0;
    let error;
    let complete = false;
    let ramBytes = 0;
    try {
      for await (const c of m.source) {
        bytes += c.length;
        d.push(c);
        ByteWriter.release(c); // the join's buffer, reused warm (as vmstream receive does)
      }
      const r = d.end();
      complete = r.completeness.complete;
      ramBytes = (r.live.ram?.blocks ?? []).reduce((a, b) => a + Number(b.length), 0);
      r.dispose();
    } catch (e) {
      error = String(e.message);
      d.dispose();
    }
    const endAt = now();
    const wire = m.bytes;
    m.close();
    m = await listen(port);
    // the bytes of every connection: what the source sent
    say({ bytes: wire, joinedBytes: bytes, complete, ramBytes, error, endAt });
  }
}

async function main() {
  const P = 4096;
  const RAM_BYTES = Number(args["ram-mib"]) * 1048576;
  const ROUNDS = Number(args.rounds);
  const PART = Number(args["part-mib"]) * 1048576;
  const QEMU = "qemu-system-x86_64";
  const GiB = 2 ** 30;
  const log = (s) => process.stderr.write(s + "\n");

  // ---- the image, shared by both backends (one memory, as bench/encode.mjs) ----
  const memory = new WebAssembly.Memory({ initial: 1 });
  const K = { "wasm-simd": createKernels({ backend: "wasm-simd", memory }), js: createKernels({ backend: "js", memory }) };
  log(`preparing ${RAM_BYTES >>> 20} MiB RAM image (50% zero, 30% zero but one word, 20% random)...`);
  const ram = K["wasm-simd"].alloc(RAM_BYTES);
  const pageKinds = fillRamImage(memory, ram, RAM_BYTES, makeRng(), P);
  const kinds = { zero: 0, oneWord: 0, random: 0 };
  for (const x of pageKinds) x === 0 ? kinds.zero++ : x === 1 ? kinds.oneWord++ : kinds.random++;
  const BLOCK = { name: "pc.ram", ptr: ram, length: RAM_BYTES };
  // the same image in a shared memory, for the channels on worker threads (they read the pages themselves)
  let SHARED;
  const shared = () => {
    if (SHARED) return SHARED;
    const k = createKernels({ backend: "wasm-simd", memory: lib.sharedKernelMemory(RAM_BYTES + (64 << 20)) });
    const ptr = k.alloc(RAM_BYTES);
    k.u8.set(new Uint8Array(memory.buffer, ram, RAM_BYTES), ptr);
    SHARED = { kernels: k, block: { name: "pc.ram", ptr, length: RAM_BYTES } };
    return SHARED;
  };

  // ---- receivers ----
  const children = new Set();
  async function startReceiver(mode, channels = 0) {
    const child = spawn(process.execPath, [new URL(import.meta.url).pathname, "--receiver", mode, "--channels", String(channels)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.add(child);
    const lines = [];
    const waiters = [];
    createInterface({ input: child.stdout }).on("line", (s) => {
      const l = JSON.parse(s);
      const w = waiters.shift();
      w ? w(l) : lines.push(l);
    });
    child.once("exit", (code, sig) => {
      for (const w of waiters.splice(0)) w({ error: `receiver exited ${code} ${sig}` });
    });
    const next = () => (lines.length ? Promise.resolve(lines.shift()) : new Promise((r) => waiters.push(r)));
    const { port } = await next();
    return { mode, port, next, child };
  }
  const onlyMultifd = args.only === "multifd";
  const MULTIFD = args.multifd
    .split(",")
    .map(Number)
    .filter((n) => n > 0);
  // channel threads started ahead and reused, as an emulator embedding vmstream would keep them
  const standing = new MultifdChannelWorkers();
  await standing.start(Math.max(0, ...MULTIFD));
  const receivers = {};
  for (const m of onlyMultifd ? ["discard", "decode"] : ["discard", "decode", "materialize"]) receivers[m] = await startReceiver(m);
  // multifd receivers, one per channel count: `mfd-discard-2`, `mfd-decode-2`, ...
  for (const n of MULTIFD) for (const m of ["mfd-discard", "mfd-decode"]) receivers[`${m}-${n}`] = await startReceiver(m, n);

  // vmstream's TCP transport (as `vmstream send`): backpressure, a failed socket rejects the next write. The
  // chunks are the encoder's own buffers (copied by runLiveSource where needed), so the writer copies nothing;
  // `written` (the socket's write callback) gives each chunk back to the encoder's buffer pool.
  async function connect(port) {
    const w = new StreamWriter(await connectTcp({ port }), { copy: false });
    return { write: (c, written) => w.write(c, written), end: () => w.end() };
  }

  // ---- ours: runLiveSource over TCP ----
  let captured = null; // the chunks of one run, for the raw pump (same bytes, same chunks)
  async function ours(backend, recv, { copy = "auto", dirty = "log", capture = false, recycle = true, channels = 0, threads = false } = {}) {
    // multifd: the main stream's connection, then the channels' (MultifdConnections, as `vmstream send` does);
    // with threads, runLiveSourceTcp connects the main stream and one worker thread per channel
    const target = { host: "127.0.0.1", port: receivers[recv].port };
    const conns = channels && !threads ? await MultifdConnections.open(target, channels) : undefined;
    const conn = threads ? undefined : conns ? conns.liveTransport() : await connect(receivers[recv].port);
    const mem = threads ? shared() : { kernels: K[backend], block: BLOCK };
    const chunks = capture ? [] : null;
    const stalls = monitorEventLoopDelay({ resolution: 1 });
    stalls.enable();
    const cpu0 = process.cpuUsage();
    const t0 = now();
    // the engine's own steps (a PART each): how long the main thread is busy with one, apart from the machine
    const steps = [];
    const create = (sink, channelSink) => {
      const source = new MigrationSource(
        {
          kernels: mem.kernels,
          blocks: [mem.block],
          bandwidth: Infinity,
          downtimeTarget: 0.3,
          maxRounds: 3,
          ...(dirty === "log" ? { dirtyLog: () => undefined } : {}), // a paused guest: nothing dirty after the first pass
          ...(channels ? { multifd: { channels } } : {}),
        },
        sink,
        channelSink,
      );
      const iterate = source.iterate.bind(source);
      source.iterate = (budget) => {
        const ts = performance.now();
        const d = iterate(budget);
        steps.push(performance.now() - ts);
        return d;
      };
      return source;
    };
    // the captured chunks are kept for the raw pump: never given back for reuse
    const run = threads
      ? runLiveSourceTcp(target, create, { channelWorkers: standing, partBytes: PART, copy })
      : runLiveSource(create, {
          write: capture ? (c) => (chunks.push(c), conn.write(c)) : recycle ? conn.write : (c) => conn.write(c),
          ...(conns ? { writeChannel: conn.writeChannel } : {}),
          end: conn.end,
          partBytes: PART,
          copy,
        });
    const r = await run.catch(async (e) => {
      // say what the receiver saw too (its verdict line follows a failed migration)
      const v = await Promise.race([receivers[recv].next(), new Promise((ok) => setTimeout(() => ok("no verdict within 5 s"), 5000))]);
      throw new Error(`${e.message}; receiver ${recv}: ${JSON.stringify(v)}`);
    });
    const v = await receivers[recv].next();
    const cpu = process.cpuUsage(cpu0);
    stalls.disable();
    if (!v.complete || v.bytes !== r.totalBytes) throw new Error(`receiver ${recv}: ${JSON.stringify(v)} vs ${r.totalBytes} bytes sent`);
    if (!recv.includes("discard") && v.ramBytes !== RAM_BYTES) throw new Error(`receiver ${recv} saw ${v.ramBytes} bytes of RAM`);
    if (capture) captured = chunks;
    steps.sort((a, b) => a - b);
    return {
      stepP50Ms: steps[steps.length >> 1],
      stepMaxMs: steps[steps.length - 1],
      maxStallMs: stalls.max / 1e6,
      p99StallMs: stalls.percentile(99) / 1e6,
      cpuMs: (cpu.user + cpu.system) / 1000,
      ms: v.endAt - t0,
      sourceMs: r.totalTime * 1000,
      bytes: r.totalBytes,
      rounds: r.rounds.length,
      parts: r.rounds.reduce((a, x) => a + x.parts, 0),
      copiedBytes: r.copiedBytes,
      copyMs: r.copySeconds * 1000,
    };
  }
  // ---- anchor: the same bytes pumped into a socket ----
  async function raw(recv) {
    const conn = await connect(receivers[recv].port);
    const t0 = now();
    let bytes = 0;
    for (const c of captured) {
      bytes += c.length;
      await conn.write(c);
    }
    await conn.end();
    const v = await receivers[recv].next();
    if (!v.complete || v.bytes !== bytes) throw new Error(`raw pump to ${recv}: ${JSON.stringify(v)}`);
    return { ms: v.endAt - t0, bytes };
  }

  // ---- QEMU: a paused guest holding the image, migrated over TCP to the same receivers ----
  const tmp = mkdtempSync(join(os.tmpdir(), "vmstream-bench-live-"));
  const qemus = new Set();
  let qemuInfo = null;
  // a paused guest holding the image (bench/common.mjs starts it); every one stopped at the end or on exit
  async function startQemu() {
    const q = await startBenchQemu({
      binary: QEMU,
      dir: tmp,
      ramMiB: RAM_BYTES >>> 20,
      extra: ["-device", `loader,file=${join(tmp, "image.bin")},addr=0,force-raw=on`],
    });
    qemus.add(q);
    await q.qmp.execute("migrate-set-parameters", { "max-bandwidth": 100 * GiB });
    return q;
  }
  async function stopQemu(q) {
    if (!qemus.delete(q)) return;
    await q.stop();
  }
  async function qemu(recv, channels = 0) {
    const q = await startQemu(); // a fresh QEMU per save (7.2 refuses a second one after a migration); not timed
    try {
      if (channels) {
        await q.qmp.execute("migrate-set-capabilities", { capabilities: [{ capability: "multifd", state: true }] });
        await q.qmp.execute("migrate-set-parameters", { "multifd-channels": channels });
      }
      const t0 = now();
      await q.qmp.execute("migrate", { uri: `tcp:127.0.0.1:${receivers[recv].port}` });
      let info;
      for (;;) {
        info = await q.qmp.execute("query-migrate");
        if (info.status === "completed") break;
        if (info.status === "failed" || info.status === "cancelled") throw new Error(`QEMU migrate: ${info.status} ${info["error-desc"] ?? ""}\n${q.stderr()}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      const v = await receivers[recv].next();
      if (!v.complete) throw new Error(`receiver ${recv} of QEMU's stream: ${JSON.stringify(v)}`);
      return {
        ms: v.endAt - t0,
        totalTimeMs: info["total-time"],
        downtimeMs: info.downtime,
        bytes: v.bytes,
        ramTotal: info.ram?.total,
        normal: info.ram?.normal,
        duplicate: info.ram?.duplicate,
      };
    } finally {
      await stopQemu(q);
    }
  }

  const stopAll = async () => {
    for (const q of [...qemus]) await stopQemu(q);
    for (const c of children) {
      try {
        c.kill("SIGTERM");
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
    for (const c of children) {
      try {
        c.kill("SIGKILL");
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

  // ---- tasks, run once per round in this order (interleaved) ----
  const tasks = [];
  const add = (name, backend, receiver, fn) => tasks.push({ name, backend, receiver, fn, samples: [], extra: [] });
  const singleReceivers = onlyMultifd ? ["discard", "decode"] : ["discard", "decode", "materialize"];
  for (const recv of singleReceivers) add("vmstream live source", "wasm-simd", recv, () => ours("wasm-simd", recv));
  if (!onlyMultifd) {
    add("vmstream live source", "js", "discard", () => ours("js", "discard"));
    add("vmstream live source, copy: always", "wasm-simd", "discard", () => ours("wasm-simd", "discard", { copy: "always" }));
    add("vmstream live source, no buffer reuse", "wasm-simd", "discard", () => ours("wasm-simd", "discard", { recycle: false }));
    add("vmstream live source, dirty scan (shadow copy)", "wasm-simd", "discard", () => ours("wasm-simd", "discard", { dirty: "scan" }));
  }
  for (const n of MULTIFD)
    for (const m of ["mfd-discard", "mfd-decode"])
      add(`vmstream live source, multifd ${n} channels`, "wasm-simd", `${m}-${n}`, () => ours("wasm-simd", `${m}-${n}`, { channels: n }));
  for (const n of MULTIFD)
    for (const m of ["mfd-discard", "mfd-decode"])
      add(`vmstream live source, multifd ${n} channels on worker threads`, "wasm-simd", `${m}-${n}`, () =>
        ours("wasm-simd", `${m}-${n}`, { channels: n, threads: true }),
      );
  for (const recv of singleReceivers) add("raw socket pump of the same bytes (anchor)", "-", recv, () => raw(recv));

  let qemuOn = false;
  try {
    if (!args["no-qemu"]) {
      const version = spawnSync(QEMU, ["--version"], { encoding: "utf8" });
      if (version.error || version.status !== 0) log(`${QEMU} not available: QEMU rows skipped`);
      else {
        qemuOn = true;
        qemuInfo = { binary: QEMU, version: version.stdout.split("\n")[0].trim() };
        writeFileSync(join(tmp, "image.bin"), new Uint8Array(memory.buffer, ram, RAM_BYTES));
        for (const recv of singleReceivers) add("QEMU 7.2 migrate tcp: (paused guest, same image)", "qemu", recv, () => qemu(recv));
        for (const n of MULTIFD)
          for (const m of ["mfd-discard", "mfd-decode"]) add(`QEMU 7.2 migrate tcp:, multifd ${n} channels`, "qemu", `${m}-${n}`, () => qemu(`${m}-${n}`, n));
      }
    }
    log("capturing one migration's chunks for the raw pump...");
    await ours("wasm-simd", "discard", { capture: true });
    for (let round = 0; round <= ROUNDS; round++) {
      // the order rotates per round: the first task after a QEMU (2 GiB freed) or the warm-up pays for it
      for (let i = 0; i < tasks.length; i++) {
        const t = tasks[(i + round) % tasks.length];
        const r = await t.fn();
        if (round > 0) {
          t.samples.push(r.ms);
          t.extra.push(r);
        }
      }
      log(round === 0 ? "warm-up round done" : `round ${round}/${ROUNDS} done`);
    }
  } finally {
    await stopAll();
    await standing.close();
  }

  const results = tasks.map((t) => {
    const guest = t.backend === "qemu" ? t.extra[0].ramTotal : RAM_BYTES;
    const ms = median(t.samples);
    const x = {
      task: t.name,
      backend: t.backend,
      receiver: t.receiver,
      gibps: +(guest / (ms / 1e3) / GiB).toFixed(3),
      ms: +ms.toFixed(1),
      samplesMs: t.samples.map((v) => +v.toFixed(1)),
      streamBytes: t.extra[0].bytes,
    };
    if (t.backend === "qemu")
      Object.assign(x, {
        guestRamBytes: guest,
        medianTotalTimeMs: median(t.extra.map((e) => e.totalTimeMs)),
        gibpsByTotalTime: +(guest / (median(t.extra.map((e) => e.totalTimeMs)) / 1e3) / GiB).toFixed(3),
        normal: t.extra[0].normal,
        duplicate: t.extra[0].duplicate,
        medianDowntimeMs: median(t.extra.map((e) => e.downtimeMs)),
      });
    else if (t.backend !== "-")
      Object.assign(x, {
        medianSourceMs: +median(t.extra.map((e) => e.sourceMs)).toFixed(1),
        medianCpuMs: +median(t.extra.map((e) => e.cpuMs)).toFixed(1),
        medianMaxStallMs: +median(t.extra.map((e) => e.maxStallMs)).toFixed(1),
        maxStallMs: +Math.max(...t.extra.map((e) => e.maxStallMs)).toFixed(1),
        medianP99StallMs: +median(t.extra.map((e) => e.p99StallMs)).toFixed(1),
        medianStepMs: +median(t.extra.map((e) => e.stepP50Ms)).toFixed(2),
        medianMaxStepMs: +median(t.extra.map((e) => e.stepMaxMs)).toFixed(1),
        parts: t.extra[0].parts,
        rounds: t.extra[0].rounds,
        copiedBytes: t.extra[0].copiedBytes,
        medianCopyMs: +median(t.extra.map((e) => e.copyMs)).toFixed(1),
      });
    return x;
  });
  const R = (name, backend, recv) => results.find((x) => x.task.startsWith(name) && x.backend === backend && x.receiver === recv)?.gibps;
  const ratios = [];
  for (const recv of singleReceivers) {
    const o = R("vmstream live source", "wasm-simd", recv);
    ratios.push({ name: `ours / raw socket pump, ${recv} receiver`, value: o / R("raw socket pump", "-", recv), target: null });
    if (qemuOn) ratios.push({ name: `ours / QEMU, ${recv} receiver`, value: o / R("QEMU", "qemu", recv), target: 1 });
  }
  if (!onlyMultifd) {
    ratios.push({
      name: "copy: always / auto (discard)",
      value: R("vmstream live source, copy: always", "wasm-simd", "discard") / R("vmstream live source", "wasm-simd", "discard"),
      target: null,
    });
    ratios.push({
      name: "buffer reuse: with / without (discard)",
      value: R("vmstream live source", "wasm-simd", "discard") / R("vmstream live source, no buffer reuse", "wasm-simd", "discard"),
      target: null,
    });
  }
  for (const n of MULTIFD) {
    const kind = (m) => `${m}-${n}`;
    for (const m of ["mfd-discard", "mfd-decode"]) {
      const o = R(`vmstream live source, multifd ${n} channels`, "wasm-simd", kind(m));
      if (qemuOn)
        ratios.push({ name: `(a) ours / QEMU, both multifd ${n}, ${m}`, value: o / R(`QEMU 7.2 migrate tcp:, multifd ${n}`, "qemu", kind(m)), target: 1.2 });
      const single = R("vmstream live source", "wasm-simd", m.replace("mfd-", ""));
      ratios.push({ name: `(b) ours multifd ${n} / ours one stream, ${m.replace("mfd-", "")}`, value: o / single, target: n === 2 ? 1.6 : null });
    }
  }
  // (e) the longest main-thread stall of any vmstream run, in ms (target < 10)
  const stallRows = results
    .filter((x) => x.maxStallMs !== undefined)
    .map((x) => ({
      task: x.task,
      receiver: x.receiver,
      medianMaxStallMs: x.medianMaxStallMs,
      maxStallMs: x.maxStallMs,
      medianP99StallMs: x.medianP99StallMs,
      medianStepMs: x.medianStepMs,
      medianMaxStepMs: x.medianMaxStepMs,
    }));
  const ratioRows = ratios.map((x) => ({ ...x, value: +x.value.toFixed(3), ...(x.target !== null ? { met: x.value >= x.target } : {}) }));

  const machine = machineInfo({ ramMiB: RAM_BYTES >>> 20, rounds: ROUNDS, partMiB: PART / 1048576 });
  const out = { machine, image: { pages: RAM_BYTES / P, ...kinds }, qemu: qemuInfo, results, ratios: ratioRows, stalls: stallRows };
  mkdirSync(join(root, "bench/results"), { recursive: true });
  const file = join(root, `bench/results/live-${machine.date.slice(0, 10)}.json`);
  writeFileSync(file, JSON.stringify(out, null, 1) + "\n");
  if (args.json) process.stdout.write(JSON.stringify(out, null, 1) + "\n");
  else {
    const pad = (s, n) => String(s).padEnd(n);
    console.log(
      `vmstream live-migration benchmark — ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.ramMiB} MiB image, loopback TCP, median of ${ROUNDS} rounds`,
    );
    console.log("  " + pad("task", 50) + pad("backend", 11) + pad("receiver", 15) + "GiB/s of guest RAM     ms   cpu ms  max stall ms");
    for (const x of results)
      console.log(
        "  " +
          pad(x.task, 50) +
          pad(x.backend, 11) +
          pad(x.receiver, 15) +
          x.gibps.toFixed(2).padStart(8) +
          x.ms.toFixed(1).padStart(13) +
          (x.medianCpuMs !== undefined ? x.medianCpuMs.toFixed(0).padStart(9) + `  ${x.medianMaxStallMs} (max ${x.maxStallMs})` : ""),
      );
    if (qemuInfo)
      console.log(
        `  (${qemuInfo.version}; QEMU by its own total-time: ${results
          .filter((x) => x.backend === "qemu")
          .map((x) => `${x.receiver} ${x.gibpsByTotalTime} GiB/s`)
          .join(", ")})`,
      );
    console.log("\nratios (same run)");
    for (const x of ratioRows)
      console.log(`  ${pad(x.name, 52)} ${x.value.toFixed(2).padStart(7)}${x.target !== null ? `  target >= ${x.target}  ${x.met ? "met" : "NOT met"}` : ""}`);
    const worst = Math.max(...stallRows.map((x) => x.maxStallMs));
    console.log(`\n(e) longest main-thread stall of any vmstream run: ${worst.toFixed(1)} ms (target < 10 ms: ${worst < 10 ? "met" : "NOT met"})`);
    console.log("    medians over the rounds: longest stall, p99 loop delay, engine step (one PART) p50 and max, ms");
    for (const x of stallRows)
      console.log(
        `    ${pad(x.task, 44)} ${pad(x.receiver, 14)} ${String(x.medianMaxStallMs).padStart(6)} ${String(x.medianP99StallMs).padStart(6)} ${String(x.medianStepMs).padStart(6)} ${String(x.medianMaxStepMs).padStart(6)}`,
      );
    console.log(`\nraw output: ${file}`);
  }
}
