// The channels of the ram section's multifd mode (wire-format §5.6): pages queued round robin into per-channel
// packets (a new packet at a new block or when one is full), written with their headers as they fill, and at a
// sync point every channel's pending packet, then a SYNC packet on each, handed to the channel sink. `none`
// pages go out as views of the kernels' memory (zero copy). docs/live-migration.md, "multifd". Browser-safe.
import type { StreamCodecs } from "../../io/codec.js";
import { VmstreamError } from "../../io/errors.js";
import { ByteWriter } from "../../io/writer.js";
import type { Kernels } from "../../kernels/types.js";
import { MultifdChannelWriter, type MultifdCompression, multifdHeaderSize, multifdInitBytes, multifdPagesPerPacket } from "./multifd.js";

/** A source's multifd settings (QEMU's multifd capability and parameters). */
export interface MultifdSourceOptions {
  /** Channels (QEMU's multifd-channels), 1..255. */
  readonly channels: number;
  /** Default "none". */
  readonly compression?: MultifdCompression;
  /** zlib / zstd level (QEMU's multifd-zlib-level / multifd-zstd-level; default 1). */
  readonly level?: number;
  /** Compressors for zlib / zstd (vmstream/node: nodeStreamCodecs). */
  readonly codecs?: StreamCodecs;
  /** The VM UUID of the init messages (16 bytes; default all zero, what a QEMU without -uuid expects). */
  readonly uuid?: Uint8Array;
}

/** Receives channel `channel`'s bytes in order. A chunk may view the kernels' memory (guest RAM): copy it before the guest runs again. */
export type ChannelSink = (channel: number, chunk: Uint8Array) => void;

/** One packet of a channel as a description: its fields, and its pages as runs in the kernels' memory. */
export interface MultifdPacketJob {
  readonly sync: boolean;
  readonly normalPages: number;
  readonly packetNum: number;
  /** The block name's bytes (when there are pages). */
  readonly block?: Uint8Array;
  /** The page offsets, `normalPages` of them. */
  readonly offsets: Float64Array;
  /** Runs of consecutive pages in the memory, in offset order: start, bytes, start, bytes, ... */
  readonly runs: Float64Array;
}

/** What a packet port is told first: the channels to make, and the memory the pages are read from. */
export interface MultifdPortSetup {
  readonly channels: number;
  readonly pageSize: number;
  readonly compression: MultifdCompression;
  readonly level?: number;
  /** The kernels' memory (shared, for a port whose channels run on other threads). */
  readonly memory: WebAssembly.Memory;
}

/**
 * Channels made and written elsewhere, e.g. by one worker thread per channel (migration/multifd-workers.ts)
 * that reads the pages out of the shared kernels' memory and owns the channel's connection and compression
 * stream: the engine hands each packet over as a description, in order.
 */
export interface MultifdPacketPort {
  /** Called once, before anything else. */
  open(setup: MultifdPortSetup): void;
  /** Channel `channel`'s bytes as they are (its init message). */
  raw(channel: number, bytes: Uint8Array): void;
  packet(channel: number, job: MultifdPacketJob): void;
}

/** Where the engine's channels go: bytes to a sink, or packet descriptions to a port. */
export type ChannelOutput = ChannelSink | MultifdPacketPort;

interface Channel {
  readonly out: ByteWriter;
  /** Header and compression (none with a port: the port's end makes the bytes). */
  readonly writer: MultifdChannelWriter | undefined;
  /** Block of the pending packet (identity of the caller's name bytes). */
  name: Uint8Array | undefined;
  /** Page offsets of the pending packet, the first `pages` used. */
  readonly offsets: Float64Array;
  pages: number;
  /** Pending page data as runs of consecutive pages in the kernels' memory: start, bytes. */
  readonly runStart: number[];
  readonly runBytes: number[];
}

export class MultifdPageSender {
  readonly channels: number;
  readonly compression: MultifdCompression;
  readonly headerSize: number;
  readonly perPacket: number;
  /** Bytes as QEMU counts them against its rate limit: init messages, headers, pages uncompressed. */
  counted = 0;
  /** Bytes handed to the sink (with a port: what is counted). */
  wire = 0;
  packets = 0;
  pages = 0;
  private readonly chans: Channel[] = [];
  private readonly sink: ChannelSink | undefined;
  private readonly port: MultifdPacketPort | undefined;
  private rr = 0;
  private packetNum = 0;

  constructor(
    private readonly k: Kernels,
    private readonly pageSize: number,
    private readonly options: MultifdSourceOptions,
    output: ChannelOutput,
  ) {
    const n = options.channels;
    if (!Number.isInteger(n) || n < 1 || n > 255) throw new VmstreamError("RANGE", "multifd channels: 1..255", { detail: String(n) });
    if (options.uuid !== undefined && options.uuid.length !== 16)
      throw new VmstreamError("RANGE", "a multifd uuid has 16 bytes", { detail: `${options.uuid.length}` });
    this.channels = n;
    this.compression = options.compression ?? "none";
    if (typeof output === "function") this.sink = output;
    else {
      if (!["none", "zlib", "zstd"].includes(this.compression))
        throw new VmstreamError("RANGE", "multifd compression: none, zlib or zstd", { detail: String(this.compression) });
      this.port = output;
      const level = options.level !== undefined ? { level: options.level } : {};
      output.open({ channels: n, pageSize, compression: this.compression, memory: k.memory, ...level });
    }
    this.headerSize = multifdHeaderSize(pageSize);
    this.perPacket = multifdPagesPerPacket(pageSize);
    const codec = { ...(options.codecs ? { codecs: options.codecs } : {}), ...(options.level !== undefined ? { level: options.level } : {}) };
    try {
      for (let i = 0; i < n; i++) {
        this.chans.push({
          out: new ByteWriter({ initialCapacity: 1 << 16 }),
          writer: this.port ? undefined : new MultifdChannelWriter(pageSize, this.compression, codec),
          name: undefined,
          offsets: new Float64Array(this.perPacket),
          pages: 0,
          runStart: [],
          runBytes: [],
        });
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** Every channel's init message (its first bytes), handed out at once. */
  init(): void {
    for (let i = 0; i < this.channels; i++) {
      const init = multifdInitBytes(i, this.options.uuid);
      if (this.port) this.port.raw(i, init);
      else this.chans[i]!.out.bytes(init);
      this.counted += 64;
    }
    this.handOut();
  }

  /**
   * Queue `count` consecutive pages at `ptr` (kernels' memory) of block `name` (the same bytes object for every
   * page of a block), the first at byte `offset` in it. Returns the bytes counted now: the pages, plus a header
   * for each packet they open.
   */
  queue(name: Uint8Array, offset: number, ptr: number, count = 1): number {
    const ps = this.pageSize;
    let counted = 0;
    while (count > 0) {
      let c = this.chans[this.rr]!;
      if (c.pages > 0 && (c.name !== name || c.pages === this.perPacket)) {
        this.flush(this.rr, false);
        this.rr = (this.rr + 1) % this.channels;
        c = this.chans[this.rr]!; // empty: a channel's packet goes out when the next channel's turn comes
      }
      if (c.pages === 0) {
        c.name = name;
        counted += this.headerSize;
      }
      const n = Math.min(count, this.perPacket - c.pages);
      for (let i = 0; i < n; i++) c.offsets[c.pages + i] = offset + i * ps;
      c.pages += n;
      const bytes = n * ps;
      const k = c.runStart.length - 1;
      if (k >= 0 && c.runStart[k]! + c.runBytes[k]! === ptr) c.runBytes[k]! += bytes;
      else {
        c.runStart.push(ptr);
        c.runBytes.push(bytes);
      }
      counted += bytes;
      this.pages += n;
      count -= n;
      offset += bytes;
      ptr += bytes;
    }
    this.counted += counted;
    return counted;
  }

  /** A sync point: every pending packet, a SYNC packet on every channel, all handed to the sink. Returns the bytes counted. */
  sync(): number {
    const before = this.counted;
    for (let i = 0; i < this.channels; i++) if (this.chans[i]!.pages > 0) this.flush(i, false);
    for (let i = 0; i < this.channels; i++) {
      this.flush(i, true);
      this.counted += this.headerSize;
    }
    this.handOut();
    return this.counted - before;
  }

  private flush(i: number, sync: boolean): void {
    const c = this.chans[i]!;
    const n = c.pages;
    const fields = { sync, normalPages: n, packetNum: this.packetNum++, ...(n > 0 ? { block: c.name! } : {}) };
    if (this.port) {
      const runs = new Float64Array(2 * c.runStart.length);
      for (let r = 0; r < c.runStart.length; r++) {
        runs[2 * r] = c.runStart[r]!;
        runs[2 * r + 1] = c.runBytes[r]!;
      }
      this.port.packet(i, { ...fields, offsets: c.offsets.slice(0, n), runs });
    } else {
      const u8 = this.k.u8;
      const data: Uint8Array[] = [];
      for (let r = 0; r < c.runStart.length; r++) data.push(u8.subarray(c.runStart[r]!, c.runStart[r]! + c.runBytes[r]!));
      c.writer!.packetInto(c.out, { ...fields, offsets: c.offsets }, data);
    }
    this.packets++;
    c.pages = 0;
    c.runStart.length = 0;
    c.runBytes.length = 0;
  }

  private handOut(): void {
    if (!this.sink) {
      this.wire = this.counted;
      return;
    }
    for (let i = 0; i < this.channels; i++) {
      for (const chunk of this.chans[i]!.out.takeChunks()) {
        if (chunk.length === 0) continue;
        this.wire += chunk.length;
        this.sink(i, chunk);
      }
    }
  }

  dispose(): void {
    for (const c of this.chans) c.writer?.dispose();
    this.chans.length = 0;
  }
}
