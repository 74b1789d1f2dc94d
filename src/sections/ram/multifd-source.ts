// The channels of the ram section's multifd mode (wire-format §5.6): pages queued round robin into per-channel
// packets (a new packet at a new block or when one is full), written with their headers as they fill, and at a
// sync point every channel's pending packet, then a SYNC packet on each, handed to the channel sink. `none`
// pages go out as views of the kernels' memory (zero copy). docs/live-migration.md, "multifd". Browser-safe.
import type { StreamCodecs, StreamCompressor } from "../../io/codec.js";
import { VmstreamError } from "../../io/errors.js";
import { ByteWriter } from "../../io/writer.js";
import type { Kernels } from "../../kernels/types.js";
import {
  MULTIFD_FLAG,
  type MultifdCompression,
  multifdCompressionFlag,
  multifdCompressor,
  multifdHeaderSize,
  multifdInitBytes,
  multifdPagesPerPacket,
  writeMultifdHeader,
} from "./multifd.js";

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

interface Channel {
  readonly out: ByteWriter;
  readonly compressor: StreamCompressor | undefined;
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
  /** Bytes handed to the sink. */
  wire = 0;
  packets = 0;
  pages = 0;
  private readonly chans: Channel[] = [];
  private readonly flag: number;
  private rr = 0;
  private packetNum = 0;

  constructor(
    private readonly k: Kernels,
    private readonly pageSize: number,
    private readonly options: MultifdSourceOptions,
    private readonly sink: ChannelSink,
  ) {
    const n = options.channels;
    if (!Number.isInteger(n) || n < 1 || n > 255) throw new VmstreamError("RANGE", "multifd channels: 1..255", { detail: String(n) });
    if (options.uuid !== undefined && options.uuid.length !== 16)
      throw new VmstreamError("RANGE", "a multifd uuid has 16 bytes", { detail: `${options.uuid.length}` });
    this.channels = n;
    this.compression = options.compression ?? "none";
    this.flag = multifdCompressionFlag(this.compression);
    this.headerSize = multifdHeaderSize(pageSize);
    this.perPacket = multifdPagesPerPacket(pageSize);
    try {
      for (let i = 0; i < n; i++) {
        this.chans.push({
          out: new ByteWriter({ initialCapacity: 1 << 16 }),
          compressor: multifdCompressor(this.compression, options),
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
      this.chans[i]!.out.bytes(multifdInitBytes(i, this.options.uuid));
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
        this.flush(c, false);
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
    for (const c of this.chans) if (c.pages > 0) this.flush(c, false);
    for (const c of this.chans) {
      this.flush(c, true);
      this.counted += this.headerSize;
    }
    this.handOut();
    return this.counted - before;
  }

  private flush(c: Channel, sync: boolean): void {
    const n = c.pages;
    const u8 = this.k.u8;
    let data: Uint8Array | undefined;
    let dataBytes = n * this.pageSize;
    if (n > 0 && c.compressor) {
      const parts: Uint8Array[] = [];
      for (let i = 0; i < c.runStart.length; i++) parts.push(u8.subarray(c.runStart[i]!, c.runStart[i]! + c.runBytes[i]!));
      data = c.compressor.compress(parts);
      dataBytes = data.length;
    }
    writeMultifdHeader(c.out, this.pageSize, {
      flags: (sync ? MULTIFD_FLAG.SYNC : 0) | (n > 0 ? this.flag : 0),
      normalPages: n,
      nextPacketSize: dataBytes,
      packetNum: this.packetNum++,
      ...(n > 0 ? { block: c.name!, offsets: c.offsets } : {}),
    });
    if (data) c.out.borrow(data);
    else for (let i = 0; i < c.runStart.length; i++) c.out.borrow(u8.subarray(c.runStart[i]!, c.runStart[i]! + c.runBytes[i]!));
    this.packets++;
    c.pages = 0;
    c.runStart.length = 0;
    c.runBytes.length = 0;
  }

  private handOut(): void {
    for (let i = 0; i < this.channels; i++) {
      for (const chunk of this.chans[i]!.out.takeChunks()) {
        if (chunk.length === 0) continue;
        this.wire += chunk.length;
        this.sink(i, chunk);
      }
    }
  }

  dispose(): void {
    for (const c of this.chans) c.compressor?.dispose();
    this.chans.length = 0;
  }
}
