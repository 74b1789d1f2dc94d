// multifd channels (wire-format §5.6): the 64-byte init message, packets (a 320-byte header, one offset slot per
// page a packet can hold, then the page data, raw or through the channel's one compression stream), a pull-style
// channel reader that checks what QEMU 7.2's loader checks (and bounds what it does not) and a channel writer.
// The main stream and the channels meet at sync points: docs/live-migration.md, "multifd". Browser-safe.
import type { StreamCodecs, StreamCompressor, StreamDecompressor } from "../../io/codec.js";
import { VmstreamError } from "../../io/errors.js";
import { ByteWriter } from "../../io/writer.js";

export const MULTIFD_MAGIC = 0x11223344;
export const MULTIFD_VERSION = 1;
/** Bytes of the init message that opens every channel. */
export const MULTIFD_INIT_SIZE = 64;
/** Page bytes one packet can carry (the offset slots: this / page size). */
export const MULTIFD_PACKET_BYTES = 512 * 1024;
/** Header bytes before the offset slots. */
const FIXED_HEADER = 320;
const NAME_AT = 64;
const NAME_BYTES = 256;
/**
 * Largest compressed data of one packet: QEMU's receive buffer (twice the page bytes). QEMU 7.2 reads
 * next_packet_size into it without a check (§14.1); here a larger one is an error.
 */
const MAX_COMPRESSED = 2 * MULTIFD_PACKET_BYTES;

export const MULTIFD_FLAG = {
  SYNC: 1,
  COMPRESSION_MASK: 7 << 1,
  NONE: 0,
  ZLIB: 1 << 1,
  ZSTD: 2 << 1,
} as const;

export type MultifdCompression = "none" | "zlib" | "zstd";
const COMPRESSION_FLAG: Record<MultifdCompression, number> = { none: MULTIFD_FLAG.NONE, zlib: MULTIFD_FLAG.ZLIB, zstd: MULTIFD_FLAG.ZSTD };

/** The flag bits of a packet with pages under `compression`. */
export const multifdCompressionFlag = (compression: MultifdCompression): number => COMPRESSION_FLAG[compression];

/** A channel's compression stream (undefined for `none`); a missing codec is an error. */
export function multifdCompressor(compression: MultifdCompression, options: { codecs?: StreamCodecs; level?: number }): StreamCompressor | undefined {
  if (compression === "none") return undefined;
  if (COMPRESSION_FLAG[compression] === undefined) throw new VmstreamError("RANGE", "multifd compression: none, zlib or zstd", { detail: String(compression) });
  const codec = compression === "zlib" ? options.codecs?.zlib : options.codecs?.zstd;
  if (!codec) throw new VmstreamError("UNSUPPORTED", `no ${compression} compressor`, { detail: "pass codecs (vmstream/node: nodeStreamCodecs)" });
  return codec.compressor(options.level ?? 1);
}

/** Offset slots (pages) of a packet for this page size. */
export const multifdPagesPerPacket = (pageSize: number): number => MULTIFD_PACKET_BYTES / pageSize;
/** Header bytes of a packet for this page size: 1344 for 4 KiB pages. */
export const multifdHeaderSize = (pageSize: number): number => FIXED_HEADER + 8 * multifdPagesPerPacket(pageSize);

/** The init message: which channel this connection is, and the source's VM UUID. */
export interface MultifdInit {
  /** The channel id (0..channels-1); it names the channel whatever the connection order. */
  readonly channel: number;
  /** 16 bytes: the source's `-uuid` (all zero without one); QEMU's destination requires its own. */
  readonly uuid: Uint8Array;
}

/** One packet as read: its header fields and the pages it carries (uncompressed). */
export interface MultifdPacket {
  /** Byte offset of the packet in its channel. */
  readonly offset: number;
  readonly flags: number;
  readonly sync: boolean;
  /** Numbered across all channels by the source, from 0 (sync packets included). */
  readonly packetNum: bigint;
  /** The RAM block of the pages (empty when the packet carries none: the field is stale then). */
  readonly block: string;
  /** Page offsets in the block, one per page. */
  readonly pageOffsets: readonly number[];
  /** The pages, one after another (pageOffsets.length × page size). A view valid until the reader's next call. */
  readonly pages: Uint8Array;
  /** Bytes of page data on the wire (compressed size, or the raw pages). */
  readonly wireBytes: number;
}

export type MultifdReaderEvent = { readonly type: "init"; readonly init: MultifdInit } | { readonly type: "packet"; readonly packet: MultifdPacket };

export interface MultifdReaderOptions {
  readonly pageSize: number;
  /** Codecs for zlib/zstd channels; a packet whose compression has none is an error. */
  readonly codecs?: StreamCodecs;
  /** The compression the migration uses, when known: a packet with other compression bits is an error (QEMU's check). */
  readonly compression?: MultifdCompression;
  /** Name used in errors (default "multifd channel"). */
  readonly label?: string;
}

const latin1 = new TextDecoder("latin1");

function compressionOf(flags: number): MultifdCompression | undefined {
  switch (flags & MULTIFD_FLAG.COMPRESSION_MASK) {
    case MULTIFD_FLAG.NONE:
      return "none";
    case MULTIFD_FLAG.ZLIB:
      return "zlib";
    case MULTIFD_FLAG.ZSTD:
      return "zstd";
    default:
      return undefined;
  }
}

/**
 * Reads one channel: push() the bytes as they arrive, then next() for each complete message (the init message,
 * then packets) until it returns undefined. A caller that stops pulling (a channel past a sync point waits for
 * the main stream) keeps the rest buffered: at most what it pushed since. Errors are VmstreamErrors with the
 * channel's byte offset; after one, every call throws it again.
 */
export class MultifdChannelReader {
  /** Bytes pushed. */
  received = 0;
  /** Messages read (the init message counts). */
  messages = 0;
  /** Page bytes delivered. */
  pageBytes = 0;
  /** The init message, once read. */
  init: MultifdInit | undefined;
  private buf = new Uint8Array(0);
  private start = 0;
  private end = 0;
  /** Channel offset of buf[start]. */
  private base = 0;
  private failure: VmstreamError | undefined;
  private readonly header: number;
  private readonly perPacket: number;
  private out = new Uint8Array(0);
  private decompressor: StreamDecompressor | undefined;
  private mode: MultifdCompression | undefined;
  private label: string;

  constructor(private readonly options: MultifdReaderOptions) {
    this.header = multifdHeaderSize(options.pageSize);
    this.perPacket = multifdPagesPerPacket(options.pageSize);
    this.label = options.label ?? "multifd channel";
    this.mode = options.compression;
  }

  /** The first error, once there was one. */
  get error(): VmstreamError | undefined {
    return this.failure;
  }

  /** Bytes pushed and not yet read as a whole message. */
  get buffered(): number {
    return this.end - this.start;
  }

  push(chunk: Uint8Array): void {
    if (this.failure) throw this.failure;
    this.received += chunk.length;
    if (this.end + chunk.length > this.buf.length) {
      const live = this.end - this.start;
      if (live + chunk.length <= this.buf.length && this.start > 0) this.buf.copyWithin(0, this.start, this.end);
      else {
        const grown = new Uint8Array(Math.max(live + chunk.length, 2 * this.buf.length, 1 << 16));
        grown.set(this.buf.subarray(this.start, this.end));
        this.buf = grown;
      }
      this.start = 0;
      this.end = live;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** The next complete message, or undefined until more bytes are pushed. */
  next(): MultifdReaderEvent | undefined {
    if (this.failure) throw this.failure;
    try {
      return this.init === undefined ? this.readInit() : this.readPacket();
    } catch (e) {
      this.failure = VmstreamError.wrap(e, { offset: this.base });
      throw this.failure;
    }
  }

  /**
   * The input ended: fine at a message boundary after the init message (QEMU's channels end so), else the
   * error says what was cut off.
   */
  finish(): void {
    if (this.failure) throw this.failure;
    const left = this.end - this.start;
    if (this.init === undefined) this.fail(this.base, "the connection ended before the multifd init message", `${left} of ${MULTIFD_INIT_SIZE} bytes`);
    // whole packets not read yet (the caller stopped pulling) are not cut: only a partial last one is
    let at = this.start;
    while (at < this.end) {
      const size = this.packetSizeAt(at);
      if (size === undefined || at + size > this.end)
        this.fail(this.base + (at - this.start), "the connection ended inside a packet", `${this.end - at} bytes of an unfinished packet`);
      at += size;
    }
  }

  dispose(): void {
    this.decompressor?.dispose();
    this.decompressor = undefined;
    this.buf = new Uint8Array(0);
    this.out = new Uint8Array(0);
  }

  private fail(offset: number, summary: string, detail?: string): never {
    this.failure = new VmstreamError("BAD_VALUE", `${this.label}: ${summary}`, { offset, ...(detail !== undefined ? { detail } : {}) });
    throw this.failure;
  }

  private view(): DataView {
    return new DataView(this.buf.buffer, this.buf.byteOffset + this.start, this.end - this.start);
  }

  private consume(n: number): void {
    this.start += n;
    this.base += n;
    this.messages++;
  }

  private readInit(): MultifdReaderEvent | undefined {
    if (this.end - this.start < MULTIFD_INIT_SIZE) return undefined;
    const dv = this.view();
    this.checkMagic(dv.getUint32(0), dv.getUint32(4), 0);
    const uuid = this.buf.slice(this.start + 8, this.start + 24);
    const init: MultifdInit = { channel: dv.getUint8(24), uuid };
    this.init = init;
    this.label = `${this.options.label ?? "multifd channel"} ${init.channel}`;
    this.consume(MULTIFD_INIT_SIZE);
    return { type: "init", init };
  }

  private checkMagic(magic: number, version: number, at: number): void {
    if (magic !== MULTIFD_MAGIC) this.fail(this.base + at, "bad multifd magic", `0x${magic.toString(16).padStart(8, "0")}, expected 0x11223344`);
    if (version !== MULTIFD_VERSION) this.fail(this.base + at + 4, "unsupported multifd version", `${version}, expected ${MULTIFD_VERSION}`);
  }

  /** Bytes of the packet at buf[at], when its header is there (a header too bad to tell counts as whole). */
  private packetSizeAt(at: number): number | undefined {
    if (this.end - at < this.header) return undefined;
    const dv = new DataView(this.buf.buffer, this.buf.byteOffset + at, this.header);
    const normal = dv.getUint32(16);
    if (normal === 0) return this.header;
    return this.header + ((dv.getUint32(8) & MULTIFD_FLAG.COMPRESSION_MASK) === MULTIFD_FLAG.NONE ? normal * this.options.pageSize : dv.getUint32(20));
  }

  private readPacket(): MultifdReaderEvent | undefined {
    const have = this.end - this.start;
    if (have < this.header) return undefined;
    const dv = this.view();
    const at = this.base;
    this.checkMagic(dv.getUint32(0), dv.getUint32(4), 0);
    const flags = dv.getUint32(8);
    const pagesAlloc = dv.getUint32(12);
    const normal = dv.getUint32(16);
    const nextSize = dv.getUint32(20);
    const packetNum = dv.getBigUint64(24);
    if (pagesAlloc > this.perPacket) this.fail(at + 12, "packet holds too many pages", `pages_alloc ${pagesAlloc}, at most ${this.perPacket}`);
    if (normal > pagesAlloc) this.fail(at + 16, "packet has more pages than it allocates", `normal_pages ${normal} > pages_alloc ${pagesAlloc}`);
    const compression = compressionOf(flags);
    if (compression === undefined) this.fail(at + 8, "unknown multifd compression", `flags 0x${flags.toString(16)}`);
    const pageSize = this.options.pageSize;
    // page data follows only when there are pages; then its size is the pages (none) or next_packet_size
    let dataBytes = 0;
    if (normal > 0) {
      if (this.mode === undefined) this.mode = compression;
      else if (compression !== this.mode) this.fail(at + 8, "packet compression differs from the channel's", `${compression}, expected ${this.mode}`);
      dataBytes = compression === "none" ? normal * pageSize : nextSize;
      if (compression !== "none" && (nextSize === 0 || nextSize > MAX_COMPRESSED))
        this.fail(at + 20, "bad compressed packet size", `next_packet_size ${nextSize}, expected 1..${MAX_COMPRESSED}`);
    }
    if (have < this.header + dataBytes) return undefined;

    let block = "";
    const pageOffsets: number[] = [];
    if (normal > 0) {
      const name = this.buf.subarray(this.start + NAME_AT, this.start + NAME_AT + NAME_BYTES - 1); // QEMU forces the last byte to NUL
      const nul = name.indexOf(0);
      block = latin1.decode(nul < 0 ? name : name.subarray(0, nul));
      if (block === "") this.fail(at + NAME_AT, "packet with pages names no RAM block");
      for (let i = 0; i < normal; i++) {
        // as two words (no BigInt per page): page aligned and below 2^53
        const hi = dv.getUint32(FIXED_HEADER + 8 * i);
        const lo = dv.getUint32(FIXED_HEADER + 8 * i + 4);
        if ((lo & (pageSize - 1)) !== 0 || hi >= 0x200000)
          this.fail(at + FIXED_HEADER + 8 * i, "bad page offset", `0x${dv.getBigUint64(FIXED_HEADER + 8 * i).toString(16)} in ${block}`);
        pageOffsets.push(hi * 4294967296 + lo);
      }
    }
    const data = this.buf.subarray(this.start + this.header, this.start + this.header + dataBytes);
    let pages: Uint8Array = data;
    if (normal > 0 && compression !== "none") pages = this.decompress(compression!, data, normal * pageSize, at + this.header);
    this.consume(this.header + dataBytes);
    this.pageBytes += pages.length;
    return {
      type: "packet",
      packet: { offset: at, flags, sync: (flags & MULTIFD_FLAG.SYNC) !== 0, packetNum, block, pageOffsets, pages, wireBytes: dataBytes },
    };
  }

  private decompress(mode: MultifdCompression, data: Uint8Array, size: number, at: number): Uint8Array {
    const codec = mode === "zlib" ? this.options.codecs?.zlib : this.options.codecs?.zstd;
    if (!codec) this.fail(at, `no ${mode} decompressor`, `pass codecs (vmstream/node: nodeStreamCodecs) to read ${mode} channels`);
    this.decompressor ??= codec.decompressor();
    if (this.out.length < size) this.out = new Uint8Array(Math.max(MULTIFD_PACKET_BYTES, size));
    const out = this.out.subarray(0, size);
    try {
      this.decompressor.decompress(data, out);
    } catch (e) {
      this.fail(at, `bad ${mode} data`, e instanceof Error ? e.message : String(e));
    }
    return out;
  }
}

// ------------------------------------------------------------------------------------------------ writing

/** The init message of channel `channel` (uuid: 16 bytes, default all zero). */
export function multifdInitBytes(channel: number, uuid: Uint8Array = new Uint8Array(16)): Uint8Array {
  if (uuid.length !== 16) throw new VmstreamError("RANGE", "a multifd uuid has 16 bytes", { detail: `${uuid.length}` });
  if (!Number.isInteger(channel) || channel < 0 || channel > 255) throw new VmstreamError("RANGE", "a multifd channel id is 0..255", { detail: `${channel}` });
  const b = new Uint8Array(MULTIFD_INIT_SIZE);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, MULTIFD_MAGIC);
  dv.setUint32(4, MULTIFD_VERSION);
  b.set(uuid, 8);
  b[24] = channel;
  return b;
}

export interface MultifdPacketSpec {
  readonly packetNum: bigint;
  readonly sync?: boolean;
  /** The RAM block (needed when there are pages). */
  readonly block?: string;
  readonly pageOffsets?: readonly number[];
  /** One view per page, in the order of pageOffsets. */
  readonly pages?: readonly Uint8Array[];
}

/** What a packet says besides its data and what the channel's compression sets. */
export interface MultifdPacketFields {
  readonly sync: boolean;
  readonly normalPages: number;
  readonly packetNum: number;
  /** The block name's bytes (needed when there are pages). */
  readonly block?: Uint8Array;
  /** Page offsets in the block, the first `normalPages` used. */
  readonly offsets?: ArrayLike<number>;
}

/** The header fields of one packet as written (wire-format §5.6). */
export interface MultifdHeaderSpec {
  readonly flags: number;
  readonly normalPages: number;
  /** Bytes of page data that follow (for `none`: normalPages × page size, as QEMU writes it). */
  readonly nextPacketSize: number;
  readonly packetNum: number;
  /** The block name's bytes (1..255; needed when there are pages). */
  readonly block?: Uint8Array;
  /** Page offsets in the block, the first `normalPages` used. */
  readonly offsets?: ArrayLike<number>;
}

/**
 * Write one packet header into `w`: the fixed fields, the block name NUL padded, one be64 slot per page a packet
 * can hold (unused slots zero). Nothing is checked here but the name's length.
 */
export function writeMultifdHeader(w: ByteWriter, pageSize: number, h: MultifdHeaderSpec): void {
  const perPacket = multifdPagesPerPacket(pageSize);
  w.be32(MULTIFD_MAGIC);
  w.be32(MULTIFD_VERSION);
  w.be32(h.flags);
  w.be32(perPacket);
  w.be32(h.normalPages);
  w.be32(h.nextPacketSize);
  w.be64n(h.packetNum);
  w.zeros(NAME_AT - 32);
  const name = h.normalPages > 0 ? h.block : undefined;
  if (name !== undefined) {
    if (name.length === 0 || name.length > NAME_BYTES - 1)
      throw new VmstreamError("RANGE", "a RAM block name has 1..255 bytes", { detail: latin1.decode(name) });
    w.bytes(name);
  }
  w.zeros(NAME_BYTES - (name?.length ?? 0));
  const offsets = h.offsets;
  for (let i = 0; i < h.normalPages; i++) w.be64n(offsets![i]!);
  w.zeros(8 * (perPacket - h.normalPages));
}

/**
 * Writes one channel: the init message, then packets. Packets of pages compress through the channel's one
 * compression stream, so they must go out in the order they were made. Pages of a `none` channel are handed
 * back as the caller's views (zero-copy).
 */
export class MultifdChannelWriter {
  private readonly compressor: StreamCompressor | undefined;
  private readonly flag: number;
  private readonly perPacket: number;
  private readonly headerSize: number;

  constructor(
    private readonly pageSize: number,
    readonly compression: MultifdCompression = "none",
    options: { codecs?: StreamCodecs; level?: number } = {},
  ) {
    this.flag = COMPRESSION_FLAG[compression];
    this.perPacket = multifdPagesPerPacket(pageSize);
    this.headerSize = multifdHeaderSize(pageSize);
    this.compressor = multifdCompressor(compression, options);
  }

  /** The bytes of one packet: its header, then its page data (views of the pages for `none`). */
  packet(p: MultifdPacketSpec): Uint8Array[] {
    const offsets = p.pageOffsets ?? [];
    const pages = p.pages ?? [];
    if (offsets.length !== pages.length)
      throw new VmstreamError("RANGE", "one page per offset", { detail: `${offsets.length} offsets, ${pages.length} pages` });
    for (const page of pages) if (page.length !== this.pageSize) throw new VmstreamError("RANGE", "a page has the page size", { detail: `${page.length}` });
    const out = new ByteWriter({ initialCapacity: this.headerSize, borrowMin: 1 });
    this.packetInto(
      out,
      {
        sync: p.sync === true,
        normalPages: pages.length,
        packetNum: Number(p.packetNum),
        ...(pages.length > 0 ? { block: new TextEncoder().encode(p.block ?? "") } : {}),
        offsets,
      },
      pages,
    );
    return out.takeChunks().filter((c) => c.length > 0);
  }

  /**
   * One packet into `out`: its header, then its data, compressed or (`none`) borrowed as they are. `data` holds
   * the `normalPages` pages in offset order, in any number of runs.
   */
  packetInto(out: ByteWriter, h: MultifdPacketFields, data: readonly Uint8Array[]): void {
    const n = h.normalPages;
    if (n > this.perPacket) throw new VmstreamError("RANGE", "too many pages for one packet", { detail: `${n} > ${this.perPacket}` });
    let bytes = 0;
    for (const d of data) bytes += d.length;
    if (bytes !== n * this.pageSize) throw new VmstreamError("RANGE", "a packet's data is its pages", { detail: `${bytes} bytes for ${n} pages` });
    const packed = n > 0 && this.compressor ? this.compressor.compress(data) : undefined;
    writeMultifdHeader(out, this.pageSize, {
      flags: (h.sync ? MULTIFD_FLAG.SYNC : 0) | (n > 0 ? this.flag : 0),
      normalPages: n,
      nextPacketSize: packed ? packed.length : bytes,
      packetNum: h.packetNum,
      ...(n > 0 ? { block: h.block!, offsets: h.offsets! } : {}),
    });
    if (packed) out.borrow(packed);
    else for (const d of data) out.borrow(d);
  }

  dispose(): void {
    this.compressor?.dispose();
  }
}
