// An outgoing multifd migration over TCP (Node): the main stream's connection first (QEMU 7.2's destination
// takes the first connection as the main stream), then one connection per channel; each written with
// backpressure, all at once, so that no connection waits for another (the destination holds the main stream at
// a sync point until every channel's SYNC is in). Closing follows QEMU's source: the channels, then the main
// stream. runLiveSourceTcp: the live source engine over them. docs/live-migration.md, "multifd".
import type { Socket } from "node:net";
import type { MultifdOutput } from "../convert/multifd-split.js";
import { VmstreamError } from "../io/errors.js";
import type { ChannelOutput } from "../sections/ram/multifd-source.js";
import { type LiveOutcome, type LiveSourceOptions, runLiveSource } from "./live.js";
import { MultifdChannelWorkers, type MultifdChannelWorkersOptions } from "./multifd-workers.js";
import type { MigrationSource } from "./source.js";
import { connectTcp, formatEndpoint, parseEndpoint, StreamWriter } from "./transport.js";

export class MultifdConnections {
  private constructor(
    readonly main: StreamWriter,
    readonly channels: readonly StreamWriter[],
    private readonly sockets: readonly Socket[],
  ) {}

  /** Connect the main stream, then `channels` channel connections, to HOST:PORT. */
  static async open(
    target: { host: string; port: number },
    channels: number,
    options: { timeoutMs?: number; highWaterMark?: number } = {},
  ): Promise<MultifdConnections> {
    const where = formatEndpoint({ kind: "tcp", ...target });
    const sockets: Socket[] = [];
    const connect = async (name: string) => {
      const s = await connectTcp({
        host: target.host,
        port: target.port,
        ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
        ...(options.highWaterMark !== undefined ? { writableHighWaterMark: options.highWaterMark } : {}),
      });
      sockets.push(s);
      return new StreamWriter(s, { copy: false, name: `${where} (${name})` });
    };
    try {
      const main = await connect("main");
      const chans: StreamWriter[] = [];
      for (let i = 0; i < channels; i++) chans.push(await connect(`channel ${i}`));
      return new MultifdConnections(main, chans, sockets);
    } catch (e) {
      for (const s of sockets) s.destroy();
      throw e;
    }
  }

  /** The main stream's socket (a return path, as QEMU's, comes back on it). */
  get mainSocket(): Socket {
    return this.sockets[0]!;
  }

  /**
   * The transport of runLiveSource over these connections: the main stream, the channels (no copy: the driver
   * copies what views guest memory; `written` once the socket took a chunk), the end as QEMU's source ends.
   */
  liveTransport(): Pick<LiveSourceOptions, "write" | "writeChannel" | "end"> {
    return {
      write: (c, written) => this.main.write(c, written),
      writeChannel: (i, c, written) => this.channel(i).write(c, written),
      end: () => this.end(),
    };
  }

  /** Channel `i`'s connection. */
  channel(i: number): StreamWriter {
    const w = this.channels[i];
    if (!w) throw new VmstreamError("RANGE", "no such multifd channel connection", { detail: `${i} of ${this.channels.length}` });
    return w;
  }

  /** Bytes handed to all connections. */
  get bytes(): number {
    return this.main.bytes + this.channels.reduce((n, c) => n + c.bytes, 0);
  }

  /** Write one round of output: every connection's chunks, all connections at once. */
  async write(out: MultifdOutput): Promise<void> {
    const one = async (w: StreamWriter, chunks: readonly Uint8Array[]) => {
      for (const c of chunks) await w.write(c);
    };
    await Promise.all([one(this.main, out.main), ...out.channels.map((c, i) => one(this.channels[i]!, c))]);
  }

  /** A clean end: the channels, then the main stream. */
  async end(): Promise<void> {
    await Promise.all(this.channels.map((c) => c.end()));
    await this.main.end();
  }

  /** Break every connection off (the destination sees the migration fail). */
  abort(): void {
    for (const s of this.sockets) s.destroy();
  }

  /** The first error of any connection. */
  get error(): VmstreamError | undefined {
    return this.main.error ?? this.channels.find((c) => c.error)?.error;
  }
}

/** Where runLiveSourceTcp connects: `tcp:HOST:PORT` (or `HOST:PORT`), or host and port. */
export type TcpTarget = string | { readonly host?: string; readonly port: number };

function tcpTarget(t: TcpTarget): { host: string; port: number } {
  if (typeof t !== "string") return { host: t.host ?? "127.0.0.1", port: t.port };
  const e = parseEndpoint(t.startsWith("tcp:") ? t : `tcp:${t}`);
  if (e.kind !== "tcp") throw new VmstreamError("RANGE", "a live migration target is tcp:HOST:PORT", { detail: t });
  return { host: e.host, port: e.port };
}

/**
 * runLiveSource into a destination listening at `target` (a QEMU `-incoming`, `vmstream receive`): one
 * connection, or with a multifd source the main stream's and then one per channel (connected once the source
 * is built, before its first bytes). `channelWorkers`: each channel on a worker thread of its own
 * (the kernels' memory must be shared): a MultifdChannelWorkers to reuse its threads (start() them ahead), or
 * true / options for threads started and stopped here. Every connection is closed when the migration fails.
 */
export async function runLiveSourceTcp(
  target: TcpTarget,
  create: (sink: (chunk: Uint8Array) => void, channelSink: ChannelOutput) => MigrationSource,
  options: Omit<LiveSourceOptions, "write" | "writeChannel" | "channelPort" | "end"> & {
    readonly connectTimeoutMs?: number;
    readonly channelWorkers?: boolean | MultifdChannelWorkersOptions | MultifdChannelWorkers;
  } = {},
): Promise<LiveOutcome> {
  const where = tcpTarget(target);
  let conns: Promise<MultifdConnections> | undefined;
  let opened: MultifdConnections | undefined;
  const connected = () => {
    if (!conns) throw new VmstreamError("STATE", "no connection");
    return conns;
  };
  const { connectTimeoutMs, channelWorkers, ...live } = options;
  const timeout = connectTimeoutMs !== undefined ? { timeoutMs: connectTimeoutMs } : {};
  // a MultifdChannelWorkers of the caller's is reused (its threads kept); one made here is closed at the end
  const own = channelWorkers === true || (channelWorkers !== undefined && channelWorkers !== false && !(channelWorkers instanceof MultifdChannelWorkers));
  const workers =
    channelWorkers instanceof MultifdChannelWorkers
      ? channelWorkers
      : own
        ? new MultifdChannelWorkers(channelWorkers === true ? {} : (channelWorkers as MultifdChannelWorkersOptions))
        : undefined;
  try {
    return await runLiveSource(
      (sink, channelSink) => {
        const source = create(sink, channelSink);
        const channels = source.options.multifd?.channels ?? 0;
        // QEMU's destination takes the first connection as the main stream: the channels connect after it
        conns = MultifdConnections.open(where, workers ? 0 : channels, timeout).then(async (c) => {
          opened = c;
          if (workers && channels > 0) await workers.connect(where, timeout);
          return c;
        });
        conns.catch(() => undefined);
        return source;
      },
      {
        ...live,
        ...(workers ? { channelPort: workers } : {}),
        // writes wait for the connections (made while setup runs); in order, as they are chained in order
        write: (c, written) => connected().then((m) => m.main.write(c, written)),
        writeChannel: (i, c, written) => connected().then((m) => m.channel(i).write(c, written)),
        end: () =>
          connected().then(async (m) => {
            await workers?.end();
            await m.end();
          }),
      },
    );
  } catch (e) {
    opened?.abort();
    throw e;
  } finally {
    if (own) await workers?.close();
  }
}
