// QEMU -> BER (docs/ber.md): the decoder's events written as one BER `Stream`, item by item as the input
// arrives. Device states go through the BER visitor with their descriptions, the configuration through its
// description, live sections as their kind's record form when the records fit the schema (else OpaqueState),
// commands from their fields. A live section's form depends on all of it, so its records and input bytes are
// held until it ends: memory is the decoder's window plus the largest section. Browser-safe.
import { ChunkedBerWriter } from "../ber/chunked.js";
import { T_SEQUENCE } from "../ber/writer.js";
import { joinChunks } from "../io/chunks.js";
import { VmstreamError } from "../io/errors.js";
import { commandData } from "../savevm/commands.js";
import { configurationDescription } from "../savevm/configuration.js";
import { CMD, QEMU_VM_FILE_MAGIC, QEMU_VM_FILE_VERSION } from "../savevm/constants.js";
import type { CommandRecord, ConfigurationInfo, DecoderEvent, DeviceSectionResult, SectionHeader, SectionRecord } from "../savevm/types.js";
import { sectionKind } from "../sections/kinds.js";
import type { StreamDecoder, StreamDecoderOptions } from "../sections/stream.js";
import { BerOutputVisitor } from "../visitor/ber/index.js";
import { saveState } from "../vmstate/engine.js";
import { SECTION_TAGS, TAG_COMMAND, TAG_CONFIGURATION, TAG_EOF, TAG_FOOTER, TAG_HEADER, TAG_OPAQUE, TAG_STREAM, TAG_VMDESC } from "./ber-items.js";
import { deviceSpec } from "./devices.js";
import { InputTail } from "./input-tail.js";
import { convertBuffer, RecordCopier, RecordCounts, type ReplayCounts, replayDecoder, verdictField } from "./replay.js";

export interface BerStreamOptions {
  /** Decoder options for the QEMU input (inflate for COMPRESS_PAGE, page size, ram options...). */
  readonly decode?: StreamDecoderOptions;
}

export interface BerStreamReport extends ReplayCounts {
  /** Sections written as OpaqueState (payload bytes as sent). */
  readonly opaqueSections: readonly string[];
  /** Data bytes handed out as views (not copied into the writer). */
  readonly borrowedBytes: number;
}

export interface BerStreamResult {
  readonly chunks: Uint8Array[];
  readonly bytes: number;
  readonly report: BerStreamReport;
}

/** A section's body: a device's state, a live section's records, or its payload as sent. */
type SectionBody = { readonly device: DeviceSectionResult } | { readonly records: readonly unknown[] } | { readonly opaque: Uint8Array };

/** Writes the items of one BER Stream front to back; settled output is taken with take(). */
class BerItemWriter {
  private readonly out = new ChunkedBerWriter();
  private readonly w = this.out.w;
  readonly count = { sections: 0, devices: 0, commands: 0 };
  private readonly records = new RecordCounts();
  readonly opaque: string[] = [];

  /** The Stream, its Header and the items SEQUENCE are opened. */
  header(version: number): void {
    const w = this.w;
    w.fork(TAG_STREAM, true);
    w.fork(TAG_HEADER, true);
    w.int(QEMU_VM_FILE_MAGIC);
    w.int(version);
    w.join();
    w.fork(T_SEQUENCE, true); // items
  }

  configuration(c: ConfigurationInfo): void {
    const v = new BerOutputVisitor({ writer: this.w, rootTag: TAG_CONFIGURATION });
    saveState(v, configurationDescription({ configName: c.state.len as number, capabilities: c.capabilities?.length ?? 0 }), c.state);
    if (v.error) throw v.error;
  }

  command(c: CommandRecord): void {
    this.count.commands++;
    this.w.fork(TAG_COMMAND, true);
    this.w.int(c.cmd);
    this.out.octets(commandData(c));
    this.w.join();
  }

  section(s: SectionRecord, idstr: Uint8Array | undefined, body: SectionBody): void {
    const w = this.w;
    this.count.sections++;
    w.fork(SECTION_TAGS[s.type], true);
    w.int(s.id >>> 0);
    if (idstr) {
      this.out.qemuString(idstr);
      w.int(s.instanceId >>> 0);
      w.int(s.version >>> 0);
    }
    if ("device" in body) {
      this.count.devices++;
      const spec = deviceSpec(body.device);
      const v = new BerOutputVisitor({ writer: w });
      saveState(v, spec.description, spec.state, body.device.idstr);
      if (v.error) throw v.error;
    } else if ("records" in body) {
      sectionKind(s.idstr)!.ber!.write(this.out, body.records);
      for (const r of body.records) this.records.add(s.idstr, r);
    } else {
      this.out.octets(body.opaque, TAG_OPAQUE);
      this.opaque.push(`${s.idstr} (${s.type} at ${s.offset})`);
    }
    if (s.footer) w.int(s.id >>> 0, TAG_FOOTER);
    w.join();
  }

  eof(): void {
    this.w.null(TAG_EOF);
  }

  vmdesc(bytes: Uint8Array): void {
    this.out.octets(bytes, TAG_VMDESC);
  }

  /** Close the items and the Stream. */
  finish(): void {
    this.w.join(); // items
    this.w.join(); // Stream
    this.out.finish();
  }

  /** The chunks settled since the last call. */
  take(): Uint8Array[] {
    return this.out.drain();
  }

  report(): BerStreamReport {
    const c = this.count;
    return {
      sections: c.sections,
      devices: c.devices,
      ramRecords: this.records.ram,
      blockRecords: this.records.block,
      htabChunks: this.records.htabChunks,
      commands: c.commands,
      opaqueSections: this.opaque,
      borrowedBytes: this.out.borrowed,
    };
  }
}

/**
 * Push-style QEMU -> BER converter: `push(chunk)` returns the output ready so far, `end()` the rest and the
 * report; the output chunks belong to the caller. PACKAGED (postcopy) streams are refused.
 */
export class StreamBerConverter {
  private readonly decoder: StreamDecoder;
  private readonly items = new BerItemWriter();
  private readonly tail = new InputTail();
  private headerWritten = false;
  /** The live section being read: its records (copies), or undefined after a payload without records. */
  private live: { header: SectionHeader; records: unknown[] | undefined } | undefined;
  private pendingDevice: SectionRecord | undefined;
  private readonly copier = new RecordCopier();

  /** `stableInput`: pushed chunks stay unchanged until end() (they are held as views, not copied). */
  constructor(
    options: BerStreamOptions = {},
    private readonly stableInput = false,
  ) {
    this.decoder = replayDecoder(options.decode, (e) => this.event(e));
  }

  /** Feed input bytes; returns the output ready so far. */
  push(chunk: Uint8Array): Uint8Array[] {
    this.tail.push(chunk, !this.stableInput);
    this.decoder.push(chunk);
    return this.items.take();
  }

  /** The input has ended: the rest of the output and the report. */
  end(): { chunks: Uint8Array[]; report: BerStreamReport } {
    const r = this.decoder.end();
    try {
      this.ensureHeader();
      this.items.finish();
      return { chunks: this.items.take(), report: { ...this.items.report(), ...verdictField(r) } };
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

  private event(e: DecoderEvent): void {
    switch (e.type) {
      case "header":
        this.ensureHeader(e.version);
        this.tail.drop(8);
        return;
      case "configuration": {
        this.ensureHeader();
        this.items.configuration(e.configuration);
        this.tail.drop(e.configuration.offset + e.configuration.size);
        return;
      }
      case "begin":
        this.live = { header: e.header, records: sectionKind(e.header.idstr)?.ber && e.header.type !== "full" ? [] : undefined };
        return;
      case "record":
        this.live!.records?.push(this.copier.copy(e.record));
        return;
      case "payload":
        this.live!.records = undefined;
        return;
      case "section": {
        this.ensureHeader();
        const s = e.section;
        if (this.live && this.live.header.offset === s.offset) {
          const records = this.live.records;
          this.live = undefined;
          const fits = records !== undefined && sectionKind(s.idstr)!.ber!.fits(records, s.payloadSize);
          this.section(s, fits ? { records } : { opaque: this.tail.range(s.payloadOffset, s.payloadOffset + s.payloadSize) });
        } else this.pendingDevice = s;
        return;
      }
      case "device": {
        const s = this.pendingDevice;
        if (!s || s.payloadOffset !== e.device.payloadOffset)
          throw new VmstreamError("INTERNAL", "a device without its section record", { offset: e.device.payloadOffset });
        this.pendingDevice = undefined;
        this.section(s, { device: e.device });
        return;
      }
      case "command": {
        this.ensureHeader();
        const c = e.command;
        if (c.cmd === CMD.PACKAGED || c.depth > 0)
          throw new VmstreamError("UNSUPPORTED", "converting to BER PACKAGED (postcopy) streams is not supported yet", { offset: c.offset });
        this.items.command(c);
        this.tail.drop(c.offset + 5 + c.length);
        return;
      }
      case "eof":
        this.ensureHeader();
        this.items.eof();
        this.tail.drop(e.offset + 1);
        return;
      case "vmdesc": {
        const at = e.vmdesc.offset!;
        const end = at + 5 + e.vmdesc.length;
        this.items.vmdesc(this.tail.range(at + 5, end));
        this.tail.drop(end);
        return;
      }
      default:
        return;
    }
  }

  private section(s: SectionRecord, body: SectionBody): void {
    const named = s.type === "start" || s.type === "full";
    const idstr = named ? this.tail.range(s.offset + 6, s.offset + 6 + this.tail.range(s.offset + 5, s.offset + 6)[0]!) : undefined;
    this.items.section(s, idstr, body);
    this.tail.drop(s.offset + s.size);
  }
}

/** QEMU stream (decompressed, in memory) -> BER stream. Throws for what it cannot carry (PACKAGED commands). */
export function qemuToBer(input: Uint8Array, options: BerStreamOptions = {}): BerStreamResult {
  return convertBuffer(new StreamBerConverter(options, true), input);
}

/** Convenience: QEMU -> BER in one buffer. */
export function qemuToBerBytes(input: Uint8Array, options: BerStreamOptions = {}): Uint8Array {
  const r = qemuToBer(input, options);
  return joinChunks(r.chunks, r.bytes);
}
