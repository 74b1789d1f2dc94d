// An outgoing multifd migration over TCP (Node): the main stream's connection first (QEMU 7.2's destination
// takes the first connection as the main stream), then one connection per channel; each written with
// backpressure, all at once, so that no connection waits for another (the destination holds the main stream at
// a sync point until every channel's SYNC is in). Closing follows QEMU's source: the channels, then the main
// stream. docs/live-migration.md, "multifd".
import type { Socket } from "node:net";
import type { MultifdOutput } from "../convert/multifd-split.js";
import type { VmstreamError } from "../io/errors.js";
import { connectTcp, formatEndpoint, StreamWriter } from "./transport.js";

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
