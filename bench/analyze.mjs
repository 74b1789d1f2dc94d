#!/usr/bin/env node
// Decoding benchmark: GB/s of stream for a whole-file decode of a RAM-heavy QEMU 7.2 stream, next to
// QEMU's own load of the same file, measured in the same run; and the peak RSS of a process that checks or
// analyses a 2 GiB guest's stream without keeping its RAM.
//
//   npm run bench:analyze                       table on stdout
//   npm run -s bench:analyze -- --json          one JSON object on stdout
//   options: --guest-mib N (2048)  --rounds N (5)  --no-qemu  --keep (leave the streams in the temp dir)
//
// The streams are REAL where QEMU is installed: QEMU saves a paused `-M pc -m N -nodefaults` guest, then the
// records of its RAM block `pc.ram` are replaced by generated ones — one record per page, in page order, as
// QEMU's first pass sends them: PAGE (4 KiB of deterministic pseudo-random data) for a chosen fraction of
// the pages, ZERO for the rest — in PART sections of about 32 MiB; every other byte (header, configuration,
// the START section with MEM_SIZE, the other RAM blocks' records, the device sections, EOF, vmdesc) is
// QEMU's own. QEMU loads the result (`-incoming defer`, `migrate-incoming exec:cat FILE`, query-migrate
// polled every 5 ms until `completed`; a fresh QEMU per round, its start-up not timed), which proves it is a
// valid stream, and one load is compared page for page (pmemsave) with what we decode. Without QEMU the
// same records are framed by a minimal synthetic stream and the QEMU rows are missing.
//
// Datasets: "ram-heavy" (75 % of pc.ram pages carry data: ~1.6 GB of stream for 2 GiB) and "mostly-zero"
// (20 %: the page mix of the x86-pc-2g-mostly-zero timing fixture, ~0.44 GB).
//
// Measured per round, interleaved (median over rounds), each in a fresh process like the CLI (and like
// QEMU, which is a fresh process per load): ours `validateFile` (check: no RAM kept), ours `decodeFile`
// without RAM (what `analyze` decodes), ours `decodeFile(materialize: {ram: true})` (every RAM block in
// memory), QEMU's load as QEMU runs, and QEMU's load without transparent huge pages (prctl
// PR_SET_THP_DISABLE before exec, where python3 is there: QEMU madvises its guest RAM MADV_HUGEPAGE, and
// where huge pages are slow to get that alone can dominate its load). Our times are taken inside the child
// around the one call (kernel set-up included, Node's start-up not); each child also reports its peak RSS
// (VmHWM). The stream file is in the page cache (read before each dataset's turn). Anchors, also in fresh
// processes: `read` (readSync of the file in 1 MiB pieces into one buffer: the copy out of the page cache
// every reader pays) and `touch` (a 4 KiB write to each of as many pages of a fresh WebAssembly.Memory as
// the stream carries data pages: the page faults that putting the guest's RAM into fresh memory costs).
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { median, startBenchQemu } from "./common.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { decodeFile } = await import(join(root, "dist/sections/node.js"));

const { values: args } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    "guest-mib": { type: "string", default: "2048" },
    rounds: { type: "string", default: "5" },
    "no-qemu": { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
  },
});
const P = 4096;
const GUEST_MIB = Number(args["guest-mib"]);
const ROUNDS = Number(args.rounds);
const QEMU = "qemu-system-x86_64";
const log = (s) => process.stderr.write(s + "\n");
const round3 = (x) => Math.round(x * 1000) / 1000;
const dir = mkdtempSync(join(os.tmpdir(), "vmstream-bench-"));
const cleanup = () => {
  if (!args.keep) rmSync(dir, { recursive: true, force: true });
};
process.on("exit", cleanup);

// ------------------------------------------------------------------------------------------------ QEMU

function qemuVersion() {
  const r = spawnSync(QEMU, ["--version"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.split("\n")[0].trim() : undefined;
}

const delay = (ms) => new Promise((r) => setTimeout(r, ms));
// PR_SET_THP_DISABLE (41) before exec: the process and what it execs get no transparent huge pages
const NO_THP = ["python3", "-c", "import ctypes, os, sys; ctypes.CDLL(None).prctl(41, 1, 0, 0, 0); os.execvp(sys.argv[1], sys.argv[1:])"];
const canDisableThp = spawnSync(NO_THP[0], [...NO_THP.slice(1), "true"]).status === 0;

/**
 * Start QEMU (`-M pc -m N -nodefaults`, paused), connect QMP. Dies with this process (setpriv pdeathsig).
 * `noThp`: without transparent huge pages (QEMU madvises its guest RAM MADV_HUGEPAGE; on a machine where
 * huge pages are slow to get, that alone can dominate a load).
 */
async function startQemu(extra, noThp = false) {
  return startBenchQemu({ binary: QEMU, dir, ramMiB: GUEST_MIB, extra, prefix: noThp ? NO_THP : [] });
}

async function pollMigrate(q, what) {
  for (;;) {
    const info = await q.qmp.execute("query-migrate");
    if (info.status === "completed") return info;
    if (info.status === "failed" || info.status === "cancelled") throw new Error(`${what}: ${info.status} ${info["error-desc"] ?? ""}\n${q.stderr()}`);
    await delay(5);
  }
}

/** QEMU saves its paused guest to `file`. */
async function qemuSave(file) {
  const q = await startQemu([]);
  try {
    await q.qmp.execute("migrate-set-parameters", { "max-bandwidth": 100 * 2 ** 30 });
    await q.qmp.execute("migrate", { uri: `exec:cat > ${file}` });
    await pollMigrate(q, "save");
    // `completed` can come before cat has written everything: wait for the vmdesc at the end
    for (let i = 0; i < 500; i++) {
      const r = await decodeFile(file).catch(() => undefined);
      if (r?.vmdesc) {
        r.dispose();
        return q.argv;
      }
      await delay(10);
    }
    throw new Error("the saved stream has no vmdesc");
  } finally {
    await q.stop();
  }
}

/** QEMU loads `file`: wall ms from migrate-incoming to `completed`; optionally pmemsave a range afterwards. */
async function qemuLoad(file, pmem, noThp = false) {
  const q = await startQemu(["-incoming", "defer"], noThp);
  try {
    const t0 = performance.now();
    await q.qmp.execute("migrate-incoming", { uri: `exec:cat ${file}` });
    await pollMigrate(q, "load");
    const ms = performance.now() - t0;
    if (pmem) await q.qmp.execute("pmemsave", { val: pmem.addr, size: pmem.size, filename: pmem.file });
    return { ms, argv: q.argv };
  } finally {
    await q.stop();
  }
}

// ------------------------------------------------------------------------------------------------ streams

function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

/** The frame around the pc.ram records: from a QEMU save, or synthetic. */
async function frameFromQemu(basePath) {
  const r = await decodeFile(basePath);
  const ram = r.sections.filter((s) => s.idstr === "ram");
  const start = ram.find((s) => s.type === "start");
  const end = ram.find((s) => s.type === "end");
  const parts = ram.filter((s) => s.type === "part");
  const blocks = r.live.ram.blocks.map((b) => ({ name: b.name, length: Number(b.length) }));
  const info = { machine: r.configuration?.machine, devices: r.devices.length, blocks };
  r.dispose();
  const base = readFileSync(basePath);
  // the other blocks' records, from QEMU's PART sections (each record names its block)
  const other = Buffer.alloc(base.length);
  let o = 0;
  let cur = "";
  for (const s of parts) {
    let p = s.payloadOffset;
    for (;;) {
      const hi = base.readUInt32BE(p);
      const lo = base.readUInt32BE(p + 4);
      p += 8;
      const flags = lo & (P - 1);
      if (flags === 0x10) break;
      let name = cur;
      let body = p;
      if (!(flags & 0x20)) {
        name = base.toString("latin1", p + 1, p + 1 + base[p]);
        body = p + 1 + base[p];
      }
      const kind = flags & ~0x20;
      const len = kind === 0x02 ? 1 : kind === 0x08 ? P : -1;
      if (len < 0) throw new Error(`unexpected RAM record flags 0x${flags.toString(16)} in QEMU's stream`);
      if (name !== "pc.ram") {
        other.writeUInt32BE(hi, o);
        other.writeUInt32BE((lo & ~0x20) >>> 0, o + 4);
        other[o + 8] = name.length;
        o += 9 + other.write(name, o + 9, "latin1");
        base.copy(other, o, body, body + len);
        o += len;
      }
      cur = name;
      p = body + len;
    }
  }
  return { head: base.subarray(0, start.offset + start.size), other: other.subarray(0, o), tail: base.subarray(end.offset), id: end.id, info };
}

function frameSynthetic() {
  const machine = "pc-i440fx-7.2";
  const b = [];
  const u8 = (v) => b.push(v & 0xff);
  const be32 = (v) => [24, 16, 8, 0].forEach((s) => u8(v >>> s));
  const str = (s) => [...Buffer.from(s, "latin1")].forEach(u8);
  str("QEVM");
  be32(3);
  u8(0x07); // configuration
  be32(machine.length);
  str(machine);
  u8(0x01); // START ram
  be32(2);
  u8(3);
  str("ram");
  be32(0);
  be32(4);
  const len = GUEST_MIB * 2 ** 20;
  be32(Math.floor(len / 2 ** 32));
  be32((len >>> 0) | 0x04); // MEM_SIZE
  u8(6);
  str("pc.ram");
  be32(Math.floor(len / 2 ** 32));
  be32(len >>> 0);
  be32(0);
  be32(0x10); // EOS
  u8(0x7e);
  be32(2);
  const head = Buffer.from(b);
  // END ram (EOS only), EOF, vmdesc without devices
  const vmdesc = Buffer.from(JSON.stringify({ page_size: P, devices: [] }), "latin1");
  const tail = Buffer.concat([Buffer.from([0x03, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x7e, 0, 0, 0, 2, 0x00, 0x06]), Buffer.alloc(4), vmdesc]);
  tail.writeUInt32BE(vmdesc.length, 20);
  return { head, other: Buffer.alloc(0), tail, id: 2, info: { machine, devices: 0, blocks: [{ name: "pc.ram", length: len }] } };
}

const POOL = 64 << 20;
let pool;
function dataPool() {
  if (!pool) {
    pool = Buffer.alloc(POOL);
    const w = new Uint32Array(pool.buffer, pool.byteOffset, POOL / 4);
    const r = rng(0x5eed);
    for (let i = 0; i < w.length; i++) w[i] = r();
  }
  return pool;
}

/** The contents of pc.ram page i in a dataset (null = zero page): deterministic. */
function pageSource(nonzero, seed) {
  const r = rng(seed);
  const cut = Math.round(nonzero * 2 ** 32);
  return () => (r() < cut ? (r() % (POOL / P - 1)) * P : -1);
}

/** Write the stream: frame head, pc.ram records in PART sections of ~32 MiB, the other blocks, frame tail. */
function writeStream(file, frame, nonzero, seed) {
  const pages = (GUEST_MIB * 2 ** 20) / P;
  const src = pageSource(nonzero, seed);
  const data = dataPool();
  const fd = openSync(file, "w");
  writeSync(fd, frame.head);
  const PART = 32 << 20;
  const buf = Buffer.alloc(PART + 2 * P + frame.other.length + 64);
  let pos = 0;
  let first = true;
  let dataPages = 0;
  let sections = 0;
  const open = () => {
    buf[0] = 0x02;
    buf.writeUInt32BE(frame.id, 1);
    pos = 5;
    first = true;
  };
  const close = () => {
    buf.writeUInt32BE(0, pos);
    buf.writeUInt32BE(0x10, pos + 4);
    buf[pos + 8] = 0x7e;
    buf.writeUInt32BE(frame.id, pos + 9);
    writeSync(fd, buf, 0, pos + 13);
    sections++;
  };
  open();
  for (let i = 0; i < pages; i++) {
    const s = src();
    const off = i * P;
    buf.writeUInt32BE(Math.floor(off / 2 ** 32), pos);
    buf.writeUInt32BE(((off >>> 0) | (s >= 0 ? 0x08 : 0x02) | (first ? 0 : 0x20)) >>> 0, pos + 4);
    pos += 8;
    if (first) {
      buf[pos] = 6;
      buf.write("pc.ram", pos + 1, "latin1");
      pos += 7;
      first = false;
    }
    if (s >= 0) {
      data.copy(buf, pos, s, s + P);
      buf.writeUInt32LE(i, pos); // no two pages alike
      pos += P;
      dataPages++;
    } else buf[pos++] = 0;
    if (pos >= PART) {
      close();
      open();
    }
  }
  frame.other.copy(buf, pos);
  pos += frame.other.length;
  close();
  writeSync(fd, frame.tail);
  closeSync(fd);
  return { bytes: statSync(file).size, pages, dataPages, zeroPages: pages - dataPages, ramSections: sections + 2 };
}

/** The expected bytes of pc.ram [off, off+len) for a dataset. */
function expectedRam(nonzero, seed, off, len) {
  const src = pageSource(nonzero, seed);
  const data = dataPool();
  const out = Buffer.alloc(len);
  for (let i = 0; i < (off + len) / P; i++) {
    const s = src();
    if (i * P >= off && s >= 0) {
      data.copy(out, i * P - off, s, s + P);
      out.writeUInt32LE(i, i * P - off);
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------------ measurements (fresh processes)

const CHILD = {
  validate: `const { validateFile } = await import(DIST + "/sections/node.js");
    t0 = performance.now(); const v = await validateFile(FILE); ms = performance.now() - t0;
    if (!v.ok) throw new Error(v.error?.message);`,
  decode: `const { decodeFile } = await import(DIST + "/sections/node.js");
    t0 = performance.now(); const r = await decodeFile(FILE); ms = performance.now() - t0;
    if (!r.completeness.complete) throw new Error("incomplete"); r.dispose();`,
  materialize: `const { decodeFile } = await import(DIST + "/sections/node.js");
    t0 = performance.now(); const r = await decodeFile(FILE, { materialize: { ram: true } }); ms = performance.now() - t0;
    if (!r.completeness.complete || !r.live.ram.blocks.every((b) => b.data)) throw new Error("incomplete"); r.dispose();`,
  read: `const { openSync, readSync, closeSync } = await import("node:fs");
    const buf = Buffer.allocUnsafe(1 << 20); const fd = openSync(FILE, "r");
    t0 = performance.now(); while (readSync(fd, buf, 0, buf.length, null) > 0); ms = performance.now() - t0; closeSync(fd);`,
  touch: `const m = new WebAssembly.Memory({ initial: 1 }); m.grow(Math.ceil((ARG + 1) * 4096 / 65536));
    const u8 = new Uint8Array(m.buffer); const page = new Uint8Array(4096).fill(0x5a);
    t0 = performance.now(); for (let i = 1; i <= ARG; i++) u8.set(page, i * 4096); ms = performance.now() - t0;`,
};

// Peak RSS of the child's own memory: VmHWM (Linux). getrusage's maxRSS also counts the image of the
// parent the child was forked from (this process) before it exec'd node, so it is a fallback only.
const PEAK_RSS_KIB = `(() => { try { return Number(/VmHWM:\\s+(\\d+) kB/.exec(__readFileSync("/proc/self/status", "utf8"))[1]); } catch { return process.resourceUsage().maxRSS; } })()`;

/** Run CHILD[mode] in a fresh node: { ms, maxRssMiB }. */
function measure(mode, file, arg = 0) {
  const body = `import { readFileSync as __readFileSync } from "node:fs";
    const DIST = ${JSON.stringify(join(root, "dist"))}; const FILE = ${JSON.stringify(file)}; const ARG = ${arg};
    let t0 = 0, ms = 0;
    ${CHILD[mode]}
    console.log(JSON.stringify({ ms, maxRssMiB: ${PEAK_RSS_KIB} / 1024 }));`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", body], { encoding: "utf8", maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`${mode} ${file}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop());
}

function cliRss(file) {
  // the CLI's own `analyze` (stdout to /dev/null), with a preload that reports the peak RSS on exit
  const main = join(root, "dist/cli/main.js");
  if (!existsSync(main)) return undefined;
  const pre =
    "data:text/javascript," +
    encodeURIComponent(`import { readFileSync as __readFileSync } from "node:fs";
    process.on("exit", () => process.stderr.write("\\nMAXRSS " + ${PEAK_RSS_KIB} + "\\n"));`);
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ["--import", pre, main, "analyze", file], { encoding: "utf8", stdio: ["ignore", "ignore", "pipe"] });
  const ms = performance.now() - t0;
  const m = /MAXRSS (\d+)/.exec(r.stderr);
  if (r.status !== 0 || !m) return { status: r.status, error: r.stderr.trim().split("\n")[0] };
  return { ms: round3(ms), maxRssMiB: round3(Number(m[1]) / 1024) };
}

// ------------------------------------------------------------------------------------------------ run

const loadAtStart = os.loadavg().map(round3);
const qemu = args["no-qemu"] ? undefined : qemuVersion();
log(`guest ${GUEST_MIB} MiB, ${ROUNDS} rounds, ${qemu ?? "no QEMU"}; scratch dir ${dir}`);
let frame;
let qemuSaveArgv;
if (qemu) {
  const base = join(dir, "qemu-save.mig");
  log("QEMU saves a paused pc guest...");
  qemuSaveArgv = await qemuSave(base);
  frame = await frameFromQemu(base);
} else frame = frameSynthetic();

const datasets = [
  { name: "ram-heavy", nonzero: 0.75, seed: 11 },
  { name: "mostly-zero", nonzero: 0.2, seed: 12 },
];
for (const ds of datasets) {
  ds.file = join(dir, `${ds.name}.mig`);
  const t = performance.now();
  ds.stream = writeStream(ds.file, frame, ds.nonzero, ds.seed);
  log(
    `${ds.name}: ${ds.stream.bytes} bytes, ${ds.stream.dataPages} data + ${ds.stream.zeroPages} zero pages of pc.ram (${((performance.now() - t) / 1000).toFixed(1)} s to write)`,
  );
}

// checks (not timed): our decode of each stream; QEMU loads each once and its memory equals our decode
const CHECK_OFF = 16 << 20;
const CHECK_LEN = 1 << 20;
for (const ds of datasets) {
  measure("read", ds.file); // into the page cache
  const r = await decodeFile(ds.file, { materialize: { ram: true } });
  const pcram = r.live.ram.blocks.find((b) => b.name === "pc.ram");
  const ours = Buffer.from(pcram.data.subarray(CHECK_OFF, CHECK_OFF + CHECK_LEN));
  ds.decoded = { complete: r.completeness.complete, devices: r.devices.length, records: r.live.ram.records };
  r.dispose();
  if (!ds.decoded.complete) throw new Error(`${ds.name}: our decode says incomplete`);
  if (!ours.equals(expectedRam(ds.nonzero, ds.seed, CHECK_OFF, CHECK_LEN))) throw new Error(`${ds.name}: decoded pc.ram differs from the generated pages`);
  if (qemu) {
    const file = join(dir, "pmem.bin");
    const l = await qemuLoad(ds.file, { addr: CHECK_OFF, size: CHECK_LEN, file }); // guest-physical 16 MiB = pc.ram offset 16 MiB
    ds.qemuWarmupMs = l.ms;
    ds.qemuLoadArgv = l.argv;
    if (!readFileSync(file).equals(ours)) throw new Error(`${ds.name}: QEMU's memory after the load differs from our decode`);
    rmSync(file);
    ds.qemuMatches = true;
  }
  log(`${ds.name}: checked (our decode${qemu ? " == QEMU's memory after its load" : ""}, pc.ram bytes [16 MiB, 17 MiB))`);
}

// interleaved rounds (round 0 warms up and is not counted)
const MODES = ["validate", "decode", "materialize", "read", "touch"];
for (const ds of datasets) {
  ds.times = Object.fromEntries([...MODES, "qemuLoad", "qemuLoadNoThp"].map((m) => [m, []]));
  ds.rssMiB = Object.fromEntries(MODES.map((m) => [m, []]));
}
for (let round = 0; round <= ROUNDS; round++) {
  for (const ds of datasets) {
    const line = [];
    measure("read", ds.file); // the file back into the page cache (the other dataset and QEMU ran since)
    // the order rotates from round to round, so no mode always runs right after QEMU or the page-cache read
    for (let j = 0; j < MODES.length; j++) {
      const mode = MODES[(j + round) % MODES.length];
      const m = measure(mode, ds.file, ds.stream.dataPages);
      if (round > 0) {
        ds.times[mode].push(m.ms);
        ds.rssMiB[mode].push(m.maxRssMiB);
      }
      line.push(`${mode} ${m.ms.toFixed(0)}`);
    }
    if (qemu && round > 0) {
      const q = await qemuLoad(ds.file);
      ds.times.qemuLoad.push(q.ms);
      line.push(`QEMU load ${q.ms.toFixed(0)}`);
      if (canDisableThp) {
        const n = await qemuLoad(ds.file, undefined, true);
        ds.times.qemuLoadNoThp.push(n.ms);
        line.push(`QEMU load without THP ${n.ms.toFixed(0)}`);
      }
      await delay(1000); // let the kernel finish freeing QEMU's 2 GiB before the next measurement
    }
    log(`round ${round}${round ? "" : " (warm-up)"} ${ds.name}: ${line.join(", ")} ms`);
  }
}
const cli = Object.fromEntries(datasets.map((ds) => [ds.name, cliRss(ds.file)]));

const gbps = (bytes, ms) => round3(bytes / ms / 1e6);
const results = datasets.map((ds) => {
  const b = ds.stream.bytes;
  const m = Object.fromEntries(
    Object.entries(ds.times)
      .filter(([, v]) => v.length)
      .map(([k, v]) => [k, round3(median(v))]),
  );
  return {
    dataset: ds.name,
    nonzeroFraction: ds.nonzero,
    stream: ds.stream,
    decoded: ds.decoded,
    qemuMemoryMatchesOurDecode: ds.qemuMatches ?? null,
    medianMs: m,
    runsMs: Object.fromEntries(Object.entries(ds.times).map(([k, v]) => [k, v.map(round3)])),
    gbPerS: {
      validate: gbps(b, m.validate),
      decode: gbps(b, m.decode),
      materialize: gbps(b, m.materialize),
      qemuLoad: m.qemuLoad ? gbps(b, m.qemuLoad) : null,
      qemuLoadNoThp: m.qemuLoadNoThp ? gbps(b, m.qemuLoadNoThp) : null,
      anchorRead: gbps(b, m.read),
      anchorFirstTouchOfDataPages: gbps(ds.stream.dataPages * P, m.touch),
    },
    ratios: {
      // ours / QEMU, as speed (QEMU's time / ours); "best": against the faster of QEMU's two loads
      validateVsQemu: m.qemuLoad ? round3(m.qemuLoad / m.validate) : null,
      decodeVsQemu: m.qemuLoad ? round3(m.qemuLoad / m.decode) : null,
      materializeVsQemu: m.qemuLoad ? round3(m.qemuLoad / m.materialize) : null,
      validateVsBestQemu: m.qemuLoad ? round3(Math.min(m.qemuLoad, m.qemuLoadNoThp ?? Infinity) / m.validate) : null,
      decodeVsBestQemu: m.qemuLoad ? round3(Math.min(m.qemuLoad, m.qemuLoadNoThp ?? Infinity) / m.decode) : null,
      materializeVsBestQemu: m.qemuLoad ? round3(Math.min(m.qemuLoad, m.qemuLoadNoThp ?? Infinity) / m.materialize) : null,
      // how much of the materialised decode the two anchors (read the file + fault in the data pages) take
      anchorsOverMaterialize: round3((m.read + m.touch) / m.materialize),
    },
    peakRssMiB: {
      ...Object.fromEntries(Object.entries(ds.rssMiB).map(([k, v]) => [k, round3(Math.max(...v))])),
      cliAnalyze: cli[ds.name]?.maxRssMiB ?? null,
    },
    cliAnalyze: cli[ds.name] ?? null,
  };
});

const cpu = os.cpus();
const sysfs = (f) => {
  try {
    return readFileSync(f, "utf8").trim();
  } catch {
    return null;
  }
};
const out = {
  date: new Date().toISOString(),
  machine: {
    cpu: cpu[0]?.model,
    cpus: cpu.length,
    memGiB: round3(os.totalmem() / 2 ** 30),
    node: process.version,
    v8: process.versions.v8,
    loadavgAtStart: loadAtStart,
    loadavgAtEnd: os.loadavg().map(round3),
    transparentHugepage: { enabled: sysfs("/sys/kernel/mm/transparent_hugepage/enabled"), defrag: sysfs("/sys/kernel/mm/transparent_hugepage/defrag") },
  },
  qemu: qemu ?? null,
  qemuSaveArgv: qemuSaveArgv ?? null,
  qemuLoadArgv: datasets[0].qemuLoadArgv ?? null,
  guestMiB: GUEST_MIB,
  rounds: ROUNDS,
  frame: frame.info,
  results,
};

if (args.json) process.stdout.write(JSON.stringify(out, null, 2) + "\n");
else {
  const p = (v, n) => String(v ?? "-").padStart(n);
  console.log(
    `\n${out.machine.cpu}, ${out.machine.cpus} vCPU, ${out.machine.memGiB} GiB, Node ${process.version}; ${qemu ?? "no QEMU"}; guest ${GUEST_MIB} MiB; median of ${ROUNDS} rounds\n`,
  );
  console.log(
    `GB/s of stream   ${p("MB", 6)} ${p("validate", 9)} ${p("decode", 7)} ${p("materialize", 12)} ${p("QEMU load", 10)} ${p("(no THP)", 9)} | ${p("read", 6)} ${p("touch*", 7)}`,
  );
  for (const r of results) {
    const g = r.gbPerS;
    console.log(
      `${r.dataset.padEnd(16)} ${p((r.stream.bytes / 1e6).toFixed(0), 6)} ${p(g.validate, 9)} ${p(g.decode, 7)} ${p(g.materialize, 12)} ${p(g.qemuLoad, 10)} ${p(g.qemuLoadNoThp, 9)} | ${p(g.anchorRead, 6)} ${p(g.anchorFirstTouchOfDataPages, 7)}`,
    );
  }
  console.log(
    "(*: GB/s of data pages faulted into fresh memory)\n\nspeed vs QEMU's load (as QEMU runs / the faster of its two loads), and peak RSS (MiB) of the process:",
  );
  for (const r of results) {
    const x = r.peakRssMiB;
    const q = r.ratios;
    console.log(
      `${r.dataset.padEnd(16)} validate ${q.validateVsQemu ?? "-"}x/${q.validateVsBestQemu ?? "-"}x  decode ${q.decodeVsQemu ?? "-"}x/${q.decodeVsBestQemu ?? "-"}x  materialize ${q.materializeVsQemu ?? "-"}x/${q.materializeVsBestQemu ?? "-"}x | RSS validate ${x.validate.toFixed(0)}, decode ${x.decode.toFixed(0)}, CLI analyze ${x.cliAnalyze?.toFixed(0) ?? "n/a"}, materialize ${x.materialize.toFixed(0)}`,
    );
  }
}
