// QEMU -> QEMU re-encoding as the input arrives (the streaming twin of reencodeStream in convert.ts, same
// output bytes): a StreamDecoder whose events and live-section handlers drive a StreamEncoder directly. Each
// live handler (ram, block, spapr/htab, dirty-bitmap, ...) is wrapped: after the real handler has validated and
// consumed a run of whole records in the decoder's window, the same bytes are parsed into records and written
// again by RamWriter / BlockWriter / HtabWriter (payloads without a writer are copied as bytes); device
// sections are written from their "device" events, commands and EOF from theirs, all in stream order (the
// decoder emits in stream order, also when it had to buffer device sections until the vmdesc trailer).
// Record data are copied into the output writer (the window is reused), and the output is handed out after
// every push, so memory stays at the decoder's window plus one push's worth of output.
//
// QEMU -> BER (StreamBerConverter, the streaming twin of qemuToBer): the BER form of a section depends on its
// whole payload (records when they fit the schema, else OpaqueState), so the input bytes of the current item
// are kept (by absolute offset) until the decoder's event for it, then written by ber-stream.ts's
// BerItemWriter, the same code qemuToBer runs. Browser-safe.
import { VmstreamError } from "../io/errors.js";
import { ByteWriter } from "../io/writer.js";
import { CMD, QEMU_VM_FILE_VERSION } from "../savevm/constants.js";
import { StreamEncoder } from "../savevm/encoder.js";
import type {
  ConfigurationInfo, DecodeResult, DecoderEvent, DeviceSectionResult, FeedResult, HandlerContext, HandlerFactory, SectionHandler, SectionHeader,
  SectionInput, SectionRecord,
} from "../savevm/types.js";
import { descriptionFromVmdesc } from "../vmstate/from-vmdesc.js";
import { builtinHandlers, StreamDecoder, type StreamDecoderOptions } from "../sections/stream.js";
import { BerItemWriter, berRamOptions, type BerStreamOptions, type BerStreamReport } from "./ber.js";
import { BlockWriter, HtabWriter } from "../sections/block/writer.js";
import {
  blockRecords, commandBytes, deviceSpec, htabItems, joinChunks, PackageStack, ramRecords, ramReplayOptions, writeVmdescTrailer,
  type RamReplayOptions, type ReencodeOptions, type ReencodeReport,
} from "./replay.js";
import { RamWriter } from "../sections/ram/writer.js";

/** Where the encoder's placeholder page size shows in the generated vmdesc (fixed at the end, see finish()). */
const PLACEHOLDER_PAGE_SIZE = 4096;

/**
 * The decoder of a replay, as decodeForReplay configures it (nothing materialised, devices without a
 * registered description described from the vmdesc), with every live handler passed through `wrap` and every
 * event to `event` (then to the caller's own onEvent).
 */
function replayDecoder(
  d: StreamDecoderOptions = {},
  wrap: (ctx: HandlerContext, inner: SectionHandler) => SectionHandler,
  event: (e: DecoderEvent) => void,
): StreamDecoder {
  const factories: Record<string, HandlerFactory> = { ...builtinHandlers, ...(d.handlers ?? {}) };
  const handlers: Record<string, HandlerFactory> = {};
  for (const [idstr, f] of Object.entries(factories)) handlers[idstr] = (ctx) => wrap(ctx, f(ctx));
  const userEvent = d.onEvent;
  return new StreamDecoder({
    describe: (_i, _n, entry) => descriptionFromVmdesc(entry),
    ...d,
    materialize: false,
    handlers,
    onEvent: (e) => {
      event(e);
      userEvent?.(e);
    },
  });
}

/** A live handler that hands every run of records it consumed to the converter. */
class ReplayHandler implements SectionHandler {
  readonly idstr: string;
  readonly maxVersion: number;
  readonly lookupBlock?: (name: string) => { readonly length: bigint } | undefined;

  constructor(private readonly inner: SectionHandler, private readonly conv: StreamConverter) {
    this.idstr = inner.idstr;
    this.maxVersion = inner.maxVersion;
    if (inner.lookupBlock) this.lookupBlock = (name) => inner.lookupBlock!(name);
  }

  begin(header: SectionHeader): void {
    this.inner.begin(header);
    this.conv.liveBegin(header);
  }

  feed(input: SectionInput, header: SectionHeader): FeedResult {
    const r = this.inner.feed(input, header);
    // the handler may have grown the kernels' memory: take a fresh view
    if (r.consumed > 0) this.conv.liveBytes(header, input.kernels.u8.subarray(input.ptr, input.ptr + r.consumed));
    return r;
  }

  result(): unknown {
    return this.inner.result();
  }

  finish(): void {
    this.inner.finish?.();
  }

  dispose(): void {
    this.inner.dispose?.();
  }
}

/**
 * Push-style QEMU -> QEMU converter: `push(chunk)` returns the output bytes ready so far, `end()` the rest and
 * the report. Output chunks belong to the caller (they may be given back with `ByteWriter.release` once
 * written, so the converter reuses their buffers). The output of a PACKAGED command (postcopy) is held until its
 * body ends (its be32 length is that of the re-encoded body). Throws VmstreamError for bad input or what it
 * cannot re-encode (bytes QEMU skips inside a PACKAGED body); output handed out before an error is incomplete.
 */
export class StreamConverter {
  private readonly decoder: StreamDecoder;
  private readonly out = new ByteWriter({ initialCapacity: 1 << 20, borrowMin: Number.POSITIVE_INFINITY });
  private enc: StreamEncoder | undefined;
  private footersKnown = false;
  private ram: RamWriter | undefined;
  private readonly block = new BlockWriter(this.out);
  private readonly htab = new HtabWriter(this.out);
  /** The live section being replayed (its bytes, its kind). */
  private open: { header: SectionHeader; htabHeaderRead: boolean; raw: boolean; carry?: Uint8Array } | undefined;
  private sections = 0;
  private devices = 0;
  private commands = 0;
  private ramRecordCount = 0;
  private blockRecordCount = 0;
  private htabChunks = 0;
  private readonly rawSections: string[] = [];
  private pageSize = PLACEHOLDER_PAGE_SIZE;
  private ctx: HandlerContext | undefined;
  private ramOpts: RamReplayOptions | undefined;
  private done = false;
  /** Open PACKAGED commands: their output is held (not handed out) until the body length is patched in. */
  private readonly packages = new PackageStack(() => this.encoder());

  constructor(private readonly options: ReencodeOptions = {}) {
    this.decoder = replayDecoder(
      options.decode,
      (ctx, inner) => {
        this.ctx = ctx;
        return new ReplayHandler(inner, this);
      },
      (e) => this.event(e),
    );
  }

  /** Feed input bytes; returns the output ready so far. */
  push(chunk: Uint8Array): Uint8Array[] {
    this.decoder.push(chunk);
    return this.take();
  }

  /** The output ready so far: none while a PACKAGED body is open (its length field is still to be patched). */
  private take(): Uint8Array[] {
    return this.packages.depth > 0 ? [] : this.out.takeChunks();
  }

  /** Zero-copy input: a view of at least `min` free bytes of the decoder's window to read into, then commit(n). */
  inputSpace(min = 1): Uint8Array {
    return this.decoder.inputSpace(min);
  }

  /** `n` bytes were written into the last inputSpace(); returns the output ready so far. */
  commit(n: number): Uint8Array[] {
    this.decoder.commit(n);
    return this.take();
  }

  /** The input has ended: the rest of the output (vmdesc trailer included) and the report. */
  end(): { chunks: Uint8Array[]; report: ReencodeReport } {
    let r: DecodeResult;
    try {
      r = this.decoder.end();
    } catch (e) {
      this.done = true;
      throw e;
    }
    try {
      this.packages.closeAll();
      const enc = this.encoder();
      if (r.vmdesc) this.pageSize = r.vmdesc.json.page_size ?? r.pageSize;
      else this.pageSize = r.pageSize;
      const { vmdescGenerated, differences } = writeVmdescTrailer(enc, r.vmdesc && this.generatedVmdesc(enc), r.vmdesc, this.options.vmdesc);
      this.done = true;
      return {
        chunks: this.out.takeChunks(),
        report: {
          sections: this.sections,
          devices: this.devices,
          ramRecords: this.ramRecordCount,
          blockRecords: this.blockRecordCount,
          htabChunks: this.htabChunks,
          commands: this.commands,
          rawSections: this.rawSections,
          vmdescGenerated,
          vmdescDifferences: differences,
        },
      };
    } finally {
      r.dispose();
    }
  }

  /** Give back the decoder's memory (after an error, or to stop early). */
  dispose(): void {
    this.decoder.dispose();
    this.ram?.dispose();
  }

  // ------------------------------------------------------------------------------------------
  // driven by the decoder

  /** The encoder, created at the header (a headerless input gets the default header, as reencodeStream writes). */
  private encoder(version = QEMU_VM_FILE_VERSION): StreamEncoder {
    if (!this.enc) {
      // Footers: assumed on until the first section says (see the "section" event); the page size only
      // shows in the generated vmdesc text, fixed in generatedVmdesc().
      this.enc = new StreamEncoder(this.out, { configuration: true, footers: true, vmdesc: true, pageSize: PLACEHOLDER_PAGE_SIZE });
      this.enc.header(version);
    }
    return this.enc;
  }

  private generatedVmdesc(enc: StreamEncoder): string {
    const t = enc.vmdescText();
    const prefix = `{"page_size": ${PLACEHOLDER_PAGE_SIZE}`;
    return `{"page_size": ${this.pageSize}` + t.slice(prefix.length);
  }

  private event(e: DecoderEvent): void {
    switch (e.type) {
      case "header":
        this.encoder(e.version);
        return;
      case "configuration": {
        this.encoder().configuration(e.configuration);
        return;
      }
      case "section": {
        const s = e.section;
        this.sections++;
        let skipEnd = false;
        if (!this.footersKnown) {
          this.footersKnown = true;
          if (!s.footer) {
            // an old machine type (<= 2.3): the same writer on from here, without footers; the open live
            // section (if this is one) then has no footer to write
            this.enc = new StreamEncoder(this.out, { configuration: true, footers: false, vmdesc: true, pageSize: PLACEHOLDER_PAGE_SIZE });
            skipEnd = true;
          }
        }
        const o = this.open;
        if (!(o && o.header.offset === s.offset)) this.packages.closeBefore(s.offset);
        this.packages.ended(s.offset + s.size);
        if (o && o.header.offset === s.offset) {
          this.open = undefined;
          if (o.carry) throw new VmstreamError("INTERNAL", "a RAM record left incomplete at the end of its section", { offset: s.payloadOffset + s.payloadSize });
          if (o.raw) this.rawSections.push(`${s.idstr} (${s.type} at ${s.offset})`);
          if (!skipEnd) this.enc!.end();
        }
        // a device section: written at its "device" event, which follows
        return;
      }
      case "device":
        this.devices++;
        this.encoder().device(deviceSpec(e.device));
        return;
      case "command": {
        const c = e.command;
        this.commands++;
        this.packages.closeBefore(c.offset);
        if (c.cmd === CMD.PACKAGED) this.packages.begin(c.offset, c.fields.size as number);
        else {
          this.encoder().command(c.cmd, commandBytes(c));
          this.packages.ended(c.offset + 5 + c.length);
        }
        return;
      }
      case "eof":
        this.packages.closeBefore(e.offset);
        this.encoder().eof();
        return;
      default:
        return;
    }
  }

  /** A live section starts: its header is written now, its records as the handler consumes them. */
  liveBegin(h: SectionHeader): void {
    this.packages.closeBefore(h.offset);
    const enc = this.encoder();
    if (h.type === "start" || h.type === "full") enc.begin(h.type, h.id, h.idstr, h.instanceId, h.version);
    else enc.begin(h.type, h.id);
    const raw = h.type === "full" || !(h.idstr === "ram" || h.idstr === "block" || h.idstr === "spapr/htab");
    this.open = { header: h, htabHeaderRead: false, raw };
  }

  /** Whole records of the open live section, just validated by its handler (a view of the decoder's window). */
  liveBytes(h: SectionHeader, b: Uint8Array): void {
    const o = this.open;
    if (!o || o.header !== h) throw new VmstreamError("INTERNAL", "section bytes outside the section being replayed", { detail: h.idstr });
    if (o.raw) {
      this.out.bytes(b);
      return;
    }
    if (h.idstr === "ram") {
      if (!this.ram) {
        // the page size and MEM_SIZE options are fixed by now (the configuration comes before any section)
        const pageSize = this.ctx!.pageSize();
        const ro = ramReplayOptions(this.options, this.ctx!.configuration());
        this.ram = new RamWriter(this.out, pageSize, ro);
        this.ramOpts = { pageSize, ...ro };
      }
      // an incomplete MEM_SIZE record (taken entry by entry) waits for the rest of its entries
      const run = o.carry ? joinChunks([o.carry, b]) : b;
      o.carry = undefined;
      const it = ramRecords(run, 0, run.length, this.ramOpts!, true);
      for (let x = it.next(); ; x = it.next()) {
        if (x.done) {
          if (x.value < run.length) o.carry = run.slice(x.value);
          break;
        }
        this.ram.record(x.value);
        this.ramRecordCount++;
      }
    } else if (h.idstr === "block") {
      for (const rec of blockRecords(b, 0, b.length, true)) {
        this.block.record(rec);
        this.blockRecordCount++;
      }
    } else {
      for (const x of htabItems(b, 0, b.length, o.htabHeaderRead ? "rest" : "first")) {
        if (x.kind === "header") {
          this.htab.header(x.value);
          o.htabHeaderRead = true;
        } else if (x.kind === "end") this.htab.endMarker();
        else {
          this.htab.chunk(x);
          this.htabChunks++;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// QEMU -> BER as the input arrives

/** The input bytes not yet written out, by absolute offset (copies of the pushed chunks). */
class InputTail {
  private parts: { start: number; bytes: Uint8Array }[] = [];
  /** Index of the first part still held (parts before it are dropped; the array is compacted now and then). */
  private head = 0;
  /** Absolute offset of the next byte pushed. */
  end = 0;
  held = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.parts.push({ start: this.end, bytes: chunk.slice() });
    this.end += chunk.length;
    this.held += chunk.length;
  }

  /** Bytes [from, to): a view when one pushed chunk holds them, else a copy. */
  range(from: number, to: number): Uint8Array {
    const parts = this.parts;
    let i = this.head;
    while (i < parts.length && parts[i]!.start + parts[i]!.bytes.length <= from) i++;
    const first = parts[i];
    if (!first || first.start > from || to > this.end) throw new VmstreamError("INTERNAL", "input bytes no longer held", { offset: from, detail: `${from}..${to}` });
    if (to <= first.start + first.bytes.length) return first.bytes.subarray(from - first.start, to - first.start);
    const out = new Uint8Array(to - from);
    for (let p = from; p < to; i++) {
      const c = parts[i]!;
      const a = p - c.start;
      const n = Math.min(c.bytes.length - a, to - p);
      out.set(c.bytes.subarray(a, a + n), p - from);
      p += n;
    }
    return out;
  }

  /** Forget the bytes before `offset`. */
  drop(offset: number): void {
    const parts = this.parts;
    while (this.head < parts.length && parts[this.head]!.start + parts[this.head]!.bytes.length <= offset) {
      this.held -= parts[this.head]!.bytes.length;
      this.head++;
    }
    // compact in amortised linear time (tiny pushes make many parts)
    if (this.head > 64 && this.head * 2 > parts.length) {
      this.parts = parts.slice(this.head);
      this.head = 0;
    }
  }
}

/**
 * Push-style QEMU -> BER converter: the BER Stream of qemuToBer, written item by item as the QEMU input arrives.
 * Each item (a section with its payload, a command...) is written once the decoder has read all of it, so memory
 * holds the decoder's window plus the input bytes of the current item: at most the largest section (plus, for
 * device sections that wait for the vmdesc trailer, what the decoder buffers). `push()` / `end()` as for
 * StreamConverter; the output chunks belong to the caller.
 */
export class StreamBerConverter {
  private readonly decoder: StreamDecoder;
  private readonly items = new BerItemWriter();
  private readonly tail = new InputTail();
  private headerWritten = false;
  private ctx: HandlerContext | undefined;
  private liveAt = -1;
  private pendingDevice: SectionRecord | undefined;
  private config: ConfigurationInfo | undefined;

  constructor(private readonly options: BerStreamOptions = {}) {
    this.decoder = replayDecoder(
      options.decode,
      (ctx, inner) => {
        this.ctx = ctx;
        const begin = inner.begin.bind(inner);
        // a live section starts here: its "section" event is not followed by a "device" event
        inner.begin = (h) => {
          begin(h);
          this.liveAt = h.offset;
        };
        return inner;
      },
      (e) => this.event(e),
    );
  }

  /** Feed input bytes; returns the output ready so far. */
  push(chunk: Uint8Array): Uint8Array[] {
    this.tail.push(chunk);
    this.decoder.push(chunk);
    return this.items.take();
  }

  /** The input has ended: the rest of the output and the report. */
  end(): { chunks: Uint8Array[]; report: BerStreamReport } {
    const r = this.decoder.end();
    try {
      this.ensureHeader();
      this.items.finish();
      return { chunks: this.items.take(), report: this.items.report() };
    } finally {
      r.dispose();
    }
  }

  dispose(): void {
    this.decoder.dispose();
  }

  /** Input bytes held for the current item (for tests and diagnostics). */
  get heldBytes(): number {
    return this.tail.held;
  }

  private ensureHeader(version = QEMU_VM_FILE_VERSION): void {
    if (this.headerWritten) return;
    this.headerWritten = true;
    this.items.header(version);
  }

  /** Bytes [from, to) as an array whose index 0 is offset `from`. */
  private bytes(from: number, to: number): Uint8Array {
    return this.tail.range(from, to);
  }

  private event(e: DecoderEvent): void {
    switch (e.type) {
      case "header":
        this.ensureHeader(e.version);
        this.tail.drop(8);
        return;
      case "configuration": {
        this.ensureHeader();
        const c = e.configuration;
        this.config = c;
        this.items.configuration(this.bytes(c.offset, c.offset + c.size), { ...c, offset: 0 });
        this.tail.drop(c.offset + c.size);
        return;
      }
      case "section": {
        this.ensureHeader();
        const s = e.section;
        if (s.offset === this.liveAt) this.section(s, undefined);
        else this.pendingDevice = s;
        return;
      }
      case "device": {
        const s = this.pendingDevice;
        if (!s || s.payloadOffset !== e.device.payloadOffset) throw new VmstreamError("INTERNAL", "a device without its section record", { offset: e.device.payloadOffset });
        this.pendingDevice = undefined;
        this.section(s, e.device);
        return;
      }
      case "command": {
        this.ensureHeader();
        const c = e.command;
        if (c.cmd === CMD.PACKAGED || c.depth > 0) throw new VmstreamError("UNSUPPORTED", "converting to BER PACKAGED (postcopy) streams is not supported yet", { offset: c.offset });
        const end = c.offset + 5 + c.length;
        this.items.command(this.bytes(c.offset, end), { ...c, offset: 0 });
        this.tail.drop(end);
        return;
      }
      case "eof":
        this.ensureHeader();
        this.items.eof();
        this.tail.drop(e.offset + 1);
        return;
      case "vmdesc": {
        const v = e.vmdesc;
        const at = v.offset!;
        this.items.vmdesc(this.bytes(at, at + 5 + v.length), { ...v, offset: 0 });
        this.tail.drop(at + 5 + v.length);
        return;
      }
      default:
        return;
    }
  }

  private section(s: SectionRecord, dev: DeviceSectionResult | undefined): void {
    const end = s.offset + s.size;
    const b = this.bytes(s.offset, end);
    const shifted: SectionRecord = { ...s, offset: 0, payloadOffset: s.payloadOffset - s.offset };
    const pageSize = this.ctx?.pageSize() ?? this.options.decode?.pageSize ?? 4096;
    this.items.section(b, shifted, dev, berRamOptions(this.options, pageSize, this.config));
    this.tail.drop(end);
  }
}
