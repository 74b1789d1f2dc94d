// multifd -> one stream: the main stream's records replayed (StreamConverter) with the channels' pages put in
// among them, so that the output is an ordinary single-channel stream with the same content. Sync points are
// kept as QEMU 7.2's destination keeps them: the main stream waits at its k-th RAM EOS until every channel has
// sent its k-th SYNC packet, and a channel past that SYNC waits until the main stream's EOS is out. Where pages
// go and why: docs/live-migration.md, "multifd". Browser-safe.
import { sameBytes } from "../io/chunks.js";
import type { StreamCodecs } from "../io/codec.js";
import { VmstreamError } from "../io/errors.js";
import { RAM_FLAG } from "../kernels/types.js";
import type { DecoderEvent } from "../savevm/types.js";
import type { RamRecord } from "../sections/ram/format.js";
import { MultifdChannelReader, type MultifdCompression, type MultifdInit, type MultifdPacket } from "../sections/ram/multifd.js";
import type { RamWriter } from "../sections/ram/writer.js";
import { type ReencodeOptions, type ReencodeReport, StreamConverter } from "./qemu.js";
import { RecordCopier } from "./replay.js";

export interface MultifdJoinOptions extends ReencodeOptions {
  /** zlib / zstd decompressors for compressed channels (vmstream/node: nodeStreamCodecs). */
  readonly codecs?: StreamCodecs;
  /** The compression the channels must use (QEMU's multifd-compression), when known. */
  readonly compression?: MultifdCompression;
  /** Channels expected (QEMU's multifd-channels). Default: the channels that connect. */
  readonly channels?: number;
  /** Channel page bytes held while no place in the output is open for them (default 256 MiB). */
  readonly maxHeldBytes?: number;
  /**
   * True while connections that may be channels have not said what they are: the main stream waits at a sync
   * point meanwhile (call pump() when it turns false).
   */
  readonly moreChannels?: () => boolean;
}

export interface MultifdChannelReport {
  readonly channel: number;
  readonly bytes: number;
  readonly packets: number;
  readonly pages: number;
  readonly syncs: number;
}

export interface MultifdJoinReport extends ReencodeReport {
  /** RAM sync points (RAM EOS records) of the main stream. */
  readonly syncPoints: number;
  /** Pages that came over the channels. */
  readonly channelPages: number;
  readonly channels: readonly MultifdChannelReport[];
}

/** One channel's connection, as MultifdJoin.channel() hands it out. */
export interface MultifdChannelInput {
  /** The channel id, once its init message was read. */
  readonly id: number | undefined;
  /** True while the channel must not be read (it is past a sync point the main stream has not reached). */
  readonly waiting: boolean;
  push(chunk: Uint8Array): void;
  /** The connection ended. Fine at a packet boundary; a cut packet is an error. */
  end(): void;
}

interface HeldPages {
  readonly block: string;
  readonly offsets: readonly number[];
  readonly pages: Uint8Array;
}

const DEFAULT_MAX_HELD = 256 << 20;
const enc = new TextEncoder();
const dec = new TextDecoder("latin1");

class Channel implements MultifdChannelInput {
  readonly reader: MultifdChannelReader | undefined;
  /** Chunks that arrived before the main stream told the page size. */
  early: Uint8Array[] = [];
  ended = false;
  syncs = 0;
  /** Pages delivered since its last SYNC (there must be none at the end). */
  pagesSinceSync = 0;
  packets = 0;
  pages = 0;
  private theReader: MultifdChannelReader | undefined;

  constructor(
    private readonly join: MultifdJoin,
    readonly index: number,
  ) {}

  get id(): number | undefined {
    return this.theReader?.init?.channel;
  }

  get waiting(): boolean {
    return this.join.channelWaits(this);
  }

  get bytes(): number {
    return (this.theReader?.received ?? 0) + this.early.reduce((n, c) => n + c.length, 0);
  }

  readerFor(make: () => MultifdChannelReader): MultifdChannelReader {
    if (!this.theReader) {
      this.theReader = make();
      for (const c of this.early) this.theReader.push(c);
      this.early = [];
    }
    return this.theReader;
  }

  get current(): MultifdChannelReader | undefined {
    return this.theReader;
  }

  push(chunk: Uint8Array): void {
    if (this.ended) throw new VmstreamError("STATE", "push() after end()");
    if (this.theReader) this.theReader.push(chunk);
    else this.early.push(chunk.slice());
    this.join.pump();
  }

  end(): void {
    this.ended = true;
    this.join.pump();
  }
}

/**
 * Push-style multifd join. pushMain() the main connection's bytes, channel() for each other connection and
 * push() its bytes; take() hands out the output ready so far. Inputs report `waiting` when they must not be
 * read for now (the caller stops reading that connection: QEMU's source waits too); `onResume` is called when
 * one may go on. end() once the main connection ended: the rest of the output and the report, or the first
 * error of the main stream or a channel.
 */
export class MultifdJoin extends StreamConverter {
  /** Called after a waiting input may be read again. */
  onResume: (() => void) | undefined;
  private readonly channelList: Channel[] = [];
  private readonly byId = new Map<number, Channel>();
  private uuid: Uint8Array | undefined;
  /** The bytes of each block name seen in a packet. */
  private readonly names = new Map<string, Uint8Array>();
  /** RAM EOS records written: the main stream is in sync segment `released`. */
  private released = 0;
  /** The main stream's RAM EOS record waiting for the channels' SYNC packets. */
  private heldEos: DecoderEvent | undefined;
  /** The open RAM section's EOS is written (its footer may not be: pages must wait for the section's end). */
  private eosWritten = false;
  private eofSeen = false;
  private ramSectionId: number | undefined;
  private ramWriter: RamWriter | undefined;
  /** The block the main stream's CONTINUE records refer to. */
  private mainBlock: Uint8Array | undefined;
  private held: HeldPages[] = [];
  private heldBytes = 0;
  private channelPages = 0;
  private pageSizeKnown = false;
  private failure: VmstreamError | undefined;
  private pumping = false;
  private readonly copier = new RecordCopier();

  constructor(private readonly joinOptions: MultifdJoinOptions = {}) {
    super(joinOptions);
  }

  /** Feed the main connection's bytes (same as push()). */
  pushMain(chunk: Uint8Array): void {
    this.check();
    this.decoder.push(chunk);
    this.pump();
  }

  /** True while the main connection must not be read (its stream waits at a sync point for the channels). */
  get mainWaiting(): boolean {
    return this.decoder.isPaused;
  }

  /** A new connection that carries a multifd channel (its id comes with its init message). */
  channel(): MultifdChannelInput {
    const c = new Channel(this, this.channelList.length);
    this.channelList.push(c);
    return c;
  }

  /** The output ready so far (also what push() returns). */
  output(): Uint8Array[] {
    return this.packages.depth > 0 ? [] : this.out.takeChunks();
  }

  override push(chunk: Uint8Array): Uint8Array[] {
    this.pushMain(chunk);
    return this.output();
  }

  override end(): { chunks: Uint8Array[]; report: MultifdJoinReport } {
    this.check();
    // the main stream's last bytes may still wait in the decoder for more: decode them now, sync points included
    try {
      this.decoder.finishInput();
    } catch (e) {
      this.fail(e);
    }
    this.pump();
    // a connection cut inside a message says more than the sync point it left the main stream waiting at
    for (const c of this.channelList) if (c.ended && c.current?.init) c.current.finish();
    if (this.heldEos) {
      const late = this.channelList.filter((c) => c.syncs <= this.released).map((c) => this.nameOf(c));
      this.fail(
        new VmstreamError("EOF", "the main stream ended while it waited for the multifd channels", {
          detail: `sync point ${this.released + 1}: no SYNC yet from ${late.join(", ") || "the expected channels"}`,
        }),
      );
    }
    for (const c of this.channelList) {
      const r = c.current;
      if (r === undefined || r.init === undefined) {
        if (c.bytes > 0) this.fail(new VmstreamError("EOF", `multifd connection ${c.index}: no init message`, { detail: `${c.bytes} bytes` }));
        continue;
      }
      if (c.pagesSinceSync > 0 || r.buffered > 0)
        this.fail(new VmstreamError("BAD_VALUE", `${this.nameOf(c)}: data after the last sync point`, { offset: r.received - r.buffered }));
      if (c.syncs !== this.released)
        this.fail(new VmstreamError("BAD_VALUE", `${this.nameOf(c)}: ${c.syncs} sync points, the main stream has ${this.released}`, { offset: r.received }));
    }
    this.checkChannelCount();
    if (this.held.length > 0) this.fail(new VmstreamError("INTERNAL", "multifd pages left unplaced", { detail: `${this.held.length} packets` }));
    const rest = super.end();
    const channels = [...this.byId.values()]
      .sort((a, b) => a.id! - b.id!)
      .map((c) => ({ channel: c.id!, bytes: c.bytes, packets: c.packets, pages: c.pages, syncs: c.syncs }));
    return { chunks: rest.chunks, report: { ...rest.report, syncPoints: this.released, channelPages: this.channelPages, channels } };
  }

  override dispose(): void {
    super.dispose();
    for (const c of this.channelList) c.current?.dispose();
  }

  /** Whether channel `c` must wait (it is past the sync point the main stream is in, or the page size is unknown). */
  channelWaits(c: Channel): boolean {
    if (this.failure) return false;
    if (!this.pageSizeKnown) return true;
    return c.current?.init !== undefined && c.syncs > this.released;
  }

  /** Read every input as far as the sync rules allow. Runs again after anything that may unblock one. */
  pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (let progress = true; progress && !this.failure; ) {
        progress = false;
        if (this.pageSizeKnown) for (const c of this.channelList) if (this.drain(c)) progress = true;
        if (this.heldEos && this.syncedAll()) {
          this.releaseEos();
          progress = true;
        } else if (this.heldEos) this.checkEnded();
        if (this.placeHeld()) progress = true;
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.pumping = false;
    }
    this.check();
  }

  protected override event(e: DecoderEvent): void {
    if (!this.pageSizeKnown && (e.type === "configuration" || e.type === "begin")) this.pageSizeKnown = true;
    if (e.type === "begin" && e.header.idstr === "ram" && e.header.type === "start") this.ramSectionId = e.header.id;
    if (e.type === "begin") this.eosWritten = false;
    if (e.type === "eof") this.eofSeen = true;
    if (e.type === "record" && this.open?.header.idstr === "ram") {
      const r = e.record as RamRecord;
      if ((r.flags & ~RAM_FLAG.CONTINUE) === RAM_FLAG.EOS) {
        if (this.syncedAll()) this.writeEos(e);
        else {
          this.heldEos = { ...e, record: this.copier.copy(r) };
          this.decoder.pause();
        }
        return;
      }
      super.event(this.mainRecord(e, r));
      return;
    }
    super.event(e);
    if (e.type === "section" || e.type === "device" || e.type === "command") this.placeHeld();
  }

  /** A main-stream page record, named again when channel pages written since named another block. */
  private mainRecord(e: DecoderEvent & { type: "record" }, r: RamRecord): DecoderEvent {
    if (r.name) {
      this.mainBlock = r.name.slice();
      return e;
    }
    const kind = r.flags & ~RAM_FLAG.CONTINUE;
    if (!(r.flags & RAM_FLAG.CONTINUE) || kind === RAM_FLAG.MEM_SIZE || kind === RAM_FLAG.HOOK) return e;
    if (sameBytes(this.ramOut().currentBlock, this.mainBlock)) return e;
    return { ...e, record: { ...r, flags: r.flags & ~RAM_FLAG.CONTINUE, name: this.mainBlock! } };
  }

  private ramOut(): RamWriter {
    this.ramWriter ??= this.writerFor("ram") as unknown as RamWriter;
    return this.ramWriter;
  }

  /** The EOS that ends sync segment `released` (and, with footers known, the section: channel pages may follow). */
  private writeEos(e: DecoderEvent): void {
    super.event(e);
    this.eosWritten = true;
    this.released++;
    for (const c of this.channelList) c.pagesSinceSync = 0;
    const o = this.open;
    if (o && this.footersKnown && !o.closed) {
      this.enc!.end();
      o.closed = true;
    }
  }

  private releaseEos(): void {
    const e = this.heldEos!;
    this.heldEos = undefined;
    this.writeEos(e);
    this.decoder.resume();
    this.onResume?.();
  }

  /** The main stream waits at a sync point: a channel whose connection ended before its SYNC never sends it. */
  private checkEnded(): void {
    for (const c of this.channelList) {
      const r = c.current;
      if (!c.ended || c.syncs > this.released || (r !== undefined && this.channelWaits(c))) continue;
      r?.finish(); // a cut message says more
      throw new VmstreamError("EOF", `${this.nameOf(c)}: the connection ended before the SYNC of sync point ${this.released + 1}`, { offset: c.bytes });
    }
  }

  private syncedAll(): boolean {
    const want = this.joinOptions.channels;
    if (want !== undefined && this.byId.size < want) return false;
    if (this.joinOptions.moreChannels?.()) return false;
    for (const c of this.channelList) {
      // every connected channel counts, identified or not (its bytes may just not have been read yet)
      if (c.current?.init === undefined || c.syncs <= this.released) return false;
    }
    return true;
  }

  /** Read channel `c`'s packets while it may go on; true if anything was read. */
  private drain(c: Channel): boolean {
    if (c.ended && !c.current && c.early.length === 0) return false;
    const r = c.readerFor(
      () =>
        new MultifdChannelReader({
          pageSize: this.decoder.pageSize,
          ...(this.joinOptions.codecs ? { codecs: this.joinOptions.codecs } : {}),
          ...(this.joinOptions.compression ? { compression: this.joinOptions.compression } : {}),
          label: "multifd channel",
        }),
    );
    let any = false;
    while (!this.channelWaits(c) && !this.failure) {
      const ev = r.next();
      if (!ev) break;
      any = true;
      if (ev.type === "init") this.identify(c, ev.init);
      else this.packet(c, ev.packet);
    }
    return any;
  }

  private identify(c: Channel, init: MultifdInit): void {
    const id = init.channel;
    const want = this.joinOptions.channels;
    if (want !== undefined && id >= want)
      throw new VmstreamError("BAD_VALUE", `multifd channel ${id}: more channels than the ${want} expected`, { offset: 24 });
    if (this.byId.has(id)) throw new VmstreamError("BAD_VALUE", `multifd channel ${id} connected twice`, { offset: 24 });
    if (this.uuid && !sameBytes(this.uuid, init.uuid)) throw new VmstreamError("MISMATCH", `multifd channel ${id}: another VM's UUID`, { offset: 8 });
    this.uuid ??= init.uuid;
    this.byId.set(id, c);
  }

  private packet(c: Channel, p: MultifdPacket): void {
    c.packets++;
    const n = p.pageOffsets.length;
    if (n > 0) {
      if (c.syncs < this.released)
        throw new VmstreamError("BAD_VALUE", `${this.nameOf(c)}: pages for sync point ${c.syncs + 1}, which the main stream has passed`, { offset: p.offset });
      c.pages += n;
      c.pagesSinceSync += n;
      this.channelPages += n;
      this.place({ block: p.block, offsets: p.pageOffsets, pages: p.pages }, false);
    }
    if (p.sync) {
      c.syncs++;
      c.pagesSinceSync = 0;
    }
  }

  /** Write pages where they may go now: inside the main stream's open RAM section, or in a RAM section of their own. */
  private place(h: HeldPages, fromHeld: boolean): boolean {
    const where = this.placeForPages();
    if (where === "hold" || (!fromHeld && this.held.length > 0)) {
      if (fromHeld) return false;
      const copy: HeldPages = { block: h.block, offsets: h.offsets, pages: h.pages.slice() };
      this.held.push(copy);
      this.heldBytes += copy.pages.length;
      const max = this.joinOptions.maxHeldBytes ?? DEFAULT_MAX_HELD;
      if (this.heldBytes > max)
        throw new VmstreamError("LIMIT", "multifd pages pile up with no place in the output", {
          detail: `${this.heldBytes} bytes held while the main stream's ${this.open?.header.idstr ?? "framing"} stays open (max ${max})`,
        });
      return false;
    }
    const w = this.ramOut();
    let name = this.names.get(h.block);
    if (!name) this.names.set(h.block, (name = enc.encode(h.block))); // one object per block: CONTINUE by identity
    const ps = this.decoder.pageSize;
    if (where === "own") this.encoder().begin("part", this.ramSectionId!);
    for (let i = 0; i < h.offsets.length; i++) w.pageAt(name, h.offsets[i]!, h.pages.subarray(i * ps, (i + 1) * ps));
    if (where === "own") {
      w.eos();
      this.enc!.end();
    }
    return true;
  }

  /** "inline": the main stream's RAM section is open; "own": between sections; "hold": neither is possible now. */
  private placeForPages(): "inline" | "own" | "hold" {
    if (this.packages.depth > 0 || this.eofSeen) return "hold";
    const o = this.open;
    if (o && !o.closed) return o.header.idstr === "ram" && !this.heldEos && !this.eosWritten ? "inline" : "hold";
    if (this.ramSectionId === undefined || !this.footersKnown || this.enc === undefined) return "hold";
    return "own";
  }

  private placeHeld(): boolean {
    let any = false;
    while (this.held.length > 0 && !this.failure) {
      const h = this.held[0]!;
      if (!this.place(h, true)) break;
      this.held.shift();
      this.heldBytes -= h.pages.length;
      any = true;
    }
    return any;
  }

  private checkChannelCount(): void {
    const want = this.joinOptions.channels;
    const ids = [...this.byId.keys()].sort((a, b) => a - b);
    const n = want ?? (ids.length > 0 ? ids[ids.length - 1]! + 1 : 0);
    const missing: number[] = [];
    for (let i = 0; i < n; i++) if (!this.byId.has(i)) missing.push(i);
    if (missing.length > 0) this.fail(new VmstreamError("EOF", "multifd channels missing", { detail: `channel ${missing.join(", ")} never connected` }));
  }

  private nameOf(c: Channel): string {
    return c.id !== undefined ? `multifd channel ${c.id}` : `multifd connection ${c.index}`;
  }

  private fail(e: unknown): never {
    this.failure ??= VmstreamError.wrap(e, {});
    throw this.failure;
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }
}

/** Block names in reports. */
export const blockName = (b: Uint8Array): string => dec.decode(b);
