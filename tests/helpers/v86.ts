// Test harness for the v86 embedding (tests only, Node): suites that need SeaBIOS, under the policy of
// tests/helpers/requires.ts (run when /usr/share/seabios/bios.bin exists; FAIL under CI=true when it does not;
// otherwise skip with the reason), and a migration peer in a child process (tests/helpers/v86-peer.mjs, which
// runs the built dist/).
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { biosInstalled, DEFAULT_BIOS } from "../../src/v86/adapter.js";
import { describeIfInstalled } from "./requires.js";

/** `describe` for a suite that needs SeaBIOS (the policy of {@link describeIfInstalled}). */
export function describeV86(name: string, fn: () => void): void {
  const missing = biosInstalled() ? undefined : `no SeaBIOS at ${DEFAULT_BIOS} (Debian package seabios)`;
  describeIfInstalled({ what: "SeaBIOS", missing }, name, fn);
}

const PEER = fileURLToPath(new URL("./v86-peer.mjs", import.meta.url));

/** A v86 destination in its own Node process; messages are its JSON stdout lines. */
export interface V86Peer {
  readonly child: ChildProcess;
  /** The next JSON message (rejects when the process exits first or after `timeoutMs`). */
  next(timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Kill it (SIGKILL) and wait for the exit. */
  kill(): Promise<void>;
  readonly stderr: () => string;
}

export function startPeer(args: string[]): V86Peer {
  const child = spawn(process.execPath, [PEER, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const queue: Record<string, unknown>[] = [];
  let wake: (() => void) | undefined;
  let exited = false;
  let err = "";
  child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  createInterface({ input: child.stdout! }).on("line", (l) => {
    try {
      queue.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      queue.push({ text: l });
    }
    wake?.();
  });
  const exit = new Promise<void>((ok) =>
    child.once("exit", () => {
      exited = true;
      wake?.();
      ok();
    }),
  );
  return {
    child,
    stderr: () => err,
    async next(timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      while (queue.length === 0) {
        if (exited) throw new Error(`the v86 peer exited (code ${child.exitCode}): ${err.slice(-500)}`);
        if (Date.now() > until) throw new Error(`no message from the v86 peer within ${timeoutMs} ms`);
        await new Promise<void>((ok) => {
          wake = ok;
          setTimeout(ok, 200);
        });
      }
      return queue.shift()!;
    },
    async kill() {
      if (!exited) child.kill("SIGKILL");
      await exit;
    },
  };
}
