/**
 * A small QMP (QEMU Machine Protocol) client over a unix socket. Node-only (`node:net`), no dependencies.
 *
 * QMP in brief (QEMU 7.2): the server sends a greeting `{"QMP": {"version": …, "capabilities": […]}}`, the client
 * leaves capabilities-negotiation mode with `qmp_capabilities`, then sends `{"execute": NAME, "arguments": {…},
 * "id": ID}` and gets back `{"return": …, "id": ID}` or `{"error": {"class": …, "desc": …}, "id": ID}`. The server
 * also sends asynchronous events `{"event": NAME, "data": {…}, "timestamp": {"seconds", "microseconds"}}` at any
 * time, interleaved with replies. Messages are JSON objects; QEMU writes one per line (`\r\n`), but this client
 * does not depend on line breaks: {@link QmpMessageFramer} splits the byte stream at the end of each top-level
 * JSON object, so chunk splits, several messages per chunk and pretty-printed output all work.
 *
 * Usage:
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
import { connect as netConnect, type Socket } from "node:net";

// ------------------------------------------------------------------------------------------------ errors

/** An error reply from QEMU: `{"error": {"class": …, "desc": …}}`. */
export class QmpError extends Error {
  /** QMP error class, e.g. `CommandNotFound`, `GenericError`, `DeviceNotFound`. */
  readonly class: string;
  /** QEMU's human-readable description. */
  readonly desc: string;
  /** The command that failed (undefined for replies QEMU sent without an id, e.g. to unparsable input). */
  readonly command: string | undefined;
  /** The id the command was sent with. */
  readonly id: number | undefined;

  constructor(errorClass: string, desc: string, command: string | undefined, id?: number) {
    super(`QMP command ${command === undefined ? "(unknown)" : `'${command}'`} failed: ${errorClass}: ${desc}`);
    this.name = "QmpError";
    this.class = errorClass;
    this.desc = desc;
    this.command = command;
    this.id = id;
  }
}

/**
 * Failure of the client side or of the connection (not a QEMU error reply).
 *
 * - `CONNECT`: could not connect to the socket within the deadline, or connecting was aborted.
 * - `GREETING`: the server did not send a valid QMP greeting, or `qmp_capabilities` failed.
 * - `CLOSED`: the connection closed (QEMU exited or `close()` was called) while a command or wait was pending,
 *   or a command was issued on a closed client.
 * - `TIMEOUT`: a command reply or an awaited event did not arrive in time.
 * - `PROTOCOL`: the server sent something that is not a JSON object, or a message above the size limit.
 */
export type QmpClientErrorCode = "CONNECT" | "GREETING" | "CLOSED" | "TIMEOUT" | "PROTOCOL";

export class QmpClientError extends Error {
  readonly code: QmpClientErrorCode;
  /** The command concerned, when there is one. */
  readonly command: string | undefined;

  constructor(code: QmpClientErrorCode, message: string, options?: { command?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "QmpClientError";
    this.code = code;
    this.command = options?.command;
  }
}

// ------------------------------------------------------------------------------------------------ message types

export interface QmpTimestamp {
  seconds: number;
  microseconds: number;
}

/** An asynchronous event. */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: QmpTimestamp;
}

export interface QmpVersionTriple {
  major: number;
  minor: number;
  micro: number;
}

/** The reply of `query-version` (and the `version` member of the greeting). */
export interface QmpVersionInfo {
  qemu: QmpVersionTriple;
  package: string;
}

/** The greeting QEMU sends on connect. */
export interface QmpGreeting {
  QMP: { version: QmpVersionInfo; capabilities: string[] };
}

/** The reply of `query-status`. */
export interface QmpStatusInfo {
  status: string;
  running: boolean;
  singlestep?: boolean;
}

/** The `ram` member of `query-migrate` (the counters vmstream cares about; QEMU sends more). */
export interface QmpMigrationRamStats {
  transferred: number;
  remaining: number;
  total: number;
  duplicate: number;
  normal: number;
  "normal-bytes": number;
  "dirty-sync-count": number;
  mbps: number;
  [k: string]: unknown;
}

/** The reply of `query-migrate`. Empty (`{}`) before any migration; `status` then absent. */
export interface QmpMigrationInfo {
  status?: string;
  "total-time"?: number;
  "expected-downtime"?: number;
  downtime?: number;
  "setup-time"?: number;
  ram?: QmpMigrationRamStats;
  "xbzrle-cache"?: Record<string, unknown>;
  "error-desc"?: string;
  [k: string]: unknown;
}

/** Return types of the commands this library uses; any other command returns `unknown`. */
export interface QmpCommandReturns {
  qmp_capabilities: Record<string, never>;
  "query-status": QmpStatusInfo;
  "query-version": QmpVersionInfo;
  "query-migrate": QmpMigrationInfo;
  "query-commands": { name: string }[];
}

export type QmpReturn<C extends string> = C extends keyof QmpCommandReturns ? QmpCommandReturns[C] : unknown;

// ------------------------------------------------------------------------------------------------ framing

const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isJsonWhitespace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/**
 * Incremental splitter of a byte stream into top-level JSON objects.
 *
 * It tracks only nesting depth and string/escape state (enough to find where each object ends; all bytes of
 * multi-byte UTF-8 sequences are ≥ 0x80 and never look like structure), so it accepts arbitrary chunk
 * boundaries, including ones inside a UTF-8 sequence: a message is decoded only once complete. Whitespace
 * between messages is skipped; any other byte outside an object is a protocol error.
 */
export class QmpMessageFramer {
  private readonly maxMessageBytes: number;
  private readonly decoder = new TextDecoder("utf-8");
  /** Bytes of the message in progress that came in earlier chunks. */
  private partial: Uint8Array[] = [];
  private partialBytes = 0;
  private depth = 0;
  private inString = false;
  private escape = false;

  constructor(options?: { maxMessageBytes?: number }) {
    this.maxMessageBytes = options?.maxMessageBytes ?? 64 * 1024 * 1024;
  }

  /** True when bytes of an incomplete message are buffered. */
  get pending(): boolean {
    return this.depth > 0;
  }

  /**
   * Feed a chunk; returns the messages completed by it, parsed, in order.
   * Throws {@link QmpClientError} (`PROTOCOL`) on bytes outside an object, invalid JSON or an oversized message;
   * the framer is then reset to its initial state.
   */
  push(chunk: Uint8Array | string): unknown[] {
    const bytes = typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk;
    const out: unknown[] = [];
    let start = this.depth > 0 ? 0 : -1;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      if (this.depth === 0) {
        if (b === LBRACE) {
          this.depth = 1;
          start = i;
        } else if (!isJsonWhitespace(b)) {
          this.reset();
          throw new QmpClientError("PROTOCOL", `QMP: unexpected byte 0x${b.toString(16).padStart(2, "0")} between messages`);
        }
        continue;
      }
      if (this.inString) {
        if (this.escape) this.escape = false;
        else if (b === BACKSLASH) this.escape = true;
        else if (b === QUOTE) this.inString = false;
        continue;
      }
      if (b === QUOTE) this.inString = true;
      else if (b === LBRACE || b === LBRACKET) this.depth++;
      else if (b === RBRACE || b === RBRACKET) {
        this.depth--;
        if (this.depth === 0) {
          out.push(this.finish(bytes.subarray(start, i + 1)));
          start = -1;
        }
      }
    }
    if (this.depth > 0) {
      const tail = bytes.subarray(start);
      this.partialBytes += tail.length;
      if (this.partialBytes > this.maxMessageBytes) {
        this.reset();
        throw new QmpClientError("PROTOCOL", `QMP: message larger than ${this.maxMessageBytes} bytes`);
      }
      // Copy: the caller may reuse its buffer.
      this.partial.push(tail.slice());
    }
    return out;
  }

  /** Forget any partial message. */
  reset(): void {
    this.partial = [];
    this.partialBytes = 0;
    this.depth = 0;
    this.inString = false;
    this.escape = false;
  }

  private finish(last: Uint8Array): unknown {
    let whole = last;
    if (this.partial.length > 0) {
      whole = new Uint8Array(this.partialBytes + last.length);
      let o = 0;
      for (const p of this.partial) {
        whole.set(p, o);
        o += p.length;
      }
      whole.set(last, o);
      this.partial = [];
      this.partialBytes = 0;
    }
    if (whole.length > this.maxMessageBytes) {
      this.reset();
      throw new QmpClientError("PROTOCOL", `QMP: message larger than ${this.maxMessageBytes} bytes`);
    }
    const text = this.decoder.decode(whole);
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      this.reset();
      throw new QmpClientError("PROTOCOL", `QMP: invalid JSON from server: ${text.slice(0, 200)}`, { cause: e });
    }
  }
}

// ------------------------------------------------------------------------------------------------ client

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
 * A connected QMP session. Create with {@link QmpClient.connect}.
 *
 * Commands may be issued concurrently: each gets a numeric id and its promise is settled by the reply with
 * that id (QEMU answers in order; a reply without an id, which QEMU sends for unparsable input, is given to the
 * oldest pending command). When the connection closes, every pending command and event wait is rejected with a
 * {@link QmpClientError} `CLOSED` naming the command, and later calls reject at once.
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
    let socket: Socket | undefined;
    let lastError: unknown;
    for (;;) {
      if (signal?.aborted) {
        throw new QmpClientError("CONNECT", `QMP connect to ${path} aborted: ${abortReason(signal)}`, { cause: lastError });
      }
      try {
        socket = await openSocket(path);
        break;
      } catch (e) {
        lastError = e;
        const code = (e as NodeJS.ErrnoException).code ?? "";
        if (!RETRYABLE.has(code)) {
          throw new QmpClientError("CONNECT", `QMP connect to ${path} failed: ${(e as Error).message}`, { cause: e });
        }
      }
      if (Date.now() + retryIntervalMs > deadline) {
        const why = lastError instanceof Error ? lastError.message : String(lastError);
        throw new QmpClientError("CONNECT", `QMP socket ${path} not available within ${connectTimeoutMs} ms (${why})`, {
          cause: lastError,
        });
      }
      await delay(retryIntervalMs, signal);
    }

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
      return Promise.reject(
        new QmpClientError("CLOSED", `QMP: cannot wait for event ${name}: ${this.closedError.message}`, { cause: this.closedError }),
      );
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
    const reason = this.closeRequested
      ? "closed by the client"
      : error
        ? `connection error: ${error.message}`
        : "connection closed by QEMU (did it exit?)";
    this.closedError = new QmpClientError(error instanceof QmpClientError ? error.code : "CLOSED", `QMP ${reason}`, {
      cause: error,
    });
    for (const p of [...this.pending.values()]) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      p.reject(
        new QmpClientError("CLOSED", `QMP command '${p.command}' got no reply: ${reason}`, { command: p.command, cause: error }),
      );
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

/** Read until at least one complete message (the greeting) has arrived; returns all messages read so far. */
function readGreeting(socket: Socket, framer: QmpMessageFramer, timeoutMs: number, signal?: AbortSignal): Promise<unknown[]> {
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
