// An incoming live migration over TCP (Node): one listener for the main stream and any multifd channels. Each
// connection is told apart by its first bytes (QEMU's QEVM magic, the multifd init magic; anything else is
// refused). A multifd migration's channels are joined with its main stream (MultifdJoin) into one ordinary
// stream, handed out in order; without channels the main stream's bytes are handed out as they are. Every
// connection can be relayed to a forward target (main first, then the channels: QEMU 7.2 takes the first
// connection as the main stream) and kept raw. docs/live-migration.md, "multifd".
import { createServer, type Server, type Socket } from "node:net";
import { type MultifdChannelInput, MultifdJoin, type MultifdJoinReport } from "../convert/multifd-join.js";
import { joinChunks } from "../io/chunks.js";
import type { StreamCodecs } from "../io/codec.js";
import { VmstreamError } from "../io/errors.js";
import { QEMU_VM_FILE_MAGIC } from "../savevm/constants.js";
import { MULTIFD_MAGIC, type MultifdCompression } from "../sections/ram/multifd.js";
import type { StreamDecoderOptions } from "../sections/stream.js";
import { connectTcp, DEFAULT_HOST, formatEndpoint, StreamWriter } from "./transport.js";

export interface IncomingOptions {
  /** Multifd channels expected (QEMU's multifd-channels): the migration is multifd from the start. */
  readonly channels?: number;
  readonly compression?: MultifdCompression;
  /** Decompressors for zlib / zstd channels (vmstream/node: nodeStreamCodecs). */
  readonly codecs?: StreamCodecs;
  /** Decoder options of the join (inflate for COMPRESS_PAGE...). */
  readonly decode?: StreamDecoderOptions;
  /** Relay every connection, byte for byte, to this target. */
  readonly forward?: { readonly host: string; readonly port: number };
  /** Keep each connection's bytes: called once per connection with "main" or "channel-N". */
  readonly raw?: (name: string) => StreamWriter;
  /** Notes for the operator (a refused connection...). */
  readonly say?: (line: string) => void;
  /** Output bytes queued before the connections are paused (default 8 MiB). */
  readonly maxQueued?: number;
  /** Keep each connection writable after its peer's end (a return path answers on the main stream's). */
  readonly allowHalfOpen?: boolean;
  /**
   * Fail the migration when no byte arrives on any connection for this long, counted from the first connection
   * (waiting for a peer is not limited); time the consumer or the sinks hold the data back is not counted.
   * Default: no limit.
   */
  readonly idleTimeoutMs?: number;
}

/**
 * Main-stream bytes, and time, before deciding that no channel will come: QEMU's source connects its channels
 * (and they send their first packets) before its main stream sends more than its first buffer (32 KiB).
 */
const DECIDE_BYTES = 64 << 10;
const DECIDE_MS = 500;
/**
 * Bytes read from a connection the join told to wait before it is paused. A paused socket does not notice its
 * peer going away, so a waiting connection is still read for a while: a source that dies while the main stream
 * waits at a sync point is seen on every connection.
 */
const WAIT_BYTES = 64 << 20;
/** A connection that has sent nothing after this long is dropped (until then the main stream may wait for it). */
const SILENT_MS = 5000;
/** Bytes queued towards a forward target or a raw file before that connection is paused. */
const SINK_BYTES = 4 << 20;

type Kind = "main" | "channel";

interface Conn {
  readonly socket: Socket;
  readonly index: number;
  /** The peer's HOST:PORT (kept: a destroyed socket forgets it). */
  readonly peer: string;
  kind: Kind | undefined;
  name: string | undefined;
  head: Uint8Array[];
  headBytes: number;
  bytes: number;
  paused: boolean;
  ended: boolean;
  channel: MultifdChannelInput | undefined;
  /** Bytes read while the join told this connection to wait (kept in memory; past WAIT_BYTES it is paused). */
  waitBytes: number;
  /** Bytes handed to sinks (forward, raw) and not yet taken by them. */
  sinkPending: number;
  forward: StreamWriter | undefined;
  forwardSocket: Socket | undefined;
  forwardReady: Promise<void> | undefined;
  raw: StreamWriter | undefined;
  /** Writes towards the sinks, in order. */
  chain: Promise<void>;
}

export class IncomingMigration {
  readonly address: string;
  /** The port listened on (the real one when asked for port 0). */
  readonly port: number;
  /** "undecided" until a channel connects, or the main stream is past its first 64 KiB (or 500 ms, or ended) with no connection that may still be a channel. */
  mode: "undecided" | "single" | "multifd" = "undecided";
  /** Bytes relayed to the forward target, all connections. */
  forwardBytes = 0;
  private readonly conns: Conn[] = [];
  private main: Conn | undefined;
  private join: MultifdJoin | undefined;
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private readonly queue: Uint8Array[] = [];
  private queued = 0;
  private done = false;
  private failure: unknown;
  private joinReport: MultifdJoinReport | undefined;
  private wake: (() => void) | undefined;
  /** Settles once the main stream's forward connection is up: the channels' connect after it. */
  private readonly mainForwarded: { promise: Promise<void>; ok: () => void; fail: (e: unknown) => void };
  private mainEnded = false;
  private graceTimer: ReturnType<typeof setTimeout> | undefined;
  private decideTimer: ReturnType<typeof setTimeout> | undefined;
  private decideAfter = false;
  private sinkFailure: VmstreamError | undefined;
  private readonly maxQueued: number;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** performance.now() of the last byte received, or of the last time the data waited for us, not the peers. */
  private lastActive = 0;

  private constructor(
    private readonly server: Server,
    host: string,
    port: number,
    private readonly options: IncomingOptions,
  ) {
    this.address = formatEndpoint({ kind: "tcp", host, port });
    this.port = port;
    this.maxQueued = options.maxQueued ?? 8 << 20;
    let ok!: () => void;
    let fail!: (e: unknown) => void;
    const promise = new Promise<void>((a, b) => {
      ok = a;
      fail = b;
    });
    promise.catch(() => undefined);
    this.mainForwarded = { promise, ok, fail };
    if (options.channels !== undefined) this.startJoin();
  }

  /** Listen on HOST:PORT (port 0: a free one). */
  static listen(endpoint: { host?: string; port: number }, options: IncomingOptions = {}): Promise<IncomingMigration> {
    const host = endpoint.host ?? DEFAULT_HOST;
    return new Promise((ok, fail) => {
      const server = createServer();
      server.once("error", (e) => fail(new VmstreamError("IO", "cannot listen", { detail: `tcp:${host}:${endpoint.port}: ${e.message}`, cause: e })));
      server.listen({ host, port: endpoint.port, exclusive: true }, () => {
        const a = server.address();
        const m = new IncomingMigration(server, host, typeof a === "object" && a ? a.port : endpoint.port, options);
        server.on("connection", (s) => m.connection(s));
        ok(m);
      });
    });
  }

  /** The migration as one ordinary stream, in order. Throws the first error (a broken channel, a refused join). */
  get source(): AsyncIterable<Uint8Array> {
    return this.chunks();
  }

  /** The main stream's connection, once it came (for a return path). */
  get mainSocket(): Socket | undefined {
    return this.main?.socket;
  }

  /** The join's report of a multifd migration (after the main stream ended). */
  get multifd(): MultifdJoinReport | undefined {
    return this.joinReport;
  }

  /** Bytes received so far, every connection. */
  get bytes(): number {
    return this.conns.reduce((n, c) => n + c.bytes, 0);
  }

  /** Connections seen: main, channels, refused. */
  get connections(): { main: number; channels: number; refused: number } {
    const count = (k: Kind) => this.conns.filter((c) => c.kind === k).length;
    return { main: count("main"), channels: count("channel"), refused: this.conns.filter((c) => c.kind === undefined && c.socket.destroyed).length };
  }

  /**
   * Wait until every byte received went to the sinks (raw files, forward connections), then end the forward
   * connections cleanly (after a migration that ended well). Throws what a sink met.
   */
  async finishSinks(): Promise<void> {
    for (const c of this.conns) {
      await c.chain;
      await c.forwardReady?.catch(() => undefined);
      if (c.forward) await c.forward.end();
    }
    if (this.sinkFailure) throw this.sinkFailure;
  }

  /** Stop everything: the listener, every connection, every forward connection. */
  close(): void {
    if (this.graceTimer !== undefined) clearTimeout(this.graceTimer);
    if (this.decideTimer !== undefined) clearTimeout(this.decideTimer);
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.server.close();
    for (const c of this.conns) {
      c.socket.destroy();
      c.forwardSocket?.destroy();
    }
    this.join?.dispose();
  }

  private async *chunks(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const c = this.queue.shift();
      if (c) {
        this.queued -= c.length;
        // the idle clock counts from the moment the data no longer waits for the consumer
        if (this.queue.length === 0) this.lastActive = performance.now();
        this.updateAll();
        yield c;
        continue;
      }
      if (this.failure !== undefined) throw this.failure;
      if (this.done) return;
      await new Promise<void>((ok) => {
        this.wake = ok;
      });
    }
  }

  private signal(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private emit(chunks: Uint8Array[]): void {
    for (const c of chunks) {
      if (c.length === 0) continue;
      this.queue.push(c);
      this.queued += c.length;
    }
    if (chunks.length > 0) this.signal();
  }

  private fail(e: unknown): void {
    if (this.failure !== undefined || this.done) return;
    this.failure = VmstreamError.wrap(e, {});
    this.signal();
    this.updateAll();
  }

  private finish(): void {
    this.done = true;
    this.server.close();
    this.signal();
  }

  // ---------------------------------------------------------------------------------------------- connections

  private connection(socket: Socket): void {
    if (this.done || this.failure !== undefined) {
      this.options.say?.(`refused connection from ${peerOf(socket)}: the migration is over`);
      socket.destroy();
      return;
    }
    this.lastActive = performance.now();
    if (this.conns.length === 0) this.watchIdle();
    const c: Conn = {
      socket,
      index: this.conns.length,
      peer: peerOf(socket),
      kind: undefined,
      name: undefined,
      head: [],
      headBytes: 0,
      bytes: 0,
      paused: false,
      ended: false,
      channel: undefined,
      waitBytes: 0,
      sinkPending: 0,
      forward: undefined,
      forwardSocket: undefined,
      forwardReady: undefined,
      raw: undefined,
      chain: Promise.resolve(),
    };
    this.conns.push(c);
    if (this.options.allowHalfOpen) socket.allowHalfOpen = true;
    // the main stream waits at sync points while a connection has not said what it is: not for ever
    const silent = setTimeout(() => {
      if (c.kind === undefined && !socket.destroyed) this.refuse(c, `nothing received within ${SILENT_MS} ms`);
    }, SILENT_MS);
    silent.unref();
    socket.on("data", (d: Buffer) => this.data(c, new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
    socket.on("end", () => this.ended(c));
    socket.on("error", (e) => this.broken(c, e));
    socket.on("close", () => {
      if (!c.ended) this.broken(c, new Error("the connection closed"));
    });
  }

  private data(c: Conn, d: Uint8Array): void {
    c.bytes += d.length;
    this.lastActive = performance.now();
    if (c.name === undefined) {
      c.head.push(d);
      c.headBytes += d.length;
      if (!this.classify(c)) return;
      const head = c.head;
      c.head = [];
      for (const h of head) this.take(c, h);
      return;
    }
    this.take(c, d);
  }

  /** Decide what connection `c` is from its first bytes; false while too few bytes are there. */
  private classify(c: Conn): boolean {
    const need = c.kind === "channel" ? 25 : 4;
    if (c.headBytes < need) return false;
    const first = c.head.length === 1 ? c.head[0]! : joinChunks(c.head, c.headBytes);
    c.head = [first];
    const magic = new DataView(first.buffer, first.byteOffset, first.byteLength).getUint32(0);
    if (c.kind === undefined) {
      if (magic === QEMU_VM_FILE_MAGIC) {
        if (this.main) return this.refuse(c, "a migration is already active (this is a second main stream)");
        c.kind = "main";
        this.main = c;
      } else if (magic === MULTIFD_MAGIC) {
        if (this.mode === "single") return this.refuse(c, "a multifd channel after the main stream went on without channels (use --multifd-channels N)");
        c.kind = "channel";
        if (first.length < 25) return false;
      } else return this.refuse(c, `neither a migration stream nor a multifd channel (first bytes ${hex(first.subarray(0, 8))})`);
    }
    c.name = c.kind === "main" ? "main" : `channel-${first[24]}`;
    if (this.options.raw) c.raw = this.options.raw(c.name);
    if (this.options.forward) this.startForward(c);
    if (c.kind === "channel") {
      if (this.mode === "undecided") this.startJoin(c);
      else c.channel = this.join!.channel();
    }
    this.pumpJoin();
    return true;
  }

  private refuse(c: Conn, why: string): false {
    this.options.say?.(`refused connection ${c.index} from ${c.peer}: ${why}`);
    c.head = [];
    c.socket.destroy();
    this.pumpJoin();
    return false;
  }

  /**
   * The idle timeout: checked when it would expire, so that a busy migration costs no timer per chunk. Data held
   * back by us (queued for the consumer, or for a sink) is not the peers' silence: the clock starts again.
   */
  private watchIdle(): void {
    const limit = this.options.idleTimeoutMs;
    if (limit === undefined || limit <= 0) return;
    const check = () => {
      this.idleTimer = undefined;
      if (this.done || this.failure !== undefined) return;
      const now = performance.now();
      if (this.queued > 0 || this.conns.some((c) => c.sinkPending > 0)) this.lastActive = now;
      const left = this.lastActive + limit - now;
      if (left > 0) {
        this.idleTimer = setTimeout(check, left);
        return;
      }
      const where = this.main
        ? `the main stream at byte ${this.main.bytes}${this.join ? `, ${this.conns.filter((c) => c.kind === "channel").length} channels` : ""}`
        : `no migration stream came (${this.conns.length} connection${this.conns.length === 1 ? "" : "s"}, the first from ${this.conns[0]!.peer})`;
      this.fail(new VmstreamError("IO", "the migration stalled", { detail: `nothing received for ${limit / 1000} s (idle timeout); ${where}` }));
    };
    this.idleTimer = setTimeout(check, limit);
  }

  /** The join may go on, or the migration be decided (a connection said what it is, or went away). */
  private pumpJoin(): void {
    this.decide();
    if (this.mainEnded) this.endMain();
    if (!this.join || this.failure !== undefined) return;
    try {
      this.join.pump();
      this.emit(this.join.output());
    } catch (e) {
      this.fail(e);
    }
    this.updateAll();
  }

  /** Bytes of a classified connection: to the sinks, then to the join or the output. */
  private take(c: Conn, d: Uint8Array): void {
    this.toSinks(c, d);
    if (this.failure !== undefined) return;
    c.waitBytes = this.joinWaits(c) ? c.waitBytes + d.length : 0;
    try {
      if (c.kind === "channel") c.channel!.push(d);
      else if (this.mode === "multifd") this.join!.pushMain(d);
      else if (this.mode === "single") this.emit([d]);
      else {
        this.held.push(d);
        this.heldBytes += d.length;
        this.decide();
        if (this.mode === "undecided" && this.decideTimer === undefined) {
          this.decideTimer = setTimeout(() => {
            this.decideAfter = true;
            this.decide();
          }, DECIDE_MS);
        }
      }
      if (this.join) this.emit(this.join.output());
    } catch (e) {
      this.fail(e);
    }
    this.update(c);
  }

  /** Multifd from now on: `first` (a channel that just said what it is) joins before the main stream's bytes go in. */
  private startJoin(first?: Conn): void {
    this.mode = "multifd";
    this.join = new MultifdJoin({
      ...(this.options.decode ? { decode: this.options.decode } : {}),
      ...(this.options.codecs ? { codecs: this.options.codecs } : {}),
      ...(this.options.compression ? { compression: this.options.compression } : {}),
      ...(this.options.channels !== undefined ? { channels: this.options.channels } : {}),
      moreChannels: () => this.conns.some(undecided),
    });
    this.join.onResume = () => queueMicrotask(() => this.updateAll());
    if (first) first.channel = this.join.channel();
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const h of held) this.join.pushMain(h);
  }

  /**
   * An ordinary migration once the main stream is past its first 64 KiB, or 500 ms old, or ended, with no other
   * connection that might still turn out to be a channel.
   */
  private decide(): void {
    if (this.mode !== "undecided" || !this.main) return;
    if (this.conns.some(undecided)) return;
    if (this.heldBytes > DECIDE_BYTES || this.decideAfter || this.main.ended) this.goSingle();
  }

  private goSingle(): void {
    if (this.mode !== "undecided") return;
    this.mode = "single";
    this.updateAll();
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    this.emit(held);
  }

  private ended(c: Conn): void {
    if (c.ended) return;
    c.ended = true;
    if (c.forwardReady) c.chain = c.chain.then(() => c.forward?.end()).catch(() => undefined);
    if (c.kind === undefined) {
      if (c.headBytes > 0) this.options.say?.(`connection ${c.index} ended after ${c.headBytes} bytes, before it said what it is`);
      this.pumpJoin();
      return;
    }
    if (this.failure !== undefined) return;
    try {
      if (c.kind === "channel") {
        c.channel!.end();
        if (this.join) this.emit(this.join.output());
        if (this.mainEnded) this.endMain();
        return;
      }
      this.mainEnded = true;
      this.decide();
      this.endMain();
    } catch (e) {
      this.fail(e);
    }
  }

  /**
   * After the main stream's end: QEMU's source closes its channels before the main stream, so wait for their
   * ends (a little while at most: a channel that neither ends nor fails is judged as it is).
   */
  private endMain(): void {
    if (this.done || this.failure !== undefined || this.mode === "undecided") return;
    // channels still open, or connections that may still turn out to be channels
    const open = this.conns.some((c) => (c.kind === "channel" && !c.ended) || undecided(c));
    if (this.mode === "multifd" && open) {
      this.graceTimer ??= setTimeout(() => this.finishMain(), 2000);
      return;
    }
    this.finishMain();
  }

  private finishMain(): void {
    if (this.graceTimer !== undefined) clearTimeout(this.graceTimer);
    if (this.done || this.failure !== undefined) return;
    try {
      if (this.mode === "multifd") {
        const r = this.join!.end();
        this.joinReport = r.report;
        this.emit(r.chunks);
      }
      this.finish();
    } catch (e) {
      this.fail(e);
    }
  }

  private broken(c: Conn, e: unknown): void {
    if (c.ended || this.done) return;
    c.ended = true;
    c.forwardSocket?.destroy();
    if (c.kind === undefined) {
      this.pumpJoin();
      return;
    }
    const what = c.kind === "main" ? "the main stream's connection" : `multifd ${c.name!.replace("-", " ")}'s connection`;
    this.fail(new VmstreamError("IO", `${what} failed`, { offset: c.bytes, detail: e instanceof Error ? e.message : String(e) }));
  }

  // ---------------------------------------------------------------------------------------------- sinks

  private startForward(c: Conn): void {
    const f = this.options.forward!;
    const connect = async () => {
      const s = await connectTcp({ host: f.host, port: f.port, timeoutMs: 10_000 });
      c.forwardSocket = s;
      c.forward = new StreamWriter(s, { copy: false, name: `${formatEndpoint({ kind: "tcp", ...f })} (${c.name})` });
      if (c.kind === "main") {
        // QEMU's return path goes back to the source, unchanged
        s.on("data", (d: Buffer) => {
          if (!c.socket.destroyed && c.socket.writable) c.socket.write(d);
        });
      }
      s.on("error", () => undefined);
    };
    if (c.kind === "main") {
      c.forwardReady = connect();
      c.forwardReady.then(this.mainForwarded.ok, this.mainForwarded.fail);
    } else c.forwardReady = this.mainForwarded.promise.then(connect);
    c.forwardReady.catch((e) => {
      this.sinkFailure ??= VmstreamError.wrap(e, {}, "IO");
      c.socket.destroy();
    });
  }

  private toSinks(c: Conn, d: Uint8Array): void {
    const raw = c.raw;
    const ready = c.forwardReady;
    if (!raw && !ready) return;
    c.sinkPending += d.length;
    // one chain per connection keeps its bytes in order towards each sink
    c.chain = c.chain
      .then(async () => {
        const writes: Promise<void>[] = [];
        if (raw) writes.push(raw.write(d));
        if (ready) {
          await ready;
          writes.push(
            c.forward!.write(d).then(() => {
              this.forwardBytes += d.length;
            }),
          );
        }
        await Promise.all(writes);
      })
      .catch((e) => {
        this.sinkFailure ??= VmstreamError.wrap(e, {}, "IO");
      })
      .finally(() => {
        c.sinkPending -= d.length;
        if (c.sinkPending === 0) this.lastActive = performance.now();
        this.update(c);
      });
  }

  // ---------------------------------------------------------------------------------------------- flow

  private shouldPause(c: Conn): boolean {
    if (c.sinkPending > SINK_BYTES) return true;
    if (this.failure !== undefined || this.done) return false;
    if (this.queued > this.maxQueued) return true;
    return this.joinWaits(c) && c.waitBytes > WAIT_BYTES;
  }

  private joinWaits(c: Conn): boolean {
    if (c.kind === "channel") return c.channel?.waiting ?? false;
    if (c.kind === "main") return this.join?.mainWaiting ?? false;
    return false;
  }

  private update(c: Conn): void {
    if (c.socket.destroyed) return;
    const p = this.shouldPause(c);
    if (p && !c.paused) c.socket.pause();
    else if (!p && c.paused) c.socket.resume();
    c.paused = p;
  }

  private updateAll(): void {
    for (const c of this.conns) this.update(c);
  }
}

/** `HOST:PORT` of a connection's peer (`[v6]:PORT`). */
function peerOf(s: Socket): string {
  const host = s.remoteAddress ?? "?";
  return `${host.includes(":") ? `[${host}]` : host}:${s.remotePort ?? "?"}`;
}

/** A connection that has not said what it is yet, and still may. */
const undecided = (c: Conn): boolean => c.kind === undefined && !c.socket.destroyed && !c.ended;

const hex = (b: Uint8Array): string => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");
