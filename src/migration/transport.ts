// Transports for live migration (Node only; exported from vmstream/node): endpoints `tcp:HOST:PORT`, `file:PATH`
// or a plain path, and `-`; a one-connection TCP server, a TCP client, and a writer that respects backpressure and
// copies chunks unless told not to. Backpressure and copy semantics: docs/live-migration.md, "Transports".
import { createReadStream, createWriteStream, renameSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import type { Readable, Writable } from "node:stream";
import { VmstreamError } from "../io/errors.js";
import { createOutputFile } from "../io/output-files.js";

export type Endpoint =
  | { readonly kind: "tcp"; readonly host: string; readonly port: number }
  | { readonly kind: "file"; readonly path: string }
  | { readonly kind: "stdio" };

/** The host a TCP endpoint without one uses (servers and clients alike): loopback only. */
export const DEFAULT_HOST = "127.0.0.1";

/**
 * `tcp:HOST:PORT` (HOST may be empty for 127.0.0.1, or a bracketed IPv6 address `[::1]`), `file:PATH`,
 * `-` (stdin or stdout), or a plain path.
 */
export function parseEndpoint(text: string): Endpoint {
  if (text === "-") return { kind: "stdio" };
  if (text.startsWith("file:")) {
    const path = text.slice(5);
    if (path === "") throw new VmstreamError("BAD_VALUE", "empty path in a file: endpoint", { detail: text });
    return { kind: "file", path };
  }
  if (text.startsWith("tcp:")) {
    const rest = text.slice(4);
    let host: string;
    let port: string;
    const v6 = /^\[([^\]]*)\]:([^:]*)$/.exec(rest);
    if (v6) {
      host = v6[1]!;
      port = v6[2]!;
    } else {
      const i = rest.lastIndexOf(":");
      if (i < 0) throw new VmstreamError("BAD_VALUE", "a tcp endpoint needs a port", { detail: `${text}: expected tcp:HOST:PORT` });
      host = rest.slice(0, i);
      port = rest.slice(i + 1);
      if (host.includes(":"))
        throw new VmstreamError("BAD_VALUE", "an IPv6 address in a tcp endpoint needs brackets", { detail: `${text}: e.g. tcp:[::1]:4444` });
    }
    if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) {
      throw new VmstreamError("BAD_VALUE", "bad port in a tcp endpoint", { detail: `${text}: the port must be 0..65535` });
    }
    return { kind: "tcp", host: host === "" ? DEFAULT_HOST : host, port: Number(port) };
  }
  if (text === "") throw new VmstreamError("BAD_VALUE", "empty endpoint");
  return { kind: "file", path: text };
}

/** The text form of an endpoint (what parseEndpoint reads back). */
export function formatEndpoint(e: Endpoint): string {
  switch (e.kind) {
    case "stdio":
      return "-";
    case "file":
      return e.path;
    case "tcp":
      return `tcp:${e.host.includes(":") ? `[${e.host}]` : e.host}:${e.port}`;
  }
}

function ioError(summary: string, e: unknown, detail?: string): VmstreamError {
  if (e instanceof VmstreamError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new VmstreamError("IO", summary, { detail: detail ? `${detail}: ${msg}` : msg, cause: e });
}

// ------------------------------------------------------------------------------------------------ TCP

export interface TcpListener {
  readonly host: string;
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  /** `tcp:HOST:PORT` with the real port. */
  readonly address: string;
  /** The one connection: resolves when a peer connects; the listener then stops listening. */
  accept(): Promise<Socket>;
  /** Stop listening (an accept() still pending rejects). */
  close(): Promise<void>;
}

/**
 * Listen on HOST:PORT (host default 127.0.0.1; port 0 picks a free port) for exactly one connection: the
 * first peer is accepted, the server stops listening, and any peer racing in after it is dropped.
 */
export function listenTcp(options: { host?: string; port: number }): Promise<TcpListener> {
  const host = options.host ?? DEFAULT_HOST;
  return new Promise((resolveListen, rejectListen) => {
    let accepted: Socket | undefined;
    let waiter: { ok: (s: Socket) => void; fail: (e: unknown) => void } | undefined;
    let closedError: VmstreamError | undefined;
    const server: Server = createServer((socket) => {
      if (accepted || closedError) {
        socket.destroy();
        return;
      }
      accepted = socket;
      server.close();
      waiter?.ok(socket);
    });
    server.maxConnections = 1;
    server.once("error", (e) => {
      const err = ioError("cannot listen", e, `tcp:${host}:${options.port}`);
      if (!listening) rejectListen(err);
      else {
        closedError = err;
        waiter?.fail(err);
      }
    });
    let listening = false;
    server.listen({ host, port: options.port, exclusive: true }, () => {
      listening = true;
      const a = server.address();
      const port = typeof a === "object" && a ? a.port : options.port;
      resolveListen({
        host,
        port,
        address: formatEndpoint({ kind: "tcp", host, port }),
        accept() {
          if (accepted) return Promise.resolve(accepted);
          if (closedError) return Promise.reject(closedError);
          return new Promise<Socket>((ok, fail) => {
            waiter = { ok, fail };
          });
        },
        close() {
          if (!accepted && !closedError) {
            closedError = new VmstreamError("IO", "the listener was closed before a peer connected", { detail: `tcp:${host}:${port}` });
            waiter?.fail(closedError);
          }
          return new Promise<void>((ok) => {
            if (!server.listening) ok();
            else server.close(() => ok());
          });
        },
      });
    });
  });
}

/** Connect to HOST:PORT; a refused or failed connection is a VmstreamError naming the endpoint. */
export function connectTcp(options: { host?: string; port: number; timeoutMs?: number; writableHighWaterMark?: number }): Promise<Socket> {
  const host = options.host ?? DEFAULT_HOST;
  const where = formatEndpoint({ kind: "tcp", host, port: options.port });
  return new Promise((ok, fail) => {
    const socket = connect({ host, port: options.port, ...(options.writableHighWaterMark ? { writableHighWaterMark: options.writableHighWaterMark } : {}) });
    let timer: NodeJS.Timeout | undefined;
    if (options.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        socket.destroy();
        fail(new VmstreamError("IO", "connection timed out", { detail: `${where} after ${options.timeoutMs} ms` }));
      }, options.timeoutMs);
    }
    socket.once("connect", () => {
      if (timer) clearTimeout(timer);
      socket.removeAllListeners("error");
      ok(socket);
    });
    socket.once("error", (e: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      socket.destroy();
      if (e.code === "ECONNREFUSED") fail(new VmstreamError("IO", "connection refused", { detail: `${where}: nothing is listening there`, cause: e }));
      else fail(ioError("cannot connect", e, where));
    });
  });
}

// ------------------------------------------------------------------------------------------------ writing

/**
 * Writes chunks to a Node Writable (socket, file, stdout) with backpressure: `await writer.write(chunk)`
 * returns when more may be written. Errors of the stream (a peer that hung up) reject the next call, as a
 * VmstreamError with the byte offset reached. Copy semantics: docs/live-migration.md, "Transports".
 */
export class StreamWriter {
  /** Bytes handed to write(). */
  bytes = 0;
  /** Bytes the stream reported written (write callbacks). */
  flushed = 0;
  /** The largest `writableLength` seen right after a write (bytes queued in Node, not yet given to the OS). */
  maxBuffered = 0;
  /** True while write() waits for 'drain'. */
  waiting = false;
  private readonly copy: boolean;
  private failure: VmstreamError | undefined;
  private pending = 0;
  private drained: Promise<void> | undefined;
  private readonly idle: (() => void)[] = [];
  private readonly what: string;

  constructor(
    readonly stream: Writable,
    options: { copy?: boolean; name?: string } = {},
  ) {
    this.copy = options.copy ?? true;
    this.what = options.name ?? "the output";
    stream.on("error", (e) => this.setFailure(e));
    stream.on("close", () => {
      if (!stream.writableFinished) this.setFailure(new Error("closed"));
    });
  }

  /** The first error of the stream, once it failed. */
  get error(): VmstreamError | undefined {
    return this.failure;
  }

  /** Bytes queued in Node now. */
  get buffered(): number {
    return this.stream.writableLength;
  }

  /**
   * Queue `chunk`; resolves when more may be written. `written` is called once the chunk itself is no longer
   * needed: right away when it was copied, else when the stream has handed it to the OS (not on failure).
   */
  async write(chunk: Uint8Array, written?: () => void): Promise<void> {
    if (this.failure) throw this.failure;
    if (chunk.length === 0) {
      written?.();
      return;
    }
    const data = this.copy ? chunk.slice() : chunk;
    if (this.copy) written?.();
    const done = this.copy ? undefined : written;
    const n = data.length;
    this.bytes += n;
    this.pending++;
    const more = this.stream.write(data, (e) => {
      this.pending--;
      if (e) this.setFailure(e);
      else {
        this.flushed += n;
        done?.();
      }
      if (this.pending === 0) for (const f of this.idle.splice(0)) f();
    });
    this.maxBuffered = Math.max(this.maxBuffered, this.stream.writableLength);
    if (!more) await this.drain();
    if (this.failure) throw this.failure;
  }

  /** Every chunk written so far has been handed to the OS (or the stream failed). */
  async flush(): Promise<void> {
    if (this.pending > 0 && !this.failure) await new Promise<void>((ok) => this.idle.push(ok));
    if (this.failure) throw this.failure;
  }

  /** End the stream and wait until everything is written (for a socket: handed to the OS, FIN sent). */
  async end(): Promise<void> {
    if (this.failure) throw this.failure;
    const s = this.stream;
    if (!s.writableFinished) {
      await new Promise<void>((ok) => {
        const done = () => {
          s.off("finish", done);
          s.off("error", done);
          s.off("close", done);
          ok();
        };
        s.on("finish", done);
        s.on("error", done);
        s.on("close", done);
        if (!s.writableEnded) s.end();
      });
    }
    if (this.failure) throw this.failure;
  }

  /** One wait for 'drain' shared by every write() waiting now (a producer may have many writes pending). */
  private drain(): Promise<void> {
    const s = this.stream;
    if (this.failure || s.destroyed) return Promise.resolve();
    if (this.drained) return this.drained;
    this.waiting = true;
    this.drained = new Promise((ok) => {
      const done = () => {
        s.off("drain", done);
        s.off("error", done);
        s.off("close", done);
        this.waiting = false;
        this.drained = undefined;
        ok();
      };
      s.on("drain", done);
      s.on("error", done);
      s.on("close", done);
    });
    return this.drained;
  }

  private setFailure(e: unknown): void {
    if (this.failure) return;
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    const detail = code === "EPIPE" || code === "ECONNRESET" || (e instanceof Error && e.message === "closed") ? "the peer closed the connection" : undefined;
    this.failure = new VmstreamError("IO", `cannot write to ${this.what}`, {
      offset: this.flushed,
      detail: detail ?? (e instanceof Error ? e.message : String(e)),
      cause: e,
    });
    for (const f of this.idle.splice(0)) f();
  }
}

// ------------------------------------------------------------------------------------------------ endpoints

export interface InputOpen {
  /** The bytes, pulled one chunk at a time (backpressure: nothing is read ahead of the consumer). */
  readonly source: AsyncIterable<Uint8Array>;
  /** The TCP connection, for a tcp endpoint (to write a return path to, or to destroy). */
  readonly socket?: Socket;
  /** Stop reading and release the input. */
  close(): void;
}

export interface OpenInputOptions {
  /** For a tcp endpoint: called once the server listens, with `tcp:HOST:PORT` (the real port). */
  readonly onListening?: (address: string) => void;
  /** For a tcp endpoint: called with the listener (to close it from outside, e.g. on a signal). */
  readonly onListener?: (listener: TcpListener) => void;
  /** Read size for files (default 1 MiB). */
  readonly highWaterMark?: number;
  /**
   * For a tcp endpoint (from the connection on) and stdin: fail when the next chunk takes longer than this to
   * come; the time the consumer spends between chunks is not counted. Default: no limit.
   */
  readonly idleTimeoutMs?: number;
}

/**
 * The chunks of `source`, failing with a VmstreamError when one takes longer than `ms` to come after the
 * consumer asked for it. The input is left to its owner to close (a pending read ends when it is destroyed).
 */
async function* idleLimited(source: AsyncIterable<Uint8Array>, ms: number, what: string): AsyncGenerator<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  let bytes = 0;
  let stalled = false;
  try {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const idle = new Promise<never>((_, fail) => {
        timer = setTimeout(() => {
          stalled = true;
          fail(new VmstreamError("IO", `${what} stalled`, { offset: bytes, detail: `nothing received for ${ms / 1000} s (idle timeout)` }));
        }, ms);
      });
      let next: IteratorResult<Uint8Array>;
      try {
        const pending = it.next();
        pending.catch(() => undefined); // after a stall it settles unread, when the input is closed
        next = await Promise.race([pending, idle]);
      } finally {
        clearTimeout(timer);
      }
      if (next.done) return;
      bytes += next.value.length;
      yield next.value;
    }
  } finally {
    // a consumer that stops early releases the input; after a stall the read still pending settles on close()
    if (!stalled) await it.return?.();
  }
}

/** Chunks of a Readable as Uint8Array views (no copy). */
async function* chunks(r: Readable): AsyncGenerator<Uint8Array> {
  for await (const c of r as AsyncIterable<Buffer | string>) {
    if (typeof c === "string") throw new VmstreamError("BAD_VALUE", "the input is a text stream, not bytes");
    yield new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
  }
}

/**
 * Open an endpoint to read a migration from: a tcp endpoint listens (on its host, 127.0.0.1 by default) and
 * accepts one connection; a file is read; `-` is stdin.
 */
export async function openInput(endpoint: Endpoint | string, options: OpenInputOptions = {}): Promise<InputOpen> {
  const e = typeof endpoint === "string" ? parseEndpoint(endpoint) : endpoint;
  const ms = options.idleTimeoutMs;
  const limited = (source: AsyncIterable<Uint8Array>, what: string) => (ms !== undefined && ms > 0 ? idleLimited(source, ms, what) : source);
  switch (e.kind) {
    case "stdio":
      return { source: limited(chunks(process.stdin), "stdin"), close: () => process.stdin.destroy() };
    case "file": {
      const r = createReadStream(e.path, { highWaterMark: options.highWaterMark ?? 1 << 20 });
      await new Promise<void>((ok, fail) => {
        r.once("open", () => ok());
        r.once("error", (err) => fail(ioError("cannot read", err, e.path)));
      });
      return { source: chunks(r), close: () => r.destroy() };
    }
    case "tcp": {
      const l = await listenTcp({ host: e.host, port: e.port });
      options.onListener?.(l);
      options.onListening?.(l.address);
      const socket = await l.accept();
      await l.close();
      return { source: limited(chunks(socket), `the connection from ${socket.remoteAddress}:${socket.remotePort}`), socket, close: () => socket.destroy() };
    }
  }
}

export interface OutputOpen {
  readonly writer: StreamWriter;
  /** The TCP connection, for a tcp endpoint. */
  readonly socket?: Socket;
  /**
   * Success: end the output (a socket is ended after the last byte; a file is flushed and renamed from its
   * `.partial` name to the real one).
   */
  commit(): Promise<void>;
  /**
   * Failure: a socket is destroyed (the peer sees the stream break off); a file keeps its `.partial` name
   * (or is removed with `remove: true`). Returns what was left on disk, if anything.
   */
  abort(options?: { remove?: boolean }): Promise<string | undefined>;
}

export interface OpenOutputOptions {
  /** Copy each chunk before queueing it (default true; see StreamWriter). */
  readonly copy?: boolean;
  /** Suffix of a file while it is written (default ".partial"). */
  readonly partialSuffix?: string;
  readonly connectTimeoutMs?: number;
  /**
   * Bytes Node may queue before write() waits (default: Node's 16 KiB). A producer that writes big pieces
   * and does work between them (e.g. checks them) keeps the connection busy meanwhile with about two pieces.
   */
  readonly highWaterMark?: number;
}

/**
 * Open an endpoint to write a migration to: a tcp endpoint connects; a file is written under `PATH.partial`
 * and renamed to PATH only by commit(), so a failed run never leaves a complete-looking file; `-` is stdout.
 */
export async function openOutput(endpoint: Endpoint | string, options: OpenOutputOptions = {}): Promise<OutputOpen> {
  const e = typeof endpoint === "string" ? parseEndpoint(endpoint) : endpoint;
  const copy = options.copy ?? true;
  switch (e.kind) {
    case "stdio": {
      const writer = new StreamWriter(process.stdout, { copy, name: "stdout" });
      return {
        writer,
        commit: () => writer.flush(),
        abort: async () => undefined,
      };
    }
    case "file": {
      const partial = e.path + (options.partialSuffix ?? ".partial");
      let fd: number;
      try {
        // a new file: never written through a link planted at the .partial name
        fd = createOutputFile(partial);
      } catch (err) {
        throw ioError("cannot write", err, partial);
      }
      const w = createWriteStream(partial, { fd });
      const writer = new StreamWriter(w, { copy, name: partial });
      return {
        writer,
        async commit() {
          await writer.end();
          try {
            renameSync(partial, e.path);
          } catch (err) {
            throw ioError("cannot rename the finished output", err, `${partial} -> ${e.path}`);
          }
        },
        async abort(o = {}) {
          await writer.end().catch(() => undefined);
          if (o.remove) {
            rmSync(partial, { force: true });
            return undefined;
          }
          return partial;
        },
      };
    }
    case "tcp": {
      const socket = await connectTcp({
        host: e.host,
        port: e.port,
        ...(options.connectTimeoutMs !== undefined ? { timeoutMs: options.connectTimeoutMs } : {}),
        ...(options.highWaterMark !== undefined ? { writableHighWaterMark: options.highWaterMark } : {}),
      });
      const writer = new StreamWriter(socket, { copy, name: formatEndpoint(e) });
      return {
        writer,
        socket,
        commit: () => writer.end(),
        async abort() {
          socket.destroy();
          return undefined;
        },
      };
    }
  }
}
