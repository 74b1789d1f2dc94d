// The QMP unix socket: connecting (with retries while QEMU has not created it yet) and reading the
// greeting. Node-only (`node:net`).
import { connect as netConnect, type Socket } from "node:net";
import { QmpClientError } from "./errors.js";
import type { QmpMessageFramer } from "./framer.js";

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

function abortReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  return r instanceof Error ? r.message : String(r);
}

/** Open a unix socket once; resolves with the connected socket or rejects with the connect error. */
function openSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = netConnect({ path });
    const onError = (e: Error): void => {
      sock.destroy();
      reject(e);
    };
    sock.once("error", onError);
    sock.once("connect", () => {
      sock.off("error", onError);
      resolve(sock);
    });
  });
}

const RETRYABLE = new Set(["ENOENT", "ECONNREFUSED", "EAGAIN", "ENOTSOCK"]);

/**
 * Connect to the unix socket at `path`, retrying every `retryIntervalMs` while it does not exist yet or
 * refuses connections, until `deadline` (a `Date.now()` time, `timeoutMs` after the start). Throws `CONNECT`.
 */
export async function connectSocket(
  path: string,
  { deadline, timeoutMs, retryIntervalMs, signal }: { deadline: number; timeoutMs: number; retryIntervalMs: number; signal: AbortSignal | undefined },
): Promise<Socket> {
  let lastError: unknown;
  for (;;) {
    if (signal?.aborted) {
      throw new QmpClientError("CONNECT", `QMP connect to ${path} aborted: ${abortReason(signal)}`, { cause: lastError });
    }
    try {
      return await openSocket(path);
    } catch (e) {
      lastError = e;
      const code = (e as NodeJS.ErrnoException).code ?? "";
      if (!RETRYABLE.has(code)) {
        throw new QmpClientError("CONNECT", `QMP connect to ${path} failed: ${(e as Error).message}`, { cause: e });
      }
    }
    if (Date.now() + retryIntervalMs > deadline) {
      const why = lastError instanceof Error ? lastError.message : String(lastError);
      throw new QmpClientError("CONNECT", `QMP socket ${path} not available within ${timeoutMs} ms (${why})`, {
        cause: lastError,
      });
    }
    await delay(retryIntervalMs, signal);
  }
}

/** Read until at least one complete message (the greeting) has arrived; returns all messages read so far. */
export function readGreeting(socket: Socket, framer: QmpMessageFramer, timeoutMs: number, signal?: AbortSignal): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const out: unknown[] = [];
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("close", onCloseEv);
      signal?.removeEventListener("abort", onAbort);
    };
    const fail = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const onData = (chunk: Buffer): void => {
      try {
        out.push(...framer.push(chunk));
      } catch (e) {
        fail(new QmpClientError("GREETING", `QMP: bad greeting: ${(e as Error).message}`, { cause: e }));
        return;
      }
      if (out.length > 0) {
        cleanup();
        socket.pause();
        resolve(out);
      }
    };
    const onError = (e: Error): void => fail(new QmpClientError("GREETING", `QMP: socket error before greeting: ${e.message}`, { cause: e }));
    const onCloseEv = (): void => fail(new QmpClientError("GREETING", "QMP: connection closed before the greeting"));
    const onAbort = (): void => fail(new QmpClientError("CONNECT", `QMP connect aborted: ${signal ? abortReason(signal) : ""}`));
    const timer = setTimeout(() => fail(new QmpClientError("GREETING", `QMP: no greeting within ${timeoutMs} ms`)), timeoutMs);
    socket.on("data", onData);
    socket.once("error", onError);
    socket.once("close", onCloseEv);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
  });
}
