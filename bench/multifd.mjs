#!/usr/bin/env node
// multifd receive benchmark (issue 12, measurement c): QEMU 7.2 migrating a paused guest holding the 1 GiB RAM
// image (bench/common.mjs recipe, put into guest RAM with `-device loader`) over loopback TCP, with multifd (N
// channels, compression none or zstd) and without, into (1) `vmstream receive` (a child process, decoding every
// record and joining the channels: the CLI as users run it) and (2) a QEMU 7.2 destination (`-incoming defer`,
// the same multifd settings). Time: from `migrate` to the receiver's verdict (vmstream: its exit; QEMU: the
// destination's query-migrate says completed, polled every 5 ms). GiB/s = 2^30 bytes of guest RAM per second;
// medians over rounds, task order rotating.
//
//   npm run bench:multifd                 table on stdout
//   npm run -s bench:multifd -- --json    JSON on stdout (also written to bench/results/multifd-DATE.json)
//   options: --ram-mib N (default 1024), --rounds N (default 3), --channels N (default 2)
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { fillRamImage, machineInfo, makeRng, median, root, startBenchQemu } from "./common.mjs";

const { values: args } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    "ram-mib": { type: "string", default: "1024" },
    rounds: { type: "string", default: "3" },
    channels: { type: "string", default: "2" },
  },
});
const QEMU = "qemu-system-x86_64";
const GiB = 2 ** 30;
const RAM_BYTES = Number(args["ram-mib"]) * 1048576;
const ROUNDS = Number(args.rounds);
const CHANNELS = Number(args.channels);
const log = (s) => process.stderr.write(s + "\n");
const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const { createKernels } = await import(join(root, "dist/index.js"));

const version = spawnSync(QEMU, ["--version"], { encoding: "utf8" });
if (version.error || version.status !== 0) {
  log(`${QEMU} is not installed: this benchmark needs it`);
  process.exit(2);
}

const tmp = mkdtempSync(join(os.tmpdir(), "vmstream-bench-multifd-"));
{
  log(`preparing ${RAM_BYTES >>> 20} MiB RAM image (50% zero, 30% zero but one word, 20% random)...`);
  const memory = new WebAssembly.Memory({ initial: 1 });
  const k = createKernels({ backend: "wasm-simd", memory });
  const ram = k.alloc(RAM_BYTES);
  fillRamImage(memory, ram, RAM_BYTES, makeRng());
  writeFileSync(join(tmp, "image.bin"), new Uint8Array(memory.buffer, ram, RAM_BYTES));
}

const setpriv = !spawnSync("setpriv", ["--pdeathsig", "KILL", "--", "true"]).error;
const spawnKilled = (file, argv, stdio) => (setpriv ? spawn("setpriv", ["--pdeathsig", "KILL", "--", file, ...argv], { stdio }) : spawn(file, argv, { stdio }));
const live = new Set();
async function startQemu(extra) {
  const q = await startBenchQemu({ binary: QEMU, dir: tmp, ramMiB: RAM_BYTES >>> 20, extra });
  live.add(q);
  return q;
}
async function stopQemu(q) {
  live.delete(q);
  await q.stop();
}
async function setMultifd(q, channels, compression) {
  if (channels === 0) return;
  await q.qmp.execute("migrate-set-capabilities", { capabilities: [{ capability: "multifd", state: true }] });
  await q.qmp.execute("migrate-set-parameters", { "multifd-channels": channels, "multifd-compression": compression });
}
async function finalStatus(q, what) {
  for (;;) {
    const info = await q.qmp.execute("query-migrate");
    if (info.status === "completed") return info;
    if (info.status === "failed" || info.status === "cancelled") throw new Error(`${what}: ${info.status} ${info["error-desc"] ?? ""}\n${q.stderr()}`);
    await sleep(5);
  }
}

/** One migration from a fresh paused source into `receiver` ("vmstream" or "qemu"); returns ms and bytes. */
async function run(receiver, channels, compression) {
  const src = await startQemu(["-device", `loader,file=${join(tmp, "image.bin")},addr=0,force-raw=on`]);
  await src.qmp.execute("migrate-set-parameters", { "max-bandwidth": 100 * GiB });
  await setMultifd(src, channels, compression);
  let dst;
  let recv;
  let port;
  try {
    if (receiver === "qemu") {
      dst = await startQemu(["-incoming", "defer"]);
      await setMultifd(dst, channels, compression);
      await dst.qmp.execute("migrate-incoming", { uri: "tcp:127.0.0.1:0" });
      port = Number((await dst.qmp.execute("query-migrate"))["socket-address"][0].port);
    } else {
      recv = spawnKilled(process.execPath, [join(root, "dist/cli/main.js"), "receive", "tcp:127.0.0.1:0", "--quiet"], ["ignore", "pipe", "pipe"]);
      let err = "";
      const exited = new Promise((res) => recv.once("exit", (code) => res({ code, at: now() })));
      port = await new Promise((ok, fail) => {
        recv.stderr.on("data", (d) => {
          err += d;
          const m = /listening on tcp:127\.0\.0\.1:(\d+)/.exec(err);
          if (m) ok(Number(m[1]));
        });
        recv.once("exit", () => fail(new Error(`receive exited: ${err}`)));
      });
      recv.result = exited.then((r) => ({ ...r, err }));
    }
    const t0 = now();
    await src.qmp.execute("migrate", { uri: `tcp:127.0.0.1:${port}` });
    let endAt;
    if (receiver === "qemu") {
      await finalStatus(dst, "destination");
      endAt = now();
    } else {
      const r = await recv.result;
      if (r.code !== 0) throw new Error(`vmstream receive exited ${r.code}: ${r.err}`);
      endAt = r.at;
    }
    const info = await finalStatus(src, "source");
    return { ms: endAt - t0, bytes: info.ram.transferred, multifdBytes: info.ram["multifd-bytes"], normal: info.ram.normal };
  } finally {
    recv?.kill("SIGKILL");
    if (dst) await stopQemu(dst);
    await stopQemu(src);
  }
}

const tasks = [];
for (const [channels, compression] of [
  [0, "none"],
  [CHANNELS, "none"],
  [CHANNELS, "zstd"],
])
  for (const receiver of ["vmstream", "qemu"]) tasks.push({ receiver, channels, compression, ms: [] });
const label = (t) =>
  `${t.channels === 0 ? "single channel" : `multifd ${t.channels} ch, ${t.compression}`} -> ${t.receiver === "qemu" ? "QEMU 7.2 destination" : "vmstream receive"}`;

try {
  log(`${QEMU}: ${version.stdout.split("\n")[0]}`);
  for (let round = 0; round <= ROUNDS; round++) {
    const order = tasks.map((_, i) => tasks[(i + round) % tasks.length]);
    for (const t of order) {
      const r = await run(t.receiver, t.channels, t.compression);
      if (round > 0) t.ms.push(r.ms); // round 0 warms up
      t.last = r;
      log(`${round === 0 ? "warm-up" : `round ${round}`}: ${label(t)}: ${r.ms.toFixed(0)} ms`);
    }
  }
} finally {
  for (const q of [...live]) await stopQemu(q);
  rmSync(tmp, { recursive: true, force: true });
}

const rows = tasks.map((t) => ({
  name: label(t),
  receiver: t.receiver,
  channels: t.channels,
  compression: t.compression,
  ms: median(t.ms),
  all: t.ms,
  gibps: RAM_BYTES / GiB / (median(t.ms) / 1000),
  bytes: t.last.bytes,
}));
const ratios = [];
for (const [channels, compression] of [
  [0, "none"],
  [CHANNELS, "none"],
  [CHANNELS, "zstd"],
]) {
  const a = rows.find((r) => r.receiver === "vmstream" && r.channels === channels && r.compression === compression);
  const b = rows.find((r) => r.receiver === "qemu" && r.channels === channels && r.compression === compression);
  ratios.push({
    name: `vmstream receive / QEMU destination, ${channels === 0 ? "single channel" : `multifd ${channels}, ${compression}`}`,
    value: b.ms / a.ms,
    target: channels === 0 ? undefined : 1,
  });
}
const result = { machine: machineInfo({ qemu: version.stdout.split("\n")[0].trim(), ramMiB: RAM_BYTES >>> 20, rounds: ROUNDS }), rows, ratios };
if (args.json) {
  process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  mkdirSync(join(root, "bench/results"), { recursive: true });
  writeFileSync(join(root, "bench/results", `multifd-${new Date().toISOString().slice(0, 10)}.json`), JSON.stringify(result, null, 2) + "\n");
} else {
  console.log(`machine: ${result.machine.cpu}, ${result.machine.cores} cores, node ${result.machine.node}, ${result.machine.qemu}`);
  console.log(`guest: ${RAM_BYTES >>> 20} MiB (the bench image), paused; medians of ${ROUNDS}`);
  for (const r of rows)
    console.log(`${r.name.padEnd(52)} ${r.ms.toFixed(0).padStart(6)} ms  ${r.gibps.toFixed(2)} GiB/s  (${r.all.map((x) => x.toFixed(0)).join(", ")})`);
  for (const r of ratios) console.log(`${r.name.padEnd(60)} ${r.value.toFixed(2)}x${r.target ? ` (goal >= ${r.target})` : ""}`);
}
