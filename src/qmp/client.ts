// A small QMP (QEMU Machine Protocol) client over a unix socket. Node-only (`node:net`), no
// dependencies. Messages: messages.ts; framing: framer.ts; connecting and the greeting: socket.ts.
import type { Socket } from "node:net";
import { QmpClientError, QmpError } from "./errors.js";
import { QmpMessageFramer } from "./framer.js";
import type { QmpEvent, QmpGreeting, QmpReturn, QmpVersionTriple } from "./messages.js";
import { connectSocket, readGreeting } from "./socket.js";

export interface QmpConnectOptions {
  /** Give up connecting (socket absent or refusing) and waiting for the greeting after this long. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /** Pause between connection attempts. Default 20 ms. */
  retryIntervalMs?: number;
  /** Default timeout of {@link QmpClient.execute}; 0 means none. Default 30 000 ms. */
  commandTimeoutMs?: number;
  /** Aborts connecting (e.g. when the QEMU process exits before its socket appears). */
  signal?: AbortSignal;
  /** Extra capabilities to enable with `qmp_capabilities` (e.g. `["oob"]`). Default none. */
  enable?: string[];
}

export interface QmpExecuteOptions {
  /** Overrides the client's default command timeout; 0 means none. */
  timeoutMs?: number;
}

type EventListener = (event: QmpEvent) => void;
type CloseListener = (error: Error | undefined) => void;

interface Pending {
  id: number;
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * A connected QMP session. Create with {@link QmpClient.connect}.
 *
 * Commands may be issued concurrently: each gets a numeric id and its promise is settled by the reply with
 * that id (QEMU answers in order; a reply without an id, which QEMU sends for unparsable input, is given to the
 * oldest pending command). When the connection closes, every pending command and event wait is rejected with a
 * {@link QmpClientError} `CLOSED` naming the command, and later calls reject at once.
 *
 * ```ts
 * const qmp = await QmpClient.connect("/tmp/x/qmp.sock");
 * const st = await qmp.execute("query-status"); // { status: "prelaunch", running: false, … }
 * const stopped = qmp.waitEvent("STOP", undefined, 5000); // register BEFORE the command that causes it
 * await qmp.execute("stop");
 * await stopped;
 * qmp.close();
 * ```
 */
export class QmpClient {
  /** The server's greeting (QEMU version and QMP capabilities). */
  readonly greeting: QmpGreeting;
  /** The socket path this client is connected to. */
  readonly path: string;

  private readonly socket: Socket;
  private readonly framer: QmpMessageFramer;
  private readonly pending = new Map<number, Pending>();
  private readonly eventListeners = new Set<EventListener>();
  private readonly closeListeners = new Set<CloseListener>();
  private readonly commandTimeoutMs: number;
  private nextId = 1;
  private closedError: QmpClientError | undefined;
  private closeRequested = false;

  private constructor(socket: Socket, path: string, greeting: QmpGreeting, commandTimeoutMs: number, framer: QmpMessageFramer, rest: unknown[]) {
    this.socket = socket;
    this.path = path;
    this.greeting = greeting;
    this.commandTimeoutMs = commandTimeoutMs;
    this.framer = framer;
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (e: Error) => this.onClose(e));
    socket.on("close", () => this.onClose(undefined));
    // Messages that arrived in the same chunk as the greeting (QEMU does not send any, but be safe).
    for (const m of rest) this.dispatch(m);
    socket.resume(); // readGreeting paused it
  }

  /**
   * Connect to the QMP unix socket at `path`, retrying while the socket does not exist yet or refuses
   * connections (bounded by `connectTimeoutMs`), read the greeting and leave negotiation mode with `qmp_capabilities`.
   */
  static async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    const retryIntervalMs = options.retryIntervalMs ?? 20;
    const signal = options.signal;
    const deadline = Date.now() + connectTimeoutMs;
    const socket = await connectSocket(path, { deadline, timeoutMs: connectTimeoutMs, retryIntervalMs, signal });

    const framer = new QmpMessageFramer();
    let greetingAndRest: unknown[];
    try {
      greetingAndRest = await readGreeting(socket, framer, Math.max(1, deadline - Date.now()), signal);
    } catch (e) {
      socket.destroy();
      throw e;
    }
    const [greeting, ...rest] = greetingAndRest;
    if (!isRecord(greeting) || !isRecord(greeting["QMP"])) {
      socket.destroy();
      throw new QmpClientError("GREETING", `QMP: unexpected greeting from ${path}: ${JSON.stringify(greeting).slice(0, 200)}`);
    }
    const client = new QmpClient(socket, path, greeting as unknown as QmpGreeting, options.commandTimeoutMs ?? 30_000, framer, rest);
    try {
      await client.execute("qmp_capabilities", options.enable?.length ? { enable: options.enable } : undefined, {
        timeoutMs: Math.max(1000, deadline - Date.now()),
      });
    } catch (e) {
      client.close();
      throw new QmpClientError("GREETING", `QMP: qmp_capabilities failed on ${path}: ${(e as Error).message}`, { cause: e });
    }
    return client;
  }

  /** True once the connection is closed (by either side). */
  get closed(): boolean {
    return this.closedError !== undefined;
  }

  /** Number of commands awaiting a reply. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** The QEMU version from the greeting. */
  get version(): QmpVersionTriple {
    return this.greeting.QMP.version.qemu;
  }

  /**
   * Run a command. Resolves with its `return` value; rejects with {@link QmpError} on an error reply, or with
   * {@link QmpClientError} on timeout (`TIMEOUT`; a late reply is then discarded) or closed connection (`CLOSED`).
   */
  execute<C extends string>(command: C, args?: Record<string, unknown>, options?: QmpExecuteOptions): Promise<QmpReturn<C>> {
    if (this.closedError) {
      return Promise.reject(
        new QmpClientError("CLOSED", `QMP command '${command}' not sent: ${this.closedError.message}`, {
          command,
          cause: this.closedError,
        }),
      );
    }
    const id = this.nextId++;
    const msg: Record<string, unknown> = { execute: command };
    if (args !== undefined) msg["arguments"] = args;
    msg["id"] = id;
    const timeoutMs = options?.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<QmpReturn<C>>((resolve, reject) => {
      const p: Pending = { id, command, resolve: resolve as (v: unknown) => void, reject, timer: undefined };
      if (timeoutMs > 0) {
        p.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new QmpClientError("TIMEOUT", `QMP command '${command}' timed out after ${timeoutMs} ms`, { command }));
        }, timeoutMs);
      }
      this.pending.set(id, p);
      this.socket.write(JSON.stringify(msg) + "\n");
    });
  }

  /** Listen for asynchronous events (`'event'`) or for the end of the connection (`'close'`, with the error if any). */
  on(kind: "event", listener: EventListener): this;
  on(kind: "close", listener: CloseListener): this;
  on(kind: "event" | "close", listener: EventListener | CloseListener): this {
    if (kind === "event") this.eventListeners.add(listener as EventListener);
    else this.closeListeners.add(listener as CloseListener);
    return this;
  }

  off(kind: "event", listener: EventListener): this;
  off(kind: "close", listener: CloseListener): this;
  off(kind: "event" | "close", listener: EventListener | CloseListener): this {
    if (kind === "event") this.eventListeners.delete(listener as EventListener);
    else this.closeListeners.delete(listener as CloseListener);
    return this;
  }

  /**
   * Resolve with the next event named `name` (and accepted by `predicate`) that arrives from now on.
   * Register it BEFORE the command that triggers the event: QEMU may send the event before the command's reply.
   * Rejects with `TIMEOUT` after `timeoutMs` (0 = wait forever) and with `CLOSED` if the connection ends first.
   */
  waitEvent(name: string, predicate?: (event: QmpEvent) => boolean, timeoutMs = 30_000): Promise<QmpEvent> {
    if (this.closedError) {
      return Promise.reject(new QmpClientError("CLOSED", `QMP: cannot wait for event ${name}: ${this.closedError.message}`, { cause: this.closedError }));
    }
    return new Promise<QmpEvent>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const cleanup = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        this.eventListeners.delete(onEvent);
        this.closeListeners.delete(onClose);
      };
      const onEvent: EventListener = (ev) => {
        if (ev.event !== name) return;
        let ok: boolean;
        try {
          ok = predicate ? predicate(ev) : true;
        } catch (e) {
          cleanup();
          reject(e instanceof Error ? e : new Error(String(e)));
          return;
        }
        if (!ok) return;
        cleanup();
        resolve(ev);
      };
      const onClose: CloseListener = () => {
        cleanup();
        const why = this.closedError?.message ?? "connection closed";
        reject(new QmpClientError("CLOSED", `QMP: connection closed while waiting for event ${name} (${why})`, { cause: this.closedError }));
      };
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          cleanup();
          reject(new QmpClientError("TIMEOUT", `QMP: event ${name} not received within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.eventListeners.add(onEvent);
      this.closeListeners.add(onClose);
    });
  }

  /** Close the connection. Pending commands and event waits are rejected (`CLOSED`). Idempotent. */
  close(): void {
    if (this.closedError) return;
    this.closeRequested = true;
    this.onClose(undefined);
    this.socket.destroy();
  }

  // ---------------------------------------------------------------------------------------------- internals

  private onData(chunk: Buffer): void {
    let messages: unknown[];
    try {
      messages = this.framer.push(chunk);
    } catch (e) {
      this.onClose(e as Error);
      this.socket.destroy();
      return;
    }
    for (const m of messages) this.dispatch(m);
  }

  private dispatch(m: unknown): void {
    if (this.closedError) return;
    if (!isRecord(m)) {
      this.onClose(new QmpClientError("PROTOCOL", `QMP: message is not an object: ${JSON.stringify(m).slice(0, 200)}`));
      this.socket.destroy();
      return;
    }
    if (typeof m["event"] === "string") {
      const ev = m as unknown as QmpEvent;
      for (const l of [...this.eventListeners]) {
        try {
          l(ev);
        } catch {
          // A listener's failure must not break the session.
        }
      }
      return;
    }
    if (!("return" in m) && !("error" in m)) return; // unknown message kind: ignore (forward compatible)
    let p: Pending | undefined;
    const rawId = m["id"];
    if (typeof rawId === "number") p = this.pending.get(rawId);
    else if (rawId === undefined) p = this.pending.values().next().value; // replies without id: oldest first
    if (!p) return; // reply to a timed-out command, or not ours
    this.pending.delete(p.id);
    if (p.timer !== undefined) clearTimeout(p.timer);
    if ("error" in m) {
      const err = isRecord(m["error"]) ? m["error"] : {};
      const cls = typeof err["class"] === "string" ? err["class"] : "GenericError";
      const desc = typeof err["desc"] === "string" ? err["desc"] : JSON.stringify(err);
      p.reject(new QmpError(cls, desc, p.command, p.id));
    } else {
      p.resolve(m["return"]);
    }
  }

  private onClose(error: Error | undefined): void {
    if (this.closedError) return;
    const reason = this.closeRequested ? "closed by the client" : error ? `connection error: ${error.message}` : "connection closed by QEMU (did it exit?)";
    this.closedError = new QmpClientError(error instanceof QmpClientError ? error.code : "CLOSED", `QMP ${reason}`, {
      cause: error,
    });
    for (const p of [...this.pending.values()]) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      p.reject(new QmpClientError("CLOSED", `QMP command '${p.command}' got no reply: ${reason}`, { command: p.command, cause: error }));
    }
    this.pending.clear();
    this.framer.reset();
    for (const l of [...this.closeListeners]) {
      try {
        l(error);
      } catch {
        // ignore
      }
    }
    this.closeListeners.clear();
    this.eventListeners.clear();
  }
}
