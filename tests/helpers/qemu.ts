// Test harness for real QEMU 7.2 processes driven over QMP (tests and tools/make-fixtures.ts; Node, Linux).
//
// - `startQemu()` spawns QEMU with `-nodefaults -display none -accel tcg -qmp unix:SOCK,server=on,wait=off`
//   (the socket in a fresh temp dir; `defaults: true` keeps the machine's default devices), connects a QmpClient
//   and returns { qmp, pid, stop(), exited, stderr() }.
//   Cleanup, in layers (only processes started here are ever signalled, and only by pid):
//     1. started inside a test (or beforeEach): stopped automatically when that test finishes, pass or fail
//        (vitest `onTestFinished`), unless `keep: true`;
//     2. `stopAllQemu()` stops every instance and removes `scratchDir()`s: call it in afterAll;
//     3. QEMU is spawned through `setpriv --pdeathsig KILL` (util-linux), so the kernel kills it if the test
//        worker dies without cleaning up (vitest may end workers with a signal; 'exit' hooks then do not run);
//        a process 'exit' hook also SIGKILLs survivors, and temp dirs left by dead workers are swept on the next start.
// - `saveToFile()` / `loadFromFile()` run a migration to / from a file through QEMU's `exec:` transport and
//   poll `query-migrate` until a final status.
// - `describeQemu()`: a suite that needs QEMU, under the policy of tests/helpers/requires.ts (runs when the binary is
//   installed; under CI (`CI=true`) a missing binary FAILS; elsewhere the block is skipped with the reason in its name).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onTestFinished } from "vitest";
import { QmpClient, type QmpMigrationInfo } from "../../src/qmp/index.js";
import { sha256 } from "./bytes.js";
import { describeIfInstalled, type Requirement } from "./requires.js";

// ------------------------------------------------------------------------------------------------ availability

export interface QemuCheck {
  available: boolean;
  /** First line of `BINARY --version`, when available. */
  version?: string;
  /** Why it is not available. */
  reason?: string;
}

const checkCache = new Map<string, QemuCheck>();

/** Is `binary` runnable (`--version` succeeds)? Synchronous, cached; usable at test-collection time. */
export function qemuCheck(binary: string): QemuCheck {
  const cached = checkCache.get(binary);
  if (cached) return cached;
  let res: QemuCheck;
  const r = spawnSync(binary, ["--version"], { encoding: "utf8", timeout: 10_000 });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    res = { available: false, reason: code === "ENOENT" ? `${binary} not installed` : `${binary} --version failed: ${r.error.message}` };
  } else if (r.status !== 0) {
    res = { available: false, reason: `${binary} --version exited ${r.status}: ${(r.stderr || "").trim().slice(0, 200)}` };
  } else {
    res = { available: true, version: (r.stdout.split("\n")[0] ?? "").trim() };
  }
  checkCache.set(binary, res);
  return res;
}

export function qemuAvailable(binary: string): boolean {
  return qemuCheck(binary).available;
}

/** QEMU `binaries` as something tests need (tests/helpers/requires.ts). */
export function requireQemu(...binaries: string[]): Requirement {
  const missing = binaries.map((b) => qemuCheck(b)).filter((c) => !c.available);
  return {
    what: "QEMU",
    missing: missing.length === 0 ? undefined : missing.map((c) => c.reason).join("; "),
    install: "qemu-system-x86, qemu-system-ppc, qemu-utils",
  };
}

/** `describe` for a suite that needs real QEMU binaries: the policy of {@link describeIfInstalled}. */
export function describeQemu(binaries: string | string[], name: string, fn: () => void): void {
  describeIfInstalled(requireQemu(...(Array.isArray(binaries) ? binaries : [binaries])), name, fn);
}

// ------------------------------------------------------------------------------------------------ processes

export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Spawn error (e.g. ENOENT), if QEMU never ran. */
  error?: Error;
}

export interface StartQemuOptions {
  /** e.g. `qemu-system-x86_64`. */
  binary: string;
  /** Machine arguments, e.g. `["-machine", "none"]`. The harness adds -nodefaults, -display none, -accel tcg, -qmp. */
  args?: string[];
  /** Keep the machine's default devices (VGA, serial, parallel, CD-ROM, NIC...): no `-nodefaults`. Default false. */
  defaults?: boolean;
  /** Add `-S` (start paused). Default: true when `incoming` is set, false otherwise. */
  paused?: boolean;
  /** `-incoming defer` (then use {@link loadFromFile}). */
  incoming?: "defer";
  /** Timeout for the QMP socket to appear plus the greeting. Default 20 000 ms. */
  connectTimeoutMs?: number;
  /** Default QMP command timeout. Default 30 000 ms. */
  commandTimeoutMs?: number;
  /**
   * Do not stop the instance when the current test finishes (for instances shared between tests; stop them
   * yourself or with `stopAllQemu()` in afterAll). Instances started outside a test (beforeAll) are never
   * auto-stopped.
   */
  keep?: boolean;
}

export interface QemuInstance {
  qmp: QmpClient;
  pid: number;
  /** The temp dir of this instance (holds the QMP socket; removed by stop()). Tests may put scratch files here. */
  dir: string;
  /** The full argv QEMU was started with. */
  argv: string[];
  /** Resolves when the process has exited. */
  exited: Promise<QemuExit>;
  /** True once the process has exited. */
  readonly hasExited: boolean;
  /** The last 64 KiB of QEMU's stderr (and stdout). */
  stderr(): string;
  /** Quit QEMU (QMP `quit`, then SIGKILL by pid after `graceMs`), close QMP, remove the temp dir. Idempotent. */
  stop(graceMs?: number): Promise<QemuExit>;
}

/** Marker in every temp dir (and so in every QEMU command line) of this process: `vmstream-qemu-<pid>-`. */
export const QEMU_TAG = `vmstream-qemu-${process.pid}-`;

const live = new Set<QemuInstance>();
const dirs = new Set<string>();
let exitHookInstalled = false;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: existence check only
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Remove `vmstream-qemu-<pid>-*` temp dirs whose worker process is gone (left by a killed worker). */
function sweepStaleDirs(): void {
  let names: string[];
  try {
    names = readdirSync(tmpdir());
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^vmstream-qemu-(\d+)-[A-Za-z0-9]{6}$/.exec(n);
    if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) rmSync(join(tmpdir(), n), { recursive: true, force: true });
  }
}

let setprivOk: boolean | undefined;
/** Can we run a child with a parent-death signal (`setpriv --pdeathsig KILL`, util-linux)? */
export function canUseSetpriv(): boolean {
  if (setprivOk === undefined) {
    const r = spawnSync("setpriv", ["--pdeathsig", "KILL", "--", "true"], { stdio: "ignore", timeout: 5000 });
    setprivOk = !r.error && r.status === 0;
  }
  return setprivOk;
}

/** A fresh temp dir (tagged like the QEMU dirs), removed by `stopAllQemu()`, at exit, or by a later sweep. */
export function scratchDir(): string {
  installExitHook();
  const d = mkdtempSync(join(tmpdir(), QEMU_TAG));
  dirs.add(d);
  return d;
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  sweepStaleDirs();
  process.on("exit", () => {
    for (const q of live) {
      if (!q.hasExited) {
        try {
          process.kill(q.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
}

const STDERR_KEEP = 64 * 1024;

/** Spawn QEMU and connect QMP. On any failure the process is killed and the temp dir removed before rethrowing. */
export async function startQemu(opts: StartQemuOptions): Promise<QemuInstance> {
  const dir = scratchDir();
  const sock = join(dir, "qmp.sock");
  const paused = opts.paused ?? opts.incoming !== undefined;
  const argv = [
    ...(opts.defaults ? [] : ["-nodefaults"]),
    "-display",
    "none",
    "-accel",
    "tcg",
    ...(opts.args ?? []),
    ...(paused ? ["-S"] : []),
    ...(opts.incoming ? ["-incoming", opts.incoming] : []),
    "-qmp",
    `unix:${sock},server=on,wait=off`,
  ];
  let errText = "";
  // setpriv execs QEMU (same pid) with PR_SET_PDEATHSIG=SIGKILL: QEMU dies with this process.
  const [file, fileArgs] = canUseSetpriv() ? ["setpriv", ["--pdeathsig", "KILL", "--", opts.binary, ...argv]] : [opts.binary, argv];
  const child: ChildProcess = spawn(file, fileArgs, { stdio: ["ignore", "pipe", "pipe"] });
  const keep = (b: Buffer): void => {
    errText += b.toString("utf8");
    if (errText.length > STDERR_KEEP) errText = errText.slice(-STDERR_KEEP);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let hasExited = false;
  const died = new AbortController();
  const exited = new Promise<QemuExit>((resolve) => {
    child.once("error", (error) => {
      hasExited = true;
      died.abort(new Error(`${opts.binary} could not be started: ${error.message}`));
      resolve({ code: null, signal: null, error });
    });
    child.once("exit", (code, signal) => {
      hasExited = true;
      died.abort(new Error(`${opts.binary} exited (code ${code}, signal ${signal}) before QMP was up: ${errText.trim().slice(-500)}`));
      resolve({ code, signal });
    });
  });

  let qmp: QmpClient | undefined;
  let stopping: Promise<QemuExit> | undefined;
  const inst: QemuInstance = {
    get qmp(): QmpClient {
      if (!qmp) throw new Error("QMP not connected");
      return qmp;
    },
    pid: child.pid ?? -1,
    dir,
    argv: [opts.binary, ...argv],
    exited,
    get hasExited() {
      return hasExited;
    },
    stderr: () => errText,
    stop(graceMs = 3000): Promise<QemuExit> {
      stopping ??= (async () => {
        try {
          if (!hasExited && qmp && !qmp.closed) {
            // QEMU replies, sends SHUTDOWN, then drops the connection; errors here are expected.
            await qmp.execute("quit", undefined, { timeoutMs: graceMs }).catch(() => undefined);
          }
          if (!hasExited) {
            let timer: ReturnType<typeof setTimeout> | undefined;
            await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
            clearTimeout(timer);
            if (!hasExited) killPid(child);
          }
          return await exited;
        } finally {
          qmp?.close();
          live.delete(inst);
          rmSync(dir, { recursive: true, force: true });
          dirs.delete(dir);
        }
      })();
      return stopping;
    },
  };
  live.add(inst);
  if (!opts.keep) {
    try {
      onTestFinished(async () => {
        await inst.stop(1000);
      });
    } catch {
      // Not inside a test (e.g. beforeAll): the suite's afterAll must call stopAllQemu().
    }
  }
  if (child.pid === undefined) {
    const ex = await exited;
    await inst.stop();
    throw new Error(`${opts.binary} could not be started: ${ex.error?.message ?? "no pid"}`);
  }
  try {
    qmp = await QmpClient.connect(sock, {
      connectTimeoutMs: opts.connectTimeoutMs ?? 20_000,
      commandTimeoutMs: opts.commandTimeoutMs ?? 30_000,
      signal: died.signal,
    });
  } catch (e) {
    await inst.stop(500);
    throw new Error(`starting ${inst.argv.join(" ")} failed: ${(e as Error).message}\n${errText.trim().slice(-2000)}`, { cause: e });
  }
  return inst;
}

function killPid(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) {
    try {
      child.kill("SIGKILL"); // by this child's pid only
    } catch {
      // already gone
    }
  }
}

/** Stop every QEMU started by this process and remove the `scratchDir()`s (call in afterAll). */
export async function stopAllQemu(): Promise<void> {
  await Promise.all([...live].map((q) => q.stop(1000)));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

/** Pids of live processes whose command line contains `pattern` (default: this process's QEMU tag) — `pgrep -f`. */
export function findProcesses(pattern: string = QEMU_TAG): { pid: number; cmdline: string }[] {
  const out: { pid: number; cmdline: string }[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    // Not Linux: fall back to pgrep.
    const r = spawnSync("pgrep", ["-f", "-a", pattern], { encoding: "utf8" });
    for (const line of (r.stdout ?? "").split("\n")) {
      const m = /^(\d+)\s+(.*)$/.exec(line);
      if (m && Number(m[1]) !== process.pid) out.push({ pid: Number(m[1]), cmdline: m[2]! });
    }
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${e}/cmdline`, "utf8").replace(/\0/g, " ").trim();
    } catch {
      continue;
    }
    if (cmd.includes(pattern)) out.push({ pid: Number(e), cmdline: cmd });
  }
  return out;
}

// ------------------------------------------------------------------------------------------------ migration

/** Quote a path for /bin/sh (QEMU runs `exec:` URIs through `sh -c`). */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

type QmpTarget = QmpClient | QemuInstance;
const clientOf = (t: QmpTarget): QmpClient => (t instanceof QmpClient ? t : t.qmp);
const instanceOf = (t: QmpTarget): QemuInstance | undefined => (t instanceof QmpClient ? undefined : t);

export interface MigrationResult {
  /** The final `query-migrate` reply. */
  info: QmpMigrationInfo;
  /** Wall time from sending the command to seeing a final status, ms. */
  wallMs: number;
  /** Number of `query-migrate` polls. */
  polls: number;
}

export interface SaveOptions {
  /** `migrate-set-capabilities`, e.g. `{ xbzrle: true }`. */
  capabilities?: Record<string, boolean>;
  /** `migrate-set-parameters`, e.g. `{ "max-bandwidth": 10 * 2 ** 30 }`. */
  parameters?: Record<string, unknown>;
  timeoutMs?: number;
  pollMs?: number;
  /**
   * Wait until the file ends with a complete VMDESCRIPTION block (QEMU reports `completed` before its `cat`
   * child has necessarily written everything). Default true; set false for machines that suppress vmdesc.
   */
  waitForVmdesc?: boolean;
  /** How long to wait for that tail. Default 5000 ms. */
  vmdescTimeoutMs?: number;
  /** Called with every non-final `query-migrate` reply (e.g. to change parameters while a live migration runs). */
  onPoll?: (info: QmpMigrationInfo) => void | Promise<void>;
}

const FINAL = new Set(["completed", "failed", "cancelled"]);

async function pollMigration(
  t: QmpTarget,
  what: string,
  timeoutMs: number,
  pollMs: number,
  t0: number,
  onPoll?: (info: QmpMigrationInfo) => void | Promise<void>,
): Promise<MigrationResult> {
  const qmp = clientOf(t);
  let polls = 0;
  let info: QmpMigrationInfo = {};
  for (;;) {
    try {
      info = await qmp.execute("query-migrate");
    } catch (e) {
      const inst = instanceOf(t);
      const tail = inst ? `\nQEMU stderr: ${inst.stderr().trim().slice(-2000)}` : "";
      throw new Error(`${what}: query-migrate failed: ${(e as Error).message}${tail}`, { cause: e });
    }
    polls++;
    if (info.status !== undefined && FINAL.has(info.status)) break;
    if (performance.now() - t0 > timeoutMs) {
      if (what === "save") await qmp.execute("migrate_cancel").catch(() => undefined);
      throw new Error(`${what}: no final migration status within ${timeoutMs} ms; last ${JSON.stringify(info)}`);
    }
    await onPoll?.(info);
    await new Promise((r) => setTimeout(r, pollMs));
  }
  const wallMs = performance.now() - t0;
  if (info.status !== "completed") {
    const inst = instanceOf(t);
    throw new Error(
      `${what}: migration ended with status ${info.status}${info["error-desc"] ? `: ${info["error-desc"]}` : ""}` +
        (inst ? `\nQEMU stderr: ${inst.stderr().trim().slice(-2000)}` : ""),
    );
  }
  return { info, wallMs, polls };
}

/**
 * Migrate to `file` through `exec:cat > FILE`, after applying capabilities and parameters; poll `query-migrate`
 * until `completed` (anything else final throws). Returns the final stats.
 */
export async function saveToFile(t: QmpTarget, file: string, opts: SaveOptions = {}): Promise<MigrationResult> {
  const qmp = clientOf(t);
  const caps = Object.entries(opts.capabilities ?? {});
  if (caps.length > 0) {
    await qmp.execute("migrate-set-capabilities", { capabilities: caps.map(([capability, state]) => ({ capability, state })) });
  }
  if (opts.parameters && Object.keys(opts.parameters).length > 0) await qmp.execute("migrate-set-parameters", opts.parameters);
  const t0 = performance.now();
  await qmp.execute("migrate", { uri: `exec:cat > ${shellQuote(file)}` });
  const res = await pollMigration(t, "save", opts.timeoutMs ?? 60_000, opts.pollMs ?? 5, t0, opts.onPoll);
  if (opts.waitForVmdesc ?? true) await waitStreamTail(file, opts.vmdescTimeoutMs ?? 5000);
  return res;
}

export interface LoadOptions {
  timeoutMs?: number;
  pollMs?: number;
}

/** On a QEMU started with `incoming: "defer"`: `migrate-incoming exec:cat FILE`, poll until `completed`. */
export async function loadFromFile(t: QmpTarget, file: string, opts: LoadOptions = {}): Promise<MigrationResult> {
  const qmp = clientOf(t);
  const t0 = performance.now();
  await qmp.execute("migrate-incoming", { uri: `exec:cat ${shellQuote(file)}` });
  return pollMigration(t, "load", opts.timeoutMs ?? 60_000, opts.pollMs ?? 5, t0);
}

/** QMP `pmemsave`: write `size` bytes of guest-physical memory from `addr` to `file`. */
export async function pmemsave(t: QmpTarget, addr: number, size: number, file: string): Promise<void> {
  await clientOf(t).execute("pmemsave", { val: addr, size, filename: file });
}

export function sha256File(file: string): string {
  return sha256(readFileSync(file));
}

/**
 * Does `file` end with a complete `0x06, be32 L, L bytes of JSON` vmdesc block? (Looks for the JSON's
 * `{"page_size"` opening in the last 16 MiB and checks that its length prefix reaches EOF exactly.)
 */
export function streamTailComplete(file: string): boolean {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return false;
  }
  const want = Math.min(size, 16 * 1024 * 1024);
  const buf = Buffer.alloc(want);
  const fd = openSync(file, "r");
  try {
    readSync(fd, buf, 0, want, size - want);
  } finally {
    closeSync(fd);
  }
  const needle = Buffer.from('{"page_size"', "latin1");
  for (let at = buf.lastIndexOf(needle); at >= 5; at = at > 0 ? buf.lastIndexOf(needle, at - 1) : -1) {
    if (buf[at - 5] !== 0x06) continue;
    const len = buf.readUInt32BE(at - 4);
    if (at + len === want) return true;
  }
  return false;
}

async function waitStreamTail(file: string, timeoutMs: number): Promise<void> {
  const t0 = performance.now();
  while (!streamTailComplete(file)) {
    if (performance.now() - t0 > timeoutMs) {
      let size = -1;
      try {
        size = statSync(file).size;
      } catch {
        // missing
      }
      throw new Error(`save: ${file} (${size} bytes) does not end with a complete VMDESCRIPTION block after ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}
