// Regenerates the real QEMU 7.2 migration streams of tests/fixtures/ (how each is made and what its files hold:
// tests/fixtures/README-qemu-7.2.md). Per fixture: run the guest, save it with QMP `migrate` to `exec:cat > FILE`,
// load the stream back into a fresh QEMU and let it run, decode the stream with vmstream and check it against what
// QEMU reported (guest memory by pmemsave, page counters, the destination's disk), then write NAME.mig.gz,
// NAME.reference.json and, given QEMU's scripts/analyze-migration.py, its outputs (analyze*.json).
//
//   npm run fixtures -- --out DIR [--analyze PATH] [--settle SECONDS] [NAME...]
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import type { QmpMigrationInfo } from "../src/qmp/index.js";
import { blockOf, decodeBytes, htabOf, ramOf } from "../src/sections/stream.js";
import { sha256 } from "../tests/helpers/bytes.js";
import { memoryHashes, type Range } from "../tests/helpers/interop.js";
import { SWEEP_GUEST_READY, sweepGuestImage } from "../tests/helpers/mbguest.js";
import { loadFromFile, type QemuInstance, qemuCheck, saveToFile, scratchDir, startQemu, stopAllQemu } from "../tests/helpers/qemu.js";
import { iterativeSequence } from "../tests/helpers/result-digest.js";
import { type Decoded, extractedFiles, hex, ramSlice, scanFacts } from "./fixture-reference.js";

const X86 = "qemu-system-x86_64";
const PPC = "qemu-system-ppc64";
const MiB = 1 << 20;
/** A stopped-guest-speed save: one pass, no throttling. */
const FAST = { "max-bandwidth": 10 * 2 ** 30 };

/** Scratch files of one fixture run. */
interface Work {
  dir: string;
  /** The source's (or destination's) serial log. */
  serial: string;
  /** The source's (or destination's) disk. */
  disk: string;
  kernel: string;
}

interface FixtureSpec {
  name: string;
  description: string;
  binary: string;
  /** Machine arguments (the harness adds -display none -accel tcg -qmp, and -nodefaults unless `defaults`). */
  args(w: Work): string[];
  defaults?: boolean;
  capabilities?: Record<string, boolean>;
  parameters: Record<string, unknown>;
  /** Prepare scratch files (disk, kernel) before the source starts. */
  prepare?(src: Work, dst: Work): void;
  /** Wait for this line on the serial log before settling. */
  ready?: string;
  /** How long the guest runs before `migrate` (after `ready`), ms. */
  settleMs: number;
  /** A live migration that may not converge alone: once `afterSyncs` dirty syncs (and an XBZRLE page) are seen, apply `parameters`. */
  converge?: { afterSyncs: number; parameters: Record<string, unknown> };
  /** Guest-physical ranges hashed on source and destination, each equal to RAM block `ramBlock` at the same offset. */
  memory: { ramBlock: string; ranges: Range[] };
  /** What the decoded stream must hold besides RAM. */
  expect: { block?: "data" | "zero-blocks"; htab?: boolean; xbzrle?: boolean };
  /** Store analyze.json gzip-compressed (the ppc64 dump is ~10 MB, mostly the spapr_iommu TCE table). */
  gzipAnalyze?: boolean;
  saveTimeoutMs?: number;
}

const PC = ["-M", "pc", "-m", "64"];
const PC_RAM = { ramBlock: "pc.ram", ranges: [{ addr: 0x100000, size: 64 * MiB - 0x100000 }] };

function blockSpec(name: string, description: string, capabilities: Record<string, boolean>, expect: "data" | "zero-blocks"): FixtureSpec {
  return {
    name,
    description,
    binary: X86,
    defaults: true,
    args: (w) => [...PC, "-nic", "none", "-drive", `file=${w.disk},format=raw,if=ide`],
    capabilities,
    parameters: FAST,
    prepare: (src, dst) => {
      writeFileSync(src.disk, fixtureDisk());
      writeFileSync(dst.disk, new Uint8Array(0));
      truncateSync(dst.disk, 8 * MiB);
    },
    settleMs: 4000,
    memory: PC_RAM,
    expect: { block: expect },
  };
}

const FIXTURES: readonly FixtureSpec[] = [
  {
    name: "x86-pc-64m",
    description: "x86_64 -M pc (pc-i440fx-7.2) -m 64, default devices, no NIC, SeaBIOS with nothing to boot",
    binary: X86,
    defaults: true,
    args: () => [...PC, "-nic", "none"],
    parameters: FAST,
    settleMs: 4000,
    memory: PC_RAM,
    expect: {},
  },
  blockSpec(
    "x86-pc-block",
    "x86_64 -M pc -m 64 + 8 MiB raw disk on IDE (ide0-hd0), migration capability block=on (block migration, 'block' section)",
    { block: true },
    "data",
  ),
  blockSpec(
    "x86-pc-block-zeroblocks",
    "as x86-pc-block plus capability zero-blocks=on (all-zero 1 MiB chunks sent as BLK_MIG_FLAG_ZERO_BLOCK)",
    { block: true, "zero-blocks": true },
    "zero-blocks",
  ),
  {
    name: "x86-pc-xbzrle",
    description:
      "x86_64 -M pc -m 64 -nodefaults, bare-metal multiboot guest (tests/helpers/mbguest.ts sweepGuestImage) rewriting one 8-byte word in each page of 16 MiB; " +
      "capability xbzrle=on, xbzrle-cache-size=16 MiB, max-bandwidth=4 MiB/s -> several iterations with RAM_SAVE_FLAG_XBZRLE pages",
    binary: X86,
    args: (w) => [...PC, "-serial", `file:${w.serial}`, "-kernel", w.kernel],
    capabilities: { xbzrle: true },
    parameters: { "xbzrle-cache-size": 16 * MiB, "max-bandwidth": 4 * MiB },
    prepare: (src, dst) => {
      writeFileSync(src.kernel, sweepGuestImage());
      writeFileSync(dst.kernel, sweepGuestImage());
    },
    ready: SWEEP_GUEST_READY,
    settleMs: 3000,
    converge: { afterSyncs: 6, parameters: { "downtime-limit": 2_000_000, "max-bandwidth": 2 ** 30 } },
    memory: PC_RAM,
    expect: { xbzrle: true },
    saveTimeoutMs: 180_000,
  },
  {
    name: "ppc64-pseries",
    description:
      "ppc64 -M pseries (pseries-7.2) -m 256 -nodefaults, SLOF firmware idle at its prompt (no OS), spapr-vty console to a file; " +
      "has the iterative 'spapr/htab' section (hash page table, no valid entries since SLOF runs in real mode)",
    binary: PPC,
    args: (w) => ["-M", "pseries", "-m", "256", "-serial", `file:${w.serial}`],
    parameters: FAST,
    settleMs: 6000,
    memory: { ramBlock: "ppc_spapr.ram", ranges: [{ addr: 0, size: 256 * MiB }] },
    expect: { htab: true },
    gzipAnalyze: true,
  },
];

/**
 * The 8 MiB disk of the block fixtures, in 1 MiB chunks (block migration's unit): text, zero, 0xA5, zero, half
 * text / half zero, zero, zero, 64 KiB pseudo-random then text. No 0x55AA boot signature: SeaBIOS does not boot it.
 */
function fixtureDisk(): Uint8Array {
  const disk = new Uint8Array(8 * MiB);
  const text = (from: number, length: number, tag: string): void => {
    for (let s = from; s < from + length; s += 512) {
      const line = Buffer.from(`vmstream fixture disk ${tag} sector ${String(s / 512).padStart(8, "0")}\n`, "latin1");
      for (let o = 0; o < 510; o++) disk[s + o] = line[o % line.length]!;
      disk[s + 510] = 0x0a;
      disk[s + 511] = 0x0a;
    }
  };
  text(0, MiB, "A");
  disk.fill(0xa5, 2 * MiB, 3 * MiB);
  text(4 * MiB, MiB / 2, "B");
  let x = 0x2545f491; // xorshift32: reproducible "random" bytes
  for (let o = 7 * MiB; o < 7 * MiB + 64 * 1024; o++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    disk[o] = x & 0xff;
  }
  text(7 * MiB + 64 * 1024, MiB - 64 * 1024, "C");
  return disk;
}

const log = (msg: string): void => void process.stderr.write(`[make-fixtures] ${msg}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`check failed: ${what}`);
}

async function waitForSerial(q: QemuInstance, file: string, marker: string, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    let text = "";
    try {
      text = readFileSync(file, "latin1");
    } catch {
      // not created yet
    }
    if (text.includes(marker)) return performance.now() - t0;
    if (q.hasExited) throw new Error(`QEMU exited before the guest printed ${marker}: ${q.stderr().slice(-500)}`);
    if (performance.now() - t0 > timeoutMs) throw new Error(`the guest did not print ${marker} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

function work(dir: string, side: "src" | "dst"): Work {
  return { dir, serial: join(dir, `${side}.serial`), disk: join(dir, `${side}.raw`), kernel: join(dir, `${side}-guest.bin`) };
}

/** The argv as recorded in reference.json: the run's scratch dir written as $WORK. */
const recorded = (argv: string[], dir: string): string[] => argv.map((a) => a.split(dir).join("$WORK"));

interface SaveRun {
  argv: string[];
  info: QmpMigrationInfo;
  wallMs: number;
  polls: number;
  statusAfter: unknown;
  memory: string[];
  bumpedAt: Record<string, unknown> | null;
}

async function saveSource(spec: FixtureSpec, w: Work, stream: string, settleMs: number): Promise<SaveRun> {
  const src = await startQemu({ binary: spec.binary, args: spec.args(w), defaults: spec.defaults ?? false });
  try {
    if (spec.ready) log(`${spec.name}: guest ready after ${(await waitForSerial(src, w.serial, spec.ready, 60_000)).toFixed(0)} ms`);
    await sleep(settleMs);
    let bumpedAt: Record<string, unknown> | null = null;
    const t0 = performance.now();
    const res = await saveToFile(src, stream, {
      capabilities: spec.capabilities,
      parameters: spec.parameters,
      timeoutMs: spec.saveTimeoutMs ?? 60_000,
      pollMs: spec.converge ? 50 : 20,
      onPoll: async (info) => {
        const c = spec.converge;
        if (!c || bumpedAt) return;
        const syncs = info.ram?.["dirty-sync-count"] ?? 0;
        const xbzrlePages = Number(info["xbzrle-cache"]?.["pages"] ?? 0);
        if (syncs >= c.afterSyncs && (!spec.expect.xbzrle || xbzrlePages > 0)) {
          await src.qmp.execute("migrate-set-parameters", c.parameters);
          const elapsed = Number(((performance.now() - t0) / 1000).toFixed(3));
          bumpedAt = { "dirty-sync-count": syncs, "xbzrle-pages": xbzrlePages, elapsed_s: elapsed, parameters: c.parameters };
          log(`${spec.name}: dirty-sync-count ${syncs}: set ${JSON.stringify(c.parameters)} to converge`);
        }
      },
    });
    const statusAfter = await src.qmp.execute("query-status");
    const memory = await memoryHashes(src, spec.memory.ranges, "src");
    return { argv: src.argv, info: res.info, wallMs: res.wallMs, polls: res.polls, statusAfter, memory, bumpedAt };
  } finally {
    await src.stop();
  }
}

interface LoadRun {
  argv: string[];
  wallMs: number;
  statusBeforeCont: unknown;
  statusAfterCont: { status: string; running: boolean };
  memory: string[];
}

async function loadBack(spec: FixtureSpec, w: Work, stream: string): Promise<LoadRun> {
  const dst = await startQemu({ binary: spec.binary, args: spec.args(w), defaults: spec.defaults ?? false, incoming: "defer" });
  try {
    const res = await loadFromFile(dst, stream);
    const statusBeforeCont = await dst.qmp.execute("query-status");
    const memory = await memoryHashes(dst, spec.memory.ranges, "dst");
    await dst.qmp.execute("cont");
    await sleep(1000);
    check(!dst.hasExited, "the destination QEMU still runs 1 s after cont");
    const statusAfterCont = await dst.qmp.execute("query-status");
    check(statusAfterCont.status === "running", `the destination guest is running after cont (status ${statusAfterCont.status})`);
    return { argv: dst.argv, wallMs: res.wallMs, statusBeforeCont, statusAfterCont, memory };
  } finally {
    await dst.stop();
  }
}

/** Check the decoded stream against QEMU's own account of it; throws on the first disagreement. */
function crossCheck(spec: FixtureSpec, r: Decoded, save: SaveRun, load: LoadRun, decodedMemory: string[], disks: { src?: Uint8Array; dst?: Uint8Array }): void {
  check(r.eof && r.completeness.complete, "the stream decodes completely (EOF, every vmdesc device has its section)");
  check(r.warnings.length === 0, `no decoder warnings (${r.warnings.join("; ")})`);
  check(r.footers === true, "every section has a footer");
  const ram = ramOf(r);
  if (!ram) throw new Error("check failed: a ram section");
  check(ram.records.normal === save.info.ram?.normal, `PAGE records (${ram.records.normal}) == query-migrate ram.normal (${save.info.ram?.normal})`);
  check(ram.records.zero === save.info.ram?.duplicate, `ZERO records (${ram.records.zero}) == query-migrate ram.duplicate (${save.info.ram?.duplicate})`);
  decodedMemory.forEach((h, i) => check(h === load.memory[i], `decoded ${spec.memory.ramBlock} range ${i} == the destination's pmemsave`));
  // QEMU 7.2 under TCG can miss guest writes while migrating live (fixed upstream in 9.0); then the stream (and
  // the destination) lack a page the source has. The stream is still what QEMU sent: recorded, not fatal.
  if (decodedMemory.some((h, i) => h !== save.memory[i])) {
    log(`${spec.name}: WARNING: the source's memory differs from the stream (QEMU 7.2 TCG dirty tracking)`);
  }
  if (spec.expect.xbzrle) check(ram.records.xbzrle > 0, "XBZRLE records in the stream");
  else check(ram.records.xbzrle === 0, "no XBZRLE records");
  const blk = blockOf(r);
  if (spec.expect.block) {
    check(blk?.devices.length === 1, "one block-migrated disk");
    const dev = blk!.devices[0]!;
    check(Buffer.from(dev.image!).equals(disks.src!), `the disk decoded from the stream equals the source disk`);
    check(Buffer.from(disks.dst!).equals(disks.src!), `the destination's disk after the load equals the source disk`);
    check(spec.expect.block === "zero-blocks" ? dev.zeroChunks > 0 : dev.zeroChunks === 0, `ZERO_BLOCK chunks (${dev.zeroChunks}) as the capability says`);
  } else check(blk === undefined, "no block section");
  check((htabOf(r) !== undefined) === (spec.expect.htab ?? false), `spapr/htab section ${spec.expect.htab ? "present" : "absent"}`);
}

interface AnalyzeRun {
  tool: string;
  args: string;
  exit_code: number | null;
  seconds: number;
  error?: string[];
}

/** tools/analyze-migration-ext.py: runs the QEMU script with XBZRLE, the block section and ZERO re-sends handled. */
const EXT = fileURLToPath(new URL("./analyze-migration-ext.py", import.meta.url));

/** `python3 [EXT] SCRIPT ARGS` (the stream path shows as FILE in the record). */
function runAnalyze(script: string, args: string[], o: { ext?: boolean; cwd?: string } = {}): { run: AnalyzeRun; stdout: Buffer; stderr: string } {
  const t0 = performance.now();
  const p = spawnSync("python3", [...(o.ext ? [EXT] : []), script, ...args], { cwd: o.cwd, maxBuffer: 1 << 30 });
  if (p.error) throw new Error(`python3 ${script}: ${p.error.message}`);
  const stderr = p.stderr.toString("utf8");
  const run: AnalyzeRun = {
    tool: basename(script) + (o.ext ? " + tools/analyze-migration-ext.py" : ""),
    args: args.map((a) => (a.includes("/") ? "FILE" : a)).join(" "),
    exit_code: p.status,
    seconds: Number(((performance.now() - t0) / 1000).toFixed(3)),
  };
  if (p.status !== 0) run.error = tail(stderr, 3);
  return { run, stdout: p.stdout, stderr };
}

const tail = (text: string, n: number): string[] =>
  text
    .split("\n")
    .filter((l) => l.trim())
    .slice(-n);

type FileHashes = Record<string, { bytes: number; sha256: string }>;

/** `-x -f STREAM` in a fresh dir: the outcome and the hash of every file written but desc.json and state.json. */
function extract(script: string, stream: string, ext: boolean): AnalyzeRun & { extracted_files: FileHashes } {
  const dir = mkdtempSync(join(scratchDir(), "extract-"));
  try {
    const { run } = runAnalyze(script, ["-x", "-f", resolve(stream)], { ext, cwd: dir });
    const files: FileHashes = {};
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        const rel = relative(dir, p);
        if (e.isDirectory()) walk(p);
        else if (rel !== "desc.json" && rel !== "state.json") files[rel] = { bytes: statSync(p).size, sha256: sha256(readFileSync(p)) };
      }
    };
    walk(dir);
    return { ...run, extracted_files: Object.fromEntries(Object.entries(files).sort(([a], [b]) => (a < b ? -1 : 1))) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * QEMU's analyze-migration.py on the stream: -f into NAME.analyze.json (or the failure, as JSON), -d desc into
 * NAME.analyze-desc.json, -x hashed; then the same through tools/analyze-migration-ext.py: its -f into
 * NAME.analyze-patched.json where the stock -f fails, and its -x as `extract_patched`, which must equal what
 * vmstream decoded (`decoded`). Returns reference.json's `analyze_migration`.
 */
function analyze(spec: FixtureSpec, script: string, stream: string, out: string, decoded: FileHashes): Record<string, unknown> {
  const state = runAnalyze(script, ["-f", stream]);
  const failure = { analyze_migration_failed: true, tool: state.run.tool, args: "-f FILE", exit_code: state.run.exit_code, stderr_tail: tail(state.stderr, 6) };
  const text = state.run.exit_code === 0 ? state.stdout : Buffer.from(JSON.stringify(failure, null, 2) + "\n");
  if (spec.gzipAnalyze) writeFileSync(join(out, `${spec.name}.analyze.json.gz`), gzipSync(text, { level: 9 }));
  else writeFileSync(join(out, `${spec.name}.analyze.json`), text);
  const desc = runAnalyze(script, ["-d", "desc", "-f", stream]);
  if (desc.run.exit_code === 0) writeFileSync(join(out, `${spec.name}.analyze-desc.json`), desc.stdout);
  const stockExtract = extract(script, stream, false);

  const patched = runAnalyze(script, ["-f", stream], { ext: true });
  check(patched.run.exit_code === 0, `analyze-migration-ext.py -f reads the stream (${patched.run.error?.join(" ")})`);
  const statePatched: Record<string, unknown> = { ...patched.run };
  if (state.run.exit_code === 0) {
    const withoutCounts = (doc: Record<string, Record<string, unknown>>) =>
      Object.fromEntries(Object.entries(doc).map(([k, v]) => [k, k.startsWith("ram (") ? { ...v, "page records (ext)": undefined } : v]));
    const parse = (b: Buffer) => withoutCounts(JSON.parse(b.toString("utf8")));
    statePatched.same_as_stock_ignoring_page_counts = sameJson(parse(patched.stdout), parse(text));
  } else writeFileSync(join(out, `${spec.name}.analyze-patched.json`), patched.stdout);
  const extractPatched = extract(script, stream, true);
  check(extractPatched.exit_code === 0, `analyze-migration-ext.py -x reads the stream (${extractPatched.error?.join(" ")})`);
  check(sameJson(extractPatched.extracted_files, decoded), "the RAM blocks and disks analyze-migration-ext.py -x extracts equal vmstream's decode");
  return {
    state: state.run,
    desc: desc.run,
    extract: { ...stockExtract, same_as_extract_patched: sameJson(stockExtract.extracted_files, decoded) },
    state_patched: statePatched,
    extract_patched: extractPatched,
  };
}

interface MakeOptions {
  out: string;
  /** QEMU's scripts/analyze-migration.py (7.2), if any. */
  analyze?: string;
  /** Override every fixture's settle time, ms. */
  settleMs?: number;
}

/** Make one fixture into `o.out` (throws when a check fails; then neither NAME.mig.gz nor NAME.reference.json). */
async function makeFixture(spec: FixtureSpec, o: MakeOptions): Promise<void> {
  const dir = scratchDir();
  const src = work(dir, "src");
  const dst = work(dir, "dst");
  spec.prepare?.(src, dst);
  const stream = join(dir, `${spec.name}.mig`);
  log(`${spec.name}: saving (${spec.binary} ${spec.args(src).join(" ")})`);
  const save = await saveSource(spec, src, stream, o.settleMs ?? spec.settleMs);
  log(`${spec.name}: saved ${statSync(stream).size} bytes in ${save.wallMs.toFixed(0)} ms; loading back`);
  const load = await loadBack(spec, dst, stream);
  const bytes = new Uint8Array(readFileSync(stream));
  const r = decodeBytes(bytes, { materialize: true });
  try {
    const slices = spec.memory.ranges.map((m) => ramSlice(r, spec.memory.ramBlock, m.addr, m.size));
    const disks = spec.expect.block ? { src: readFileSync(src.disk), dst: readFileSync(dst.disk) } : {};
    crossCheck(
      spec,
      r,
      save,
      load,
      slices.map((s) => s.sha256),
      disks,
    );
    const files = extractedFiles(r);
    const ranges = (hashes: string[]) => spec.memory.ranges.map((m, i) => ({ start: hex(m.addr), length: hex(m.size), sha256: hashes[i] }));
    const ref: Record<string, unknown> = {
      name: spec.name,
      description: spec.description,
      generator: "tools/make-fixtures.ts",
      qemu: qemuCheck(spec.binary).version,
      stream_bytes: bytes.length,
      stream_sha256: sha256(bytes),
      save: {
        qemu_argv: recorded(save.argv, dir),
        uri: "exec:cat > FILE",
        capabilities: spec.capabilities ?? {},
        parameters: spec.parameters,
        settle_ms: o.settleMs ?? spec.settleMs,
        bumped_at: save.bumpedAt,
        wall_migrate_to_completed_s: Number((save.wallMs / 1000).toFixed(4)),
        query_migrate_polls: save.polls,
        query_migrate_final: save.info,
        status_after: save.statusAfter,
        stream_tail_check: "ok",
      },
      load_back: {
        ok: true,
        load_completed: true,
        qemu_argv: recorded(load.argv, dir),
        uri: "exec:cat FILE",
        wall_load_s: Number((load.wallMs / 1000).toFixed(4)),
        status_before_cont: load.statusBeforeCont,
        status_after_cont: { status: load.statusAfterCont.status, running: load.statusAfterCont.running },
      },
      guest_memory_sha256: {
        note: "QMP pmemsave of guest-physical ranges: source after migration completed, destination after load before cont",
        source: ranges(save.memory),
        destination: ranges(load.memory),
        match: save.memory.every((h, i) => h === load.memory[i]),
        decoded_from_stream_by: "vmstream decodeBytes (src/sections/stream.ts)",
        decoded_from_stream: slices,
        decoded_matches_destination: true,
        decoded_matches_source: slices.every((x, i) => x.sha256 === save.memory[i]),
      },
      scan: scanFacts(r),
    };
    if (disks.src) {
      ref.disks_sha256 = {
        source: { bytes: disks.src.length, sha256: sha256(disks.src) },
        destination_after_load: { bytes: disks.dst!.length, sha256: sha256(disks.dst!) },
      };
    }
    // `extract_patched` (what the tests compare with): every RAM block and disk as a complete reader extracts them
    // (XBZRLE applied, ZERO re-sends written, block section read): QEMU's script with tools/analyze-migration-ext.py
    // when given (checked equal to vmstream's decode), else vmstream's decode alone.
    ref.analyze_migration = o.analyze
      ? analyze(spec, o.analyze, stream, o.out, files)
      : { extract_patched: { tool: "vmstream decodeBytes (src/sections/stream.ts)", extracted_files: files } };
    writeFileSync(join(o.out, `${spec.name}.mig.gz`), gzipSync(bytes, { level: 9 }));
    writeFileSync(join(o.out, `${spec.name}.reference.json`), JSON.stringify(ref, null, 1) + "\n");
    log(`${spec.name}: ok: ${r.sections.length} sections (iterative: ${iterativeSequence(r).join(", ")})`);
  } finally {
    r.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

const USAGE = `usage: npm run fixtures -- --out DIR [--analyze PATH] [--settle SECONDS] [NAME...]
  NAME        one of: ${FIXTURES.map((f) => f.name).join(", ")} (default: all)
  --out DIR   where NAME.mig.gz and NAME.reference.json (and the analyze files) go
  --analyze   QEMU 7.2's scripts/analyze-migration.py (default: $ANALYZE_MIGRATION): also write NAME.analyze.json,
              NAME.analyze-desc.json and, where it fails, NAME.analyze-patched.json (through
              tools/analyze-migration-ext.py), whose -x extraction must equal vmstream's decode
  --settle S  let every guest run S seconds before the save (default: per fixture, 3-6 s)`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { out: { type: "string" }, analyze: { type: "string" }, settle: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help || !values.out) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  const unknown = positionals.filter((n) => !FIXTURES.some((f) => f.name === n));
  if (unknown.length > 0) {
    console.error(`unknown fixture(s): ${unknown.join(", ")}\n${USAGE}`);
    return 2;
  }
  const specs = positionals.length > 0 ? FIXTURES.filter((f) => positionals.includes(f.name)) : FIXTURES;
  if (values.settle !== undefined && !(Number(values.settle) >= 0)) {
    console.error(`--settle takes a number of seconds\n${USAGE}`);
    return 2;
  }
  const analyzeScript = values.analyze ?? process.env["ANALYZE_MIGRATION"];
  if (analyzeScript && !existsSync(analyzeScript)) {
    console.error(`no such file: ${analyzeScript} (QEMU 7.2's scripts/analyze-migration.py: see tests/fixtures/README-qemu-7.2.md)`);
    return 2;
  }
  const missing = [...new Set(specs.map((s) => s.binary))].filter((b) => !qemuCheck(b).available);
  if (missing.length > 0) {
    console.error(missing.map((b) => qemuCheck(b).reason).join("\n") + "\n(install qemu-system-x86, qemu-system-ppc: QEMU 7.2)");
    return 1;
  }
  mkdirSync(values.out, { recursive: true });
  const options: MakeOptions = {
    out: values.out,
    ...(analyzeScript ? { analyze: analyzeScript } : {}),
    ...(values.settle ? { settleMs: Number(values.settle) * 1000 } : {}),
  };
  const failed: string[] = [];
  try {
    for (const spec of specs) {
      try {
        await makeFixture(spec, options);
      } catch (e) {
        failed.push(spec.name);
        log(`${spec.name}: FAILED: ${(e as Error).stack ?? e}`);
      }
    }
  } finally {
    await stopAllQemu();
  }
  if (failed.length > 0) log(`failed: ${failed.join(", ")}`);
  return failed.length > 0 ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) process.exitCode = await main(process.argv.slice(2));
