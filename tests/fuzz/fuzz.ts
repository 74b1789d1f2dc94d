// The fuzz driver: runs the cases of each target in a worker thread (worker.ts) under a watchdog, a time limit per
// case and a memory limit on the process, restarting the worker after a case that hung or killed it, and keeps one
// input per distinct finding (tests/fuzz/regressions/). Used by `npm run fuzz` (main.ts), the CI slice and the
// regression replay (tests/unit/fuzz-*.test.ts). docs/fuzzing.md.
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { gzipSync } from "node:zlib";
import { GENERATOR_NAMES } from "./generators.js";
import type { Seeds } from "./seeds.js";
import type { Verdict } from "./targets.js";

export const TARGET_NAMES = ["decoder", "destination", "extract", "ber", "to-ber", "from-ber"] as const;
export const REGRESSIONS = new URL("./regressions/", import.meta.url);
/** Where a case's input came from: a seed mutated, or a generator (its output possibly mutated). */
export const ORIGINS = ["mutation", ...GENERATOR_NAMES];
/** A generator whose inputs hung or killed the worker this many times is muted for the rest of the run. */
const MUTE_AFTER = 3;

/** What one worker runs: cases [from, to) of `target` until `deadline` (Date.now() ms). */
export interface WorkerJob {
  readonly target: string;
  readonly seed: number;
  readonly from: number;
  readonly to: number;
  readonly deadline: number;
  readonly seeds: Seeds;
  /** Generators not to use (they keep hitting a known hang). */
  readonly muted: readonly string[];
  /** Replay: the inputs themselves (case i is inputs[i]); otherwise inputs are made from the seeds. */
  readonly inputs?: readonly Uint8Array[];
  readonly shared: SharedArrayBuffer;
  readonly tmp: string;
}

export type WorkerMessage =
  | { readonly type: "finding"; readonly index: number; readonly kind: string; readonly message: string; readonly bytes: Uint8Array; readonly origin: string }
  | { readonly type: "verdict"; readonly index: number; readonly verdict: Verdict }
  | { readonly type: "done"; readonly next: number };

/** The shared memory of a worker: ctrl = [case running or -1, cases done, input length, origin], its start, its input. */
export interface CaseSlot {
  readonly ctrl: Int32Array;
  readonly started: Float64Array;
  readonly data: Uint8Array;
}

/** Inputs longer than this are saved cut when they hang or kill the worker (generators stay well below). */
const SLOT_BYTES = 16 << 20;

/** The seed of case `index` of a run seeded `seed` (a case is replayed from these two numbers). */
export function caseSeed(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(index + 1, 0xc2b2ae35)) >>> 0 || 1;
}

export interface Finding {
  readonly target: string;
  readonly kind: string;
  readonly origin: string;
  readonly message: string;
  readonly index: number;
  readonly bytes: Uint8Array;
  /** Cases with the same signature (target, kind, origin, message without numbers). */
  count: number;
  /** Where the input was saved, if it was. */
  file?: string;
}

export interface FuzzOptions {
  readonly targets: readonly string[];
  readonly seed: number;
  /** Executions over all targets (shared equally); with `seconds`, whichever ends first. */
  readonly executions?: number;
  readonly seconds?: number;
  /** Per case. */
  readonly timeoutMs?: number;
  /** Growth of the process's RSS over its value at the start that counts as a finding. */
  readonly memoryMb?: number;
  /** JS heap of the worker (resourceLimits.maxOldGenerationSizeMb). */
  readonly heapMb?: number;
  /** Where findings are saved (nothing saved when undefined). */
  readonly out?: string;
  readonly seeds: Seeds;
  readonly log?: (line: string) => void;
}

export interface FuzzReport {
  readonly executions: number;
  readonly seconds: number;
  readonly perTarget: Record<string, number>;
  readonly findings: Finding[];
  readonly restarts: number;
  /** Generators muted during the run (MUTE_AFTER hangs or kills). */
  readonly muted: string[];
}

const signature = (f: Pick<Finding, "target" | "kind" | "origin" | "message">): string =>
  `${f.target}|${f.kind}|${f.origin}|${f.message
    .split("\n")
    .slice(0, 2)
    .join("|")
    .replace(/\d+/g, "#")
    .replace(/\(file:[^)]*\)/g, "")}`;

type WorkerEnd =
  | { kind: "done"; next: number }
  /** `index`: the case running when it was stopped, or -1 between cases (then `done` cases had ended). */
  | { kind: "killed"; index: number; done: number; why: string; message: string; bytes: Uint8Array; origin: string };

/** Run one job in a fresh worker; resolves when it is done or had to be stopped (with the case that caused it). */
function runWorker(
  job: Omit<WorkerJob, "shared">,
  limits: { timeoutMs: number; rssLimit: number; heapMb: number },
  onMessage: (m: WorkerMessage) => void,
): Promise<WorkerEnd> {
  const shared = new SharedArrayBuffer(32 + SLOT_BYTES);
  const slot: CaseSlot = { ctrl: new Int32Array(shared, 0, 4), started: new Float64Array(shared, 16, 1), data: new Uint8Array(shared, 32) };
  slot.ctrl[0] = -1;
  const worker = new Worker(new URL("./boot.mjs", import.meta.url), {
    workerData: { ...job, shared },
    resourceLimits: { maxOldGenerationSizeMb: limits.heapMb },
    execArgv: [],
  });
  return new Promise((resolve) => {
    let settled = false;
    const current = (): { index: number; bytes: Uint8Array } => {
      const index = Atomics.load(slot.ctrl, 0);
      const length = Math.min(Atomics.load(slot.ctrl, 2), SLOT_BYTES);
      return { index, bytes: slot.data.slice(0, length) };
    };
    const stop = (why: string, message: string): void => {
      if (settled) return;
      const c = current();
      settled = true;
      clearInterval(watch);
      void worker.terminate();
      const origin = ORIGINS[Atomics.load(slot.ctrl, 3)] ?? "?";
      resolve({ kind: "killed", index: c.index, done: Atomics.load(slot.ctrl, 1), why, message, bytes: c.index < 0 ? new Uint8Array(0) : c.bytes, origin });
    };
    const watch = setInterval(() => {
      const index = Atomics.load(slot.ctrl, 0);
      if (index >= 0 && Date.now() - slot.started[0]! > limits.timeoutMs) stop("timeout", `case ran longer than ${limits.timeoutMs} ms`);
      const rss = process.memoryUsage.rss();
      if (rss > limits.rssLimit) stop("memory", `process RSS ${Math.round(rss / 2 ** 20)} MiB over the limit`);
    }, 20);
    worker.on("message", (m: WorkerMessage) => {
      if (m.type === "done") {
        if (settled) return;
        settled = true;
        clearInterval(watch);
        void worker.terminate();
        resolve({ kind: "done", next: m.next });
      } else onMessage(m);
    });
    worker.on("error", (e: Error & { code?: string }) => stop(e.code === "ERR_WORKER_OUT_OF_MEMORY" ? "oom" : "crash", `${e.name}: ${e.message}`));
    worker.on("exit", (code) => stop("crash", `worker exited with code ${code}`));
  });
}

/** Wait (up to 20 s) for a stopped worker's memory to be given back. */
async function memoryBelow(limit: number): Promise<void> {
  for (let i = 0; i < 200 && process.memoryUsage.rss() > limit * 0.9; i++) await new Promise((r) => setTimeout(r, 100));
}

/** Fuzz the targets; returns counts and the distinct findings (each saved under `out` when given). */
export async function fuzz(o: FuzzOptions): Promise<FuzzReport> {
  const log = o.log ?? (() => {});
  const tmp = mkdtempSync(join(tmpdir(), "vmstream-fuzz-"));
  const limits = { timeoutMs: o.timeoutMs ?? 5000, rssLimit: process.memoryUsage.rss() + (o.memoryMb ?? 1024) * 2 ** 20, heapMb: o.heapMb ?? 512 };
  const findings = new Map<string, Finding>();
  const perTarget: Record<string, number> = {};
  const started = Date.now();
  let restarts = 0;
  const muted = new Set<string>();
  const kills = new Map<string, number>();
  const record = (f: Omit<Finding, "count">): void => {
    const key = signature(f);
    const known = findings.get(key);
    if (known) {
      known.count++;
      return;
    }
    const finding: Finding = { ...f, count: 1 };
    findings.set(key, finding);
    if (o.out !== undefined) finding.file = saveFinding(o.out, finding, o.seed);
    log(
      `finding: ${f.target} ${f.kind} from ${f.origin} (case ${f.index}, ${f.bytes.length} bytes)${finding.file ? ` -> ${finding.file}` : ""}\n  ${f.message.split("\n")[0]}`,
    );
  };
  try {
    const n = o.targets.length;
    for (const target of o.targets) {
      const to = o.executions !== undefined ? Math.ceil(o.executions / n) : Number.MAX_SAFE_INTEGER;
      // each target its own share from when it starts: a slow case of one target does not eat the next one's time
      const deadline = o.seconds !== undefined ? Date.now() + (o.seconds * 1000) / n : Number.MAX_SAFE_INTEGER;
      let next = 0;
      let executed = 0;
      while (next < to && Date.now() < deadline) {
        const job = { target, seed: o.seed, from: next, to, deadline, seeds: o.seeds, muted: [...muted], tmp: join(tmp, target) };
        const end = await runWorker(job, limits, (m) => {
          if (m.type === "finding") record({ target, kind: m.kind, origin: m.origin, message: m.message, index: m.index, bytes: m.bytes });
        });
        if (end.kind === "done") {
          executed += end.next - next;
          break;
        }
        restarts++;
        await memoryBelow(limits.rssLimit);
        if (end.index < 0) {
          // stopped between cases (memory not yet given back, a crash on start): go on after the cases it ran
          log(`${target}: worker stopped between cases (${end.why}: ${end.message}); restarted`);
          if (end.done === 0) throw new Error(`the ${target} worker failed before its first case: ${end.message}`);
          executed += end.done;
          next += end.done;
          continue;
        }
        record({ target, kind: end.why, origin: end.origin, message: end.message, index: end.index, bytes: end.bytes });
        const killed = (kills.get(end.origin) ?? 0) + 1;
        kills.set(end.origin, killed);
        if (end.origin !== "mutation" && killed >= MUTE_AFTER && !muted.has(end.origin)) {
          muted.add(end.origin);
          log(`${end.origin}: muted for the rest of the run (${killed} cases hung or killed the worker)`);
        }
        executed += end.index + 1 - next;
        next = end.index + 1;
      }
      perTarget[target] = executed;
      log(`${target}: ${executed} executions`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const executions = Object.values(perTarget).reduce((a, b) => a + b, 0);
  return { executions, seconds: (Date.now() - started) / 1000, perTarget, findings: [...findings.values()], restarts, muted: [...muted] };
}

/** Save a finding's input as TARGET-HASH.bin (gzip above 64 KiB) and what was found beside it as .txt. */
function saveFinding(dir: string, f: Finding, seed: number): string {
  mkdirSync(dir, { recursive: true });
  const hash = createHash("sha256").update(f.bytes).digest("hex").slice(0, 12);
  const big = f.bytes.length > 64 << 10;
  const file = join(dir, `${f.target}-${hash}.bin${big ? ".gz" : ""}`);
  writeFileSync(file, big ? gzipSync(f.bytes) : f.bytes);
  const message = f.message.replaceAll(`${pathToFileURL(process.cwd()).href}/`, ""); // stack frames relative to the repository
  writeFileSync(join(dir, `${f.target}-${hash}.txt`), `${f.kind} from ${f.origin} (run seed ${seed}, case ${f.index}, ${f.bytes.length} bytes)\n${message}\n`);
  return file;
}

/** Run saved inputs through a target under the same watchdog: one verdict per input (a hang or a kill is one too). */
export async function replay(target: string, inputs: readonly Uint8Array[], seeds: Seeds, timeoutMs = 5000): Promise<Verdict[]> {
  const tmp = mkdtempSync(join(tmpdir(), "vmstream-replay-"));
  const limits = { timeoutMs, rssLimit: process.memoryUsage.rss() + 1024 * 2 ** 20, heapMb: 512 };
  const verdicts: Verdict[] = [];
  try {
    let next = 0;
    while (next < inputs.length) {
      const job = { target, seed: 1, from: next, to: inputs.length, deadline: Number.MAX_SAFE_INTEGER, seeds, muted: [], inputs, tmp };
      const end = await runWorker(job, limits, (m) => {
        if (m.type === "verdict") verdicts[m.index] = m.verdict;
      });
      if (end.kind === "done") break;
      await memoryBelow(limits.rssLimit);
      if (end.index < 0) throw new Error(`the ${target} replay worker stopped between cases: ${end.why}: ${end.message}`);
      verdicts[end.index] = { ok: false, kind: end.why, message: end.message };
      next = end.index + 1;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return verdicts;
}
