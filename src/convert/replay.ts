// QEMU -> QEMU re-encoding through the model: the stream is decoded (framing, configuration, device states with
// their descriptions, commands), then written again by the StreamEncoder: the configuration from its decoded
// fields, every device section by its description's walk (wire visitor) with its vmdesc object written in the
// same walk, and the iterative sections (ram, block, spapr/htab) record by record: each payload is read into
// records (flags, offsets, block names, fill bytes; page / XBZRLE / zlib / chunk data as views into the input,
// never copied) and every record is written again by RamWriter / BlockWriter / HtabWriter. Browser-safe.
import { VmstreamError } from "../io/errors.js";
import { ByteWriter } from "../io/writer.js";
import { RAM_FLAG } from "../kernels/types.js";
import { descriptionFromVmdesc } from "../vmstate/from-vmdesc.js";
import { CMD } from "../savevm/constants.js";
import { StreamEncoder, type DeviceSpec } from "../savevm/encoder.js";
import type { CommandRecord, ConfigurationInfo, DecodeResult, DeviceSectionResult, SectionRecord, VmdescInfo } from "../savevm/types.js";
import { BLK_MIG, BLOCK_CHUNK } from "../sections/block/handler.js";
import { decodeBytes, type StreamDecoderOptions } from "../sections/stream.js";
import { BlockWriter, HtabWriter, type BlockRecord } from "../sections/block/writer.js";
import { RamWriter, type RamBlockSpec, type RamRecord } from "../sections/ram/writer.js";

const td = new TextDecoder("utf-8");

// ---------------------------------------------------------------------------------------------
// record readers (the payload of one section, already validated by the decoder)

class Cursor {
  p: number;
  private readonly dv: DataView;
  constructor(readonly b: Uint8Array, start: number, readonly end: number) {
    this.p = start;
    this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  need(n: number): void {
    if (this.p + n > this.end) throw new VmstreamError("EOF", "record runs past its section payload", { offset: this.p });
  }
  u8(): number {
    this.need(1);
    return this.b[this.p++]!;
  }
  be16(): number {
    this.need(2);
    const v = this.dv.getUint16(this.p);
    this.p += 2;
    return v;
  }
  be32(): number {
    this.need(4);
    const v = this.dv.getUint32(this.p);
    this.p += 4;
    return v;
  }
  be64(): bigint {
    this.need(8);
    const v = this.dv.getBigUint64(this.p);
    this.p += 8;
    return v;
  }
  view(n: number): Uint8Array {
    this.need(n);
    const v = this.b.subarray(this.p, this.p + n);
    this.p += n;
    return v;
  }
}

export interface RamReplayOptions {
  readonly pageSize: number;
  readonly ignoreShared?: boolean;
  readonly blockPageSize?: boolean | ((name: string) => boolean);
}

/**
 * The RAM records of one ram section payload [start, end) of `b`, in order (the last is EOS). With `partial`,
 * [start, end) is a run of records of a payload (what a handler consumed in one feed): it may end before EOS
 * or inside a MEM_SIZE record (the RAM handler takes its entries one by one), block names are copied (the
 * bytes may be reused), and the generator returns where it stopped (the start of an incomplete MEM_SIZE record).
 */
export function* ramRecords(b: Uint8Array, start: number, end: number, o: RamReplayOptions, partial = false): Generator<RamRecord, number> {
  const c = new Cursor(b, start, end);
  const mask = BigInt(o.pageSize - 1);
  while (c.p < end) {
    const hdr = c.be64();
    const flags = Number(hdr & mask);
    const addr = hdr & ~mask;
    const kind = flags & ~RAM_FLAG.CONTINUE;
    if (kind === RAM_FLAG.EOS || kind === RAM_FLAG.HOOK) {
      yield { flags, addr };
      if (kind === RAM_FLAG.EOS) return c.p;
      continue;
    }
    if (kind === RAM_FLAG.MEM_SIZE) {
      const at = c.p - 8;
      const blocks: RamBlockSpec[] = [];
      let left = addr;
      try {
        while (left > 0n) {
          const name = td.decode(c.view(c.u8()));
          const length = c.be64();
          const ps = typeof o.blockPageSize === "function" ? o.blockPageSize(name) : o.blockPageSize === true;
          const pageSize = ps ? c.be64() : undefined;
          const mrAddr = o.ignoreShared ? c.be64() : undefined;
          blocks.push({ name, length, ...(pageSize !== undefined ? { pageSize } : {}), ...(mrAddr !== undefined ? { mrAddr } : {}) });
          left -= length;
        }
      } catch (e) {
        if (partial && e instanceof VmstreamError && e.code === "EOF") return at;
        throw e;
      }
      yield { flags, addr, blocks };
      continue;
    }
    const nameView = flags & RAM_FLAG.CONTINUE ? undefined : c.view(c.u8());
    const name = partial ? nameView?.slice() : nameView;
    switch (kind) {
      case RAM_FLAG.ZERO:
        yield { flags, addr, name, fill: c.u8() };
        break;
      case RAM_FLAG.PAGE:
        yield { flags, addr, name, data: c.view(o.pageSize) };
        break;
      case RAM_FLAG.XBZRLE: {
        const encoding = c.u8();
        const len = c.be16();
        yield { flags, addr, name, encoding, data: c.view(len) };
        break;
      }
      case RAM_FLAG.COMPRESS_PAGE: {
        const len = c.be32();
        yield { flags, addr, name, data: c.view(len) };
        break;
      }
      default:
        throw new VmstreamError("BAD_VALUE", "unknown RAM record", { offset: c.p - 8, detail: `flags 0x${flags.toString(16)}` });
    }
  }
  if (!partial) throw new VmstreamError("EOF", "ram section payload without EOS", { offset: end });
  return end;
}

/** The block-migration records of one block section payload (the last is EOS; `partial`: as for ramRecords). */
export function* blockRecords(b: Uint8Array, start: number, end: number, partial = false): Generator<BlockRecord> {
  const c = new Cursor(b, start, end);
  while (c.p < end) {
    const hdr = c.be64();
    const flags = Number(hdr & 0x1ffn);
    const value = hdr >> 9n;
    if (flags & BLK_MIG.DEVICE_BLOCK) {
      const name = c.view(c.u8());
      yield flags & BLK_MIG.ZERO_BLOCK ? { flags, value, name } : { flags, value, name, data: c.view(BLOCK_CHUNK) };
      continue;
    }
    yield { flags, value };
    if (flags & BLK_MIG.EOS) return;
  }
  if (!partial) throw new VmstreamError("EOF", "block section payload without EOS", { offset: end });
}

export type HtabItem = { kind: "header"; value: number } | { kind: "chunk"; index: number; nValid: number; nInvalid: number; hptes: Uint8Array } | { kind: "end" };

/**
 * The items of one spapr/htab section payload: the header, then (header 0) chunks and the end marker. With
 * `partial`, [start, end) is a run of whole items (what a handler consumed in one feed) that may stop before
 * the end marker: "first" starts with the header, "rest" after it.
 */
export function* htabItems(b: Uint8Array, start: number, end: number, partial?: "first" | "rest"): Generator<HtabItem> {
  const c = new Cursor(b, start, end);
  if (partial !== "rest") {
    const value = c.be32();
    yield { kind: "header", value };
    if (value !== 0) return;
  }
  for (;;) {
    if (partial !== undefined && c.p === end) return;
    const index = c.be32();
    const nValid = c.be16();
    const nInvalid = c.be16();
    if (index === 0 && nValid === 0 && nInvalid === 0) {
      yield { kind: "end" };
      return;
    }
    yield { kind: "chunk", index, nValid, nInvalid, hptes: c.view(16 * nValid) };
  }
}

// ---------------------------------------------------------------------------------------------
// the converter

export interface ReencodeOptions {
  /** Decoder options (inflate for COMPRESS_PAGE, page size, ram options...). */
  readonly decode?: StreamDecoderOptions;
  /**
   * The vmdesc trailer: "auto" (default) writes the text generated by the device walks when it equals the
   * stream's, else the stream's own text; "generated" always the generated one; "original" the stream's.
   */
  readonly vmdesc?: "auto" | "generated" | "original";
}

export interface ReencodeReport {
  readonly sections: number;
  readonly devices: number;
  readonly ramRecords: number;
  readonly blockRecords: number;
  readonly htabChunks: number;
  readonly commands: number;
  /** Sections whose payload was copied as bytes (handlers the encoder has no writer for, e.g. dirty-bitmap). */
  readonly rawSections: readonly string[];
  /** Whether the vmdesc written is the one generated by the device walks (undefined: no vmdesc). */
  readonly vmdescGenerated: boolean | undefined;
  /** Devices whose generated vmdesc object differs from the stream's (then the stream's text was written). */
  readonly vmdescDifferences: readonly string[];
}

export interface ReencodeResult {
  /** The re-encoded stream as gathered chunks (views into the input for page data). */
  readonly chunks: Uint8Array[];
  readonly bytes: number;
  readonly report: ReencodeReport;
}

/** The data bytes of a decoded command, as the replay writes them again. */
export function commandBytes(c: CommandRecord): Uint8Array {
  const w = new ByteWriter();
  const f = c.fields;
  switch (c.cmd) {
    case CMD.OPEN_RETURN_PATH:
    case CMD.POSTCOPY_LISTEN:
    case CMD.POSTCOPY_RUN:
    case CMD.ENABLE_COLO:
    case CMD.POSTCOPY_RESUME:
      break;
    case CMD.PING:
      w.be32(f.value as number);
      break;
    case CMD.POSTCOPY_ADVISE:
      if (c.length === 16) {
        w.be64(f.pageSizeSummary as bigint);
        w.be64(f.targetPageSize as bigint);
      }
      break;
    case CMD.POSTCOPY_RAM_DISCARD:
      w.u8(0);
      w.cstr(f.block as string);
      w.u8(0);
      for (const r of f.ranges as { start: bigint; length: bigint }[]) {
        w.be64(r.start);
        w.be64(r.length);
      }
      break;
    default:
      throw new VmstreamError("UNSUPPORTED", `re-encoding the ${c.name} command is not supported`, { offset: c.offset });
  }
  return w.concat();
}

function canonical(v: unknown): string {
  return JSON.stringify(v);
}

/**
 * Re-encode a whole QEMU stream held in memory (decompressed): QEMU -> model -> QEMU. For a stream QEMU wrote,
 * the output is byte-identical (PACKAGED bodies included). Throws for what it cannot re-encode (bytes QEMU skips
 * inside a PACKAGED body).
 */
export function reencodeStream(input: Uint8Array, options: ReencodeOptions = {}): ReencodeResult {
  const r = decodeForReplay(input, options.decode);
  try {
    return reencodeDecoded(input, r, options);
  } finally {
    r.dispose();
  }
}

/**
 * Decode a stream held in memory for a record-by-record replay: nothing materialised, every section
 * and command listed, device sections without a registered description described from the vmdesc.
 */
export function decodeForReplay(input: Uint8Array, d: StreamDecoderOptions = {}): DecodeResult {
  const big = { sectionRecords: Number.MAX_SAFE_INTEGER, commandRecords: Number.MAX_SAFE_INTEGER, ...(d.limits ?? {}) };
  return decodeBytes(input, { describe: (_i, _n, entry) => descriptionFromVmdesc(entry), ...d, materialize: false, limits: big });
}

/**
 * A decode result can be replayed when it lists every section and command; with `packaged: false` (the BER
 * converters) it must also hold no PACKAGED (postcopy) command.
 */
export function assertReplayable(r: DecodeResult, what: string, packaged = false): void {
  if (r.sections.length !== r.sectionCount || r.commands.length !== r.commandCount) {
    throw new VmstreamError("LIMIT", "the decode result does not list every section and command (raise limits.sectionRecords / commandRecords)");
  }
  if (!packaged && r.commands.some((c) => c.cmd === CMD.PACKAGED || c.depth > 0)) throw new VmstreamError("UNSUPPORTED", `${what} PACKAGED (postcopy) streams is not supported yet`);
}

/**
 * The open PACKAGED commands of a replay (postcopy): each body is re-encoded item by item between
 * beginPackaged() and endPackaged(), so its be32 length is that of the re-encoded body. A body must end with
 * its last decoded item: QEMU skips what follows POSTCOPY_RUN (or an EOF) inside a package, the decoder
 * records nothing of it, so it cannot be written again.
 */
export class PackageStack {
  private readonly open: { end: number; token: number; last: number; at: number }[] = [];

  constructor(private readonly enc: () => StreamEncoder) {}

  get depth(): number {
    return this.open.length;
  }

  /** A PACKAGED command at input offset `at` with body size `size` was just decoded: open it. */
  begin(at: number, size: number): void {
    const token = this.enc().beginPackaged();
    this.open.push({ end: at + 9 + size, token, last: at + 9, at });
  }

  /** An item starts at input offset `at`: close the packages that end at or before it. */
  closeBefore(at: number): void {
    for (let p = this.open[this.open.length - 1]; p && p.end <= at; p = this.open[this.open.length - 1]) {
      if (p.last !== p.end) {
        throw new VmstreamError("UNSUPPORTED", "a PACKAGED body with bytes after its last item (after POSTCOPY_RUN or EOF, QEMU skips them) cannot be re-encoded", {
          offset: p.last,
          detail: `${p.end - p.last} bytes skipped in the package at ${p.at}`,
        });
      }
      this.open.pop();
      this.enc().endPackaged(p.token);
      this.ended(p.end);
    }
  }

  /** An item inside the innermost open package ends at input offset `end`. */
  ended(end: number): void {
    const top = this.open[this.open.length - 1];
    if (top) top.last = end;
  }

  /** The input has ended: close every package. */
  closeAll(): void {
    this.closeBefore(Number.POSITIVE_INFINITY);
  }
}

/**
 * An encoder with the framing of a decoded stream (configuration section, footers, vmdesc trailer as the input
 * had them), its header and configuration written.
 */
export function startEncoding(r: DecodeResult, out: ByteWriter, pageSize = r.pageSize): StreamEncoder {
  const enc = new StreamEncoder(out, { configuration: r.configuration !== undefined, footers: r.footers ?? true, vmdesc: r.vmdesc !== undefined, pageSize });
  enc.header(r.version);
  if (r.configuration) enc.configuration(r.configuration);
  return enc;
}

/** Re-encode from a decode result of `input` (every section and command must be listed in it). */
export function reencodeDecoded(input: Uint8Array, r: DecodeResult, options: ReencodeOptions = {}): ReencodeResult {
  assertReplayable(r, "re-encoding", true);
  const out = new ByteWriter({ initialCapacity: 1 << 16 });
  const enc = startEncoding(r, out, r.vmdesc?.json.page_size ?? r.pageSize);
  const ramOpts = d(r);
  const ram = new RamWriter(out, r.pageSize, ramOpts);
  const block = new BlockWriter(out);
  const htab = new HtabWriter(out);
  const devicesBySection = new Map<number, DeviceSectionResult>();
  for (const dev of r.devices) devicesBySection.set(dev.sectionIndex, dev);
  const rawSections: string[] = [];
  let ramRecordCount = 0;
  let blockRecordCount = 0;
  let htabChunks = 0;

  // sections and commands in stream order
  type Item = { at: number; s?: SectionRecord; i?: number; c?: CommandRecord };
  const items: Item[] = r.sections.map((s, i) => ({ at: s.offset, s, i }));
  for (const c of r.commands) items.push({ at: c.offset, c });
  items.sort((a, b) => a.at - b.at);

  const packages = new PackageStack(() => enc);
  for (const it of items) {
    packages.closeBefore(it.at);
    if (it.c) {
      const c = it.c;
      if (c.cmd === CMD.PACKAGED) packages.begin(c.offset, c.fields.size as number);
      else {
        enc.command(c.cmd, commandBytes(c));
        packages.ended(c.offset + 5 + c.length);
      }
      continue;
    }
    const s = it.s!;
    packages.ended(s.offset + s.size);
    const dev = devicesBySection.get(it.i!);
    if (dev) {
      enc.device(deviceSpec(dev));
      continue;
    }
    if (s.type === "start" || s.type === "full") enc.begin(s.type, s.id, s.idstr, s.instanceId, s.version);
    else enc.begin(s.type, s.id);
    const from = s.payloadOffset;
    const to = s.payloadOffset + s.payloadSize;
    if (s.idstr === "ram" && s.type !== "full") {
      for (const rec of ramRecords(input, from, to, { pageSize: r.pageSize, ...ramOpts })) {
        ram.record(rec);
        ramRecordCount++;
      }
    } else if (s.idstr === "block" && s.type !== "full") {
      for (const rec of blockRecords(input, from, to)) {
        block.record(rec);
        blockRecordCount++;
      }
    } else if (s.idstr === "spapr/htab" && s.type !== "full") {
      for (const x of htabItems(input, from, to)) {
        if (x.kind === "header") htab.header(x.value);
        else if (x.kind === "end") htab.endMarker();
        else {
          htab.chunk(x);
          htabChunks++;
        }
      }
    } else {
      out.borrow(input.subarray(from, to));
      rawSections.push(`${s.idstr} (${s.type} at ${s.offset})`);
    }
    enc.end();
  }
  packages.closeAll();
  if (r.eof) enc.eof();

  const { vmdescGenerated, differences } = writeVmdescTrailer(enc, r.vmdesc && enc.vmdescText(), r.vmdesc, options.vmdesc);
  const chunks = out.chunks();
  const bytes = out.byteLength;
  return {
    chunks,
    bytes,
    report: {
      sections: r.sections.length,
      devices: r.devices.length,
      ramRecords: ramRecordCount,
      blockRecords: blockRecordCount,
      htabChunks,
      commands: r.commands.length,
      rawSections,
      vmdescGenerated,
      vmdescDifferences: differences,
    },
  };

  function d(res: DecodeResult): { ignoreShared?: boolean; blockPageSize?: boolean | ((n: string) => boolean) } {
    return ramReplayOptions(options, res.configuration);
  }
}

/** The MEM_SIZE options of a replay: the decoder's ram options, else x-ignore-shared as the configuration announces. */
export function ramReplayOptions(options: ReencodeOptions, config: ConfigurationInfo | undefined): { ignoreShared?: boolean; blockPageSize?: boolean | ((n: string) => boolean) } {
  const ro = options.decode?.ram ?? {};
  const ignoreShared = ro.ignoreShared ?? (config?.capabilities?.includes("x-ignore-shared") ?? false);
  return { ignoreShared, ...(ro.blockPageSize !== undefined ? { blockPageSize: ro.blockPageSize } : {}) };
}

/**
 * Write the vmdesc trailer of a replay (when the input had one): the text the device walks generated when the
 * mode allows and it equals the stream's (else the stream's own), and which devices' objects differ.
 */
export function writeVmdescTrailer(
  enc: StreamEncoder,
  generated: string | undefined,
  vmdesc: VmdescInfo | undefined,
  mode: ReencodeOptions["vmdesc"] = "auto",
): { vmdescGenerated: boolean | undefined; differences: string[] } {
  let vmdescGenerated: boolean | undefined;
  const differences: string[] = [];
  if (vmdesc && generated !== undefined) {
    if (mode === "generated" || (mode === "auto" && generated === vmdesc.text)) {
      enc.vmdescTrailer(generated);
      vmdescGenerated = true;
    } else {
      enc.vmdescTrailer(vmdesc.text);
      vmdescGenerated = false;
    }
    if (generated !== vmdesc.text) {
      let gen: { devices?: unknown[] } = {};
      try {
        gen = JSON.parse(generated) as { devices?: unknown[] };
      } catch {
        differences.push("(generated text is not JSON)");
      }
      const orig = vmdesc.json.devices;
      const g = gen.devices ?? [];
      for (let i = 0; i < Math.max(orig.length, g.length); i++) {
        if (canonical(orig[i]) !== canonical(g[i])) {
          const o = orig[i] as { name?: string; instance_id?: number } | undefined;
          differences.push(o ? `${o.name}/${o.instance_id}` : `#${i}`);
        }
      }
      if (differences.length === 0) differences.push("(formatting only)");
    }
  }
  return { vmdescGenerated, differences };
}

/** How a decoded device section is written again: its description at the section's version, its vmdesc kind. */
export function deviceSpec(dev: DeviceSectionResult): DeviceSpec {
  const legacy = dev.source === "legacy" || (dev.vmdesc !== undefined && dev.vmdesc.vmsd_name === undefined);
  // descriptions made from a vmdesc entry accept any version: write them at the section's
  const description = dev.source === "registry" ? dev.description : { ...dev.description, version: dev.version };
  return {
    id: dev.sectionId,
    idstr: dev.idstr,
    instanceId: dev.instanceId,
    version: dev.version,
    description,
    state: dev.state,
    vmdesc: legacy ? "legacy" : "vmstate",
  };
}

/** Concatenate gathered chunks. */
export function joinChunks(chunks: readonly Uint8Array[], total?: number): Uint8Array {
  const n = total ?? chunks.reduce((a, c) => a + c.length, 0);
  const o = new Uint8Array(n);
  let p = 0;
  for (const c of chunks) {
    o.set(c, p);
    p += c.length;
  }
  return o;
}

/** Convenience: the re-encoded bytes in one buffer. */
export function reencodeBytes(input: Uint8Array, options: ReencodeOptions = {}): Uint8Array {
  const r = reencodeStream(input, options);
  return joinChunks(r.chunks, r.bytes);
}

// ---------------------------------------------------------------------------------------------
// a new stream from the model (not a replay)

export interface ModelEncodeOptions {
  /** ZERO records for all-zero pages (default true). */
  readonly zeroDetect?: boolean;
}

/**
 * Write a new stream from a decode result with materialised RAM (`materialize: { ram: true }`): the
 * configuration, `ram` START (MEM_SIZE of the decoded blocks) / one PART with every page of every block sent
 * by `ramEncode` (zero pages as ZERO records) / END, then every device section from its decoded state and
 * description, EOF and the vmdesc generated by the device walks (or the stream's own text for devices whose
 * descriptions cannot reproduce it). Section ids are the stream's. Streams with block or spapr/htab sections
 * are not supported here (use the replay, reencodeStream).
 */
export function encodeFromModel(r: DecodeResult, options: ModelEncodeOptions = {}): Uint8Array {
  const ramResult = r.live.ram as
    | { materialized: boolean; blocks: readonly { name: string; length: bigint; ptr: number; pageSize?: bigint; mrAddr?: bigint }[] }
    | undefined;
  for (const s of r.sections) {
    if (s.idstr !== "ram" && !r.devices.some((d) => d.sectionIndex === r.sections.indexOf(s))) {
      throw new VmstreamError("UNSUPPORTED", `encodeFromModel: section ${s.idstr} is not supported (only ram and device sections)`);
    }
  }
  const out = new ByteWriter({ initialCapacity: 1 << 20 });
  const enc = startEncoding(r, out);
  const ramStart = r.sections.find((s) => s.idstr === "ram" && s.type === "start");
  if (ramStart && ramResult) {
    if (!ramResult.materialized) throw new VmstreamError("STATE", "encodeFromModel needs materialised RAM (materialize: { ram: true })");
    const ignoreShared = r.configuration?.capabilities?.includes("x-ignore-shared") ?? false;
    const ram = new RamWriter(out, r.pageSize, { ignoreShared }, r.kernels);
    try {
      const id = ramStart.id;
      enc.begin("start", id, "ram", ramStart.instanceId, ramStart.version);
      ram.memSize(ramResult.blocks.map((b) => ({ name: b.name, length: b.length, ...(b.mrAddr !== undefined ? { mrAddr: b.mrAddr } : {}) })));
      ram.eos();
      enc.end();
      enc.begin("part", id);
      for (const b of ramResult.blocks) {
        ram.sendBlock({ name: b.name, ptr: b.ptr, length: Number(b.length) }, { zeroDetect: options.zeroDetect ?? true });
      }
      ram.eos();
      enc.end();
      enc.begin("end", id);
      ram.eos();
      enc.end();
    } finally {
      ram.dispose();
    }
  }
  for (const dev of r.devices) enc.device(deviceSpec(dev));
  enc.eof();
  if (r.vmdesc) {
    const text = enc.vmdescText();
    enc.vmdescTrailer(text === r.vmdesc.text ? text : r.vmdesc.text);
  }
  return out.concat();
}
