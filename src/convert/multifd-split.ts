// One stream -> multifd: the stream's records replayed (StreamConverter) into a main stream that keeps
// everything but PAGE records, and N channels that carry the pages in packets of up to 512 KiB, with a SYNC
// packet on every channel before each RAM EOS, as QEMU 7.2's source sends them. A page written twice between two
// sync points stays where it went first (the same channel, or the main stream), so that no receiver can apply
// the two out of order. docs/live-migration.md, "multifd". Browser-safe.
import { sameBytes } from "../io/chunks.js";
import type { StreamCodecs } from "../io/codec.js";
import { VmstreamError } from "../io/errors.js";
import { ByteWriter } from "../io/writer.js";
import { RAM_FLAG } from "../kernels/types.js";
import type { DecoderEvent } from "../savevm/types.js";
import type { RamRecord } from "../sections/ram/format.js";
import { MultifdChannelWriter, type MultifdCompression, multifdInitBytes, multifdPagesPerPacket } from "../sections/ram/multifd.js";
import type { RamWriter } from "../sections/ram/writer.js";
import { type ReencodeOptions, type ReencodeReport, StreamConverter } from "./qemu.js";

export interface MultifdSplitOptions extends ReencodeOptions {
  /** Number of channels (QEMU's multifd-channels), 1..255. */
  readonly channels: number;
  /** Default "none". */
  readonly compression?: MultifdCompression;
  /** zlib / zstd level (QEMU's multifd-zlib-level / multifd-zstd-level; default 1). */
  readonly level?: number;
  /** Compressors for zlib / zstd (vmstream/node: nodeStreamCodecs). */
  readonly codecs?: StreamCodecs;
  /** The VM UUID the init messages carry (16 bytes; default all zero, what a QEMU without -uuid expects). */
  readonly uuid?: Uint8Array;
}

export interface MultifdSplitReport extends ReencodeReport {
  readonly syncPoints: number;
  readonly channelPages: number;
  readonly packets: number;
}

export interface MultifdOutput {
  readonly main: Uint8Array[];
  /** Per channel id. */
  readonly channels: Uint8Array[][];
}

/** Where a page went since the last sync point: nowhere yet, the main stream, or channel (value - 2). */
const NOWHERE = 0;
const MAIN = 1;

interface ChannelOut {
  readonly writer: MultifdChannelWriter;
  readonly out: ByteWriter;
  block: Uint8Array | undefined;
  readonly offsets: number[];
  /** Copies of the pending pages. */
  readonly pages: Uint8Array;
}

const dec = new TextDecoder("latin1");

/**
 * Push-style splitter: push() the single-channel stream, take the main stream and the channels' bytes with
 * output() (each channel's first bytes are its init message), end() at the end of the input.
 */
export class MultifdSplit extends StreamConverter {
  private readonly chans: ChannelOut[] = [];
  private rr = 0;
  private packetNum = 0n;
  private syncPoints = 0;
  private channelPages = 0;
  private packets = 0;
  /** The block the input's CONTINUE records refer to. */
  private srcBlock: Uint8Array | undefined;
  private ramWriter: RamWriter | undefined;
  /**
   * Per block name and page: where it went since the last sync point. Only pages written since then are in it,
   * so its size and the cost of clearing it follow the input, not the sizes MEM_SIZE announces.
   */
  private readonly owner = new Map<string, Map<number, number>>();

  constructor(private readonly splitOptions: MultifdSplitOptions) {
    super(splitOptions);
    const n = splitOptions.channels;
    if (!Number.isInteger(n) || n < 1 || n > 255) throw new VmstreamError("RANGE", "multifd channels: 1..255", { detail: String(n) });
  }

  /** The output ready so far: the main stream's and each channel's. */
  output(): MultifdOutput {
    this.setup();
    return { main: this.packages.depth > 0 ? [] : this.out.takeChunks(), channels: this.chans.map((c) => c.out.takeChunks()) };
  }

  override push(chunk: Uint8Array): Uint8Array[] {
    this.decoder.push(chunk);
    return [];
  }

  override end(): { chunks: Uint8Array[]; report: MultifdSplitReport } {
    const pending = this.chans.some((c) => c.offsets.length > 0);
    if (pending) throw new VmstreamError("BAD_VALUE", "the stream ended with RAM pages after its last RAM EOS");
    const rest = super.end();
    for (const c of this.chans) c.writer.dispose();
    return {
      chunks: [...rest.chunks],
      report: { ...rest.report, syncPoints: this.syncPoints, channelPages: this.channelPages, packets: this.packets },
    };
  }

  /** Channels are set up at the first output, or when the stream tells the page size. */
  private setup(): void {
    if (this.chans.length > 0) return;
    const o = this.splitOptions;
    const pageSize = this.decoder.pageSize;
    for (let i = 0; i < o.channels; i++) {
      const out = new ByteWriter({ initialCapacity: 1 << 16, borrowMin: Number.POSITIVE_INFINITY });
      out.bytes(multifdInitBytes(i, o.uuid));
      const writer = new MultifdChannelWriter(pageSize, o.compression ?? "none", {
        ...(o.codecs ? { codecs: o.codecs } : {}),
        ...(o.level !== undefined ? { level: o.level } : {}),
      });
      this.chans.push({ writer, out, block: undefined, offsets: [], pages: new Uint8Array(multifdPagesPerPacket(pageSize) * pageSize) });
    }
  }

  protected override event(e: DecoderEvent): void {
    if (e.type === "record" && this.open?.header.idstr === "ram") {
      this.ramRecord(e, e.record as RamRecord);
      return;
    }
    if (e.type === "configuration" || e.type === "begin") this.setup();
    super.event(e);
  }

  private ramRecord(e: DecoderEvent & { type: "record" }, r: RamRecord): void {
    const kind = r.flags & ~RAM_FLAG.CONTINUE;
    if (kind === RAM_FLAG.EOS) {
      this.syncAll();
      super.event(e);
      this.syncPoints++;
      this.owner.clear();
      return;
    }
    if (kind === RAM_FLAG.MEM_SIZE || kind === RAM_FLAG.HOOK) {
      super.event(e);
      return;
    }
    if (r.name) this.srcBlock = r.name.slice();
    const block = this.srcBlock!;
    const page = Number(r.addr) / this.decoder.pageSize;
    const name = dec.decode(block);
    let owners = this.owner.get(name);
    if (!owners) this.owner.set(name, (owners = new Map()));
    const was = owners.get(page) ?? NOWHERE;
    if (kind === RAM_FLAG.PAGE && was !== MAIN) {
      const c = was === NOWHERE ? this.nextChannel(block) : was - 2;
      owners.set(page, c + 2);
      this.queue(c, block, Number(r.addr), r.data!);
      return;
    }
    if (was >= 2) {
      // the page went to a channel since the last sync point: what follows must take the same way
      if (kind !== RAM_FLAG.ZERO)
        throw new VmstreamError("UNSUPPORTED", "cannot send this stream over multifd", {
          detail: `${dec.decode(block)} page 0x${r.addr.toString(16)}: an XBZRLE or compressed record after a page sent on a channel, with no sync point between`,
        });
      this.queue(was - 2, block, Number(r.addr), new Uint8Array(this.decoder.pageSize).fill(r.fill ?? 0));
      return;
    }
    owners.set(page, MAIN);
    super.event(this.mainRecord(e, r, block));
  }

  /** The record as the main stream carries it: named again when the last record written there named another block. */
  private mainRecord(e: DecoderEvent & { type: "record" }, r: RamRecord, block: Uint8Array): DecoderEvent {
    this.ramWriter ??= this.writerFor("ram") as unknown as RamWriter;
    const current = this.ramWriter.currentBlock;
    const same = sameBytes(current, block);
    if (r.flags & RAM_FLAG.CONTINUE) return same ? e : { ...e, record: { ...r, flags: r.flags & ~RAM_FLAG.CONTINUE, name: block } };
    return e;
  }

  /** Round robin, moving on when the current channel's packet is full or holds another block. */
  private nextChannel(block: Uint8Array): number {
    const c = this.chans[this.rr]!;
    if (c.offsets.length > 0 && (!sameBytes(c.block, block) || c.offsets.length === this.perPacket())) {
      this.flush(this.rr, false);
      this.rr = (this.rr + 1) % this.chans.length;
    }
    return this.rr;
  }

  private perPacket(): number {
    return multifdPagesPerPacket(this.decoder.pageSize);
  }

  private queue(channel: number, block: Uint8Array, offset: number, data: Uint8Array): void {
    const c = this.chans[channel]!;
    if (c.offsets.length > 0 && (!sameBytes(c.block, block) || c.offsets.length === this.perPacket())) this.flush(channel, false);
    const ps = this.decoder.pageSize;
    c.pages.set(data, c.offsets.length * ps);
    c.offsets.push(offset);
    c.block = block;
  }

  private flush(channel: number, sync: boolean): void {
    const c = this.chans[channel]!;
    const ps = this.decoder.pageSize;
    const n = c.offsets.length;
    const pages: Uint8Array[] = [];
    for (let i = 0; i < n; i++) pages.push(c.pages.subarray(i * ps, (i + 1) * ps));
    const parts = c.writer.packet({ packetNum: this.packetNum++, sync, ...(n > 0 ? { block: dec.decode(c.block!), pageOffsets: c.offsets, pages } : {}) });
    for (const p of parts) c.out.bytes(p);
    this.packets++;
    this.channelPages += n;
    c.offsets.length = 0;
  }

  /** Before a RAM EOS: every channel's pending pages, then a SYNC packet on each channel. */
  private syncAll(): void {
    this.setup();
    for (let i = 0; i < this.chans.length; i++) if (this.chans[i]!.offsets.length > 0) this.flush(i, false);
    for (let i = 0; i < this.chans.length; i++) this.flush(i, true);
  }
}
