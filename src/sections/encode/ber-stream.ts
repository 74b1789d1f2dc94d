// QEMU stream <-> BER stream (docs/vmstate.asn1, docs/ber.md: Stream, Header, Item ...).
//
// QEMU -> BER (qemuToBer): the stream is decoded as reencodeStream decodes it (framing, configuration, device
// states with their descriptions), then written as one `Stream`: the header, the configuration as a StateBody
// under [APPLICATION 7] (machine name and its subsections, through the BER visitor), every section as its
// application-tagged item (id, idstr, instance, version, body, footer), device bodies through BerOutputVisitor
// with their descriptions, ram / block / spapr/htab payloads as the schema's record types (page, chunk and HPTE
// data handed out as views into the input, never copied), anything else as OpaqueState, commands with their
// data bytes, EOF and the vmdesc bytes. Every value whose size is not known when its header is written has an
// indefinite length, so the output is a list of chunks produced front to back. The items are written by
// BerItemWriter, which StreamBerConverter (stream-convert.ts) drives item by item as a stream arrives.
//
// BER -> QEMU (berToQemu): the items are read back with BerReader; a device body is loaded by BerInputVisitor
// into a state of the description the QEMU decoder would find for it (the registered x86 description when it
// loads the BER without a difference, else the one made from the section's entry in the embedded vmdesc), and
// written again with the wire visitor; records go through RamWriter.record / BlockWriter.record / HtabWriter,
// the configuration and commands through StreamEncoder. For a stream QEMU wrote the result is byte-identical to
// the original QEMU stream. Browser-safe.
import { BerReader } from "../../ber/reader.js";
import { BerWriter, CLASS_APPLICATION, T_OCTET_STRING, T_SEQUENCE, T_UTF8STRING, berTag, type Tag } from "../../ber/writer.js";
import { VmstreamError } from "../../io/errors.js";
import { ByteWriter } from "../../io/writer.js";
import { RAM_FLAG } from "../../kernels/types.js";
import { descriptionFromVmdesc } from "../../vmstate/from-vmdesc.js";
import { configCapabilities, configTargetPageBits, configUuid } from "../../savevm/configuration.js";
import { QEMU_VM_FILE_MAGIC } from "../../savevm/constants.js";
import { StreamEncoder } from "../../savevm/encoder.js";
import type { CommandRecord, ConfigurationInfo, DecodeResult, DeviceRegistry, DeviceSectionResult, SectionRecord, VmdescInfo } from "../../savevm/types.js";
import type { VmdescDocument } from "../../savevm/vmdesc.js";
import { BerInputVisitor, BerOutputVisitor, TAG_VMSTATE } from "../../visitor/ber/index.js";
import { WireOutputVisitor } from "../../visitor/wire.js";
import { loadState, saveState } from "../../vmstate/engine.js";
import { F } from "../../vmstate/fields.js";
import type { State, VMStateDescription } from "../../vmstate/types.js";
import { BLK_MIG } from "../block/index.js";
import { resolveRegistry, type DeviceRegistryOption } from "../device.js";
import type { StreamDecoderOptions } from "../stream.js";
import { BlockWriter, HtabWriter, type BlockRecord } from "./block.js";
import { assertReplayable, blockRecords, decodeForReplay, deviceSpec, htabItems, joinChunks, ramRecords, type HtabItem, type RamReplayOptions } from "./convert.js";
import { RamWriter, type RamBlockSpec, type RamRecord } from "./ram.js";

// ---------------------------------------------------------------------------------------------
// tags (identifier octets)

const app = (n: number, constructed: boolean): Tag => berTag(CLASS_APPLICATION, constructed, n);
const one = (n: number, constructed: boolean): number => (app(n, constructed) as number);

/** [APPLICATION 16] Stream, constructed: the first octet of every BER stream (QEMU streams start with 0x51 'Q'). */
export const TAG_STREAM = one(16, true);
const TAG_HEADER = one(17, true);
const TAG_CONFIGURATION = one(7, true);
const TAG_START = one(1, true);
const TAG_PART = one(2, true);
const TAG_END = one(3, true);
const TAG_FULL = one(4, true);
const TAG_COMMAND = one(8, true);
const TAG_EOF = one(0, false);
const TAG_VMDESC = one(6, false);
const TAG_OPAQUE = one(19, false);
const TAG_RAM = one(20, true);
const TAG_BLOCK = one(21, true);
const TAG_HTAB = one(22, true);
const TAG_FOOTER = app(126, false);
const TAG_MEMSIZE = app(32, true);
const TAG_ZERO = app(33, true);
const TAG_PAGE = app(34, true);
const TAG_XBZRLE = app(35, true);
const TAG_COMPRESSED = app(36, true);
const TAG_HOOK = app(37, false);
const TAG_RAM_EOS = app(38, false);
const TAG_BLOCK_DATA = app(40, true);
const TAG_BLOCK_ZERO = app(41, true);
const TAG_PROGRESS = app(42, false);
const TAG_BLOCK_EOS = app(43, false);
const TAG_HTAB_CHUNK = app(48, true);
const TAG_PAGE_SIZE = 0x80; // [0] IMPLICIT U64
const TAG_MR_ADDR = 0x81; // [1] IMPLICIT U64

const SEC_TAGS: Record<SectionRecord["type"], number> = { start: TAG_START, part: TAG_PART, end: TAG_END, full: TAG_FULL };
const SEC_BYTE: Record<SectionRecord["type"], number> = { start: 1, part: 2, end: 3, full: 4 };

/** Data at least this long travel as their own output chunk (a view), not copied into the writer. */
const BORROW_MIN = 256;

const utf8Fatal = new TextDecoder("utf-8", { fatal: true });
const te = new TextEncoder();

function validUtf8(b: Uint8Array): boolean {
  try {
    utf8Fatal.decode(b);
    return true;
  } catch {
    return false;
  }
}

/** Whether `bytes` start like a BER stream ([APPLICATION 16], constructed). */
export function isBerStream(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === TAG_STREAM;
}

// ---------------------------------------------------------------------------------------------
// the "configuration" VMState as a StateBody: the machine name (len + bytes), then QEMU's subsections

function configurationDescription(maxCaps: number): VMStateDescription {
  return {
    name: "configuration",
    version: 1,
    fields: [F.uint32("len"), F.buffer("name", { field: "len" })],
    subsections: [
      { ...configTargetPageBits, needed: (s) => s.target_page_bits !== undefined },
      { ...configCapabilities(maxCaps), needed: (s) => s.caps_count !== undefined },
      { ...configUuid, needed: (s) => s.uuid !== undefined },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// output: a BerWriter whose settled bytes are handed out as chunks, big data as views

class ChunkedBer {
  readonly w = new BerWriter({ initialCapacity: 1 << 16 });
  readonly chunks: Uint8Array[] = [];
  bytes = 0;
  borrowed = 0;

  private settle(): void {
    const t = this.w.take();
    if (t.length > 0) {
      this.chunks.push(t);
      this.bytes += t.length;
    }
  }

  /** An OCTET STRING (or `tag`, primitive): a view of `data` when every open value is indefinite. */
  octets(data: Uint8Array, tag: Tag = T_OCTET_STRING): void {
    const w = this.w;
    if (data.length < BORROW_MIN) {
      w.octets(data, tag);
      return;
    }
    w.tag(tag);
    w.length(data.length);
    this.settle();
    if (w.pos !== 0) {
      w.raw(data); // a definite value is still open: its length is patched later, so copy
      return;
    }
    this.chunks.push(data);
    this.bytes += data.length;
    this.borrowed += data.length;
  }

  /** QemuString: UTF8String when the bytes are valid UTF-8 (written as they are), else OCTET STRING. */
  qemuString(b: Uint8Array): void {
    this.w.octets(b, validUtf8(b) ? T_UTF8STRING : T_OCTET_STRING);
  }

  /** Hand out the settled chunks (and forget them). */
  drain(): Uint8Array[] {
    this.settle();
    return this.chunks.splice(0);
  }

  finish(): void {
    const rest = this.w.finish();
    if (rest.length > 0) {
      const c = rest.slice();
      this.chunks.push(c);
      this.bytes += c.length;
    }
    this.w.reset();
  }
}

// ---------------------------------------------------------------------------------------------
// QEMU -> BER

export interface BerStreamOptions {
  /** Decoder options for the QEMU input (inflate for COMPRESS_PAGE, page size, ram options...). */
  readonly decode?: StreamDecoderOptions;
}

export interface BerStreamReport {
  readonly sections: number;
  readonly devices: number;
  readonly ramRecords: number;
  readonly blockRecords: number;
  readonly htabChunks: number;
  readonly commands: number;
  /** Sections written as OpaqueState (payload bytes as sent). */
  readonly opaqueSections: readonly string[];
  /** Data bytes handed out as views into the input (not copied). */
  readonly borrowedBytes: number;
}

export interface BerStreamResult {
  /** The stream as gathered chunks (page and chunk data: views into the input). */
  readonly chunks: Uint8Array[];
  readonly bytes: number;
  readonly report: BerStreamReport;
}

function be32At(b: Uint8Array, p: number): number {
  return ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
}

/** Whether the RAM records cover the payload exactly and each has a schema form that writes it back as sent. */
function ramFits(recs: readonly RamRecord[], payload: number, ignoreShared: boolean): boolean {
  let n = 0;
  for (const r of recs) {
    n += 8;
    const kind = r.flags & ~RAM_FLAG.CONTINUE;
    const cont = (r.flags & RAM_FLAG.CONTINUE) !== 0;
    switch (kind) {
      case RAM_FLAG.EOS:
        if (r.flags !== RAM_FLAG.EOS || r.addr !== 0n) return false;
        break;
      case RAM_FLAG.HOOK:
        break;
      case RAM_FLAG.MEM_SIZE: {
        if (cont) return false;
        for (const b of r.blocks ?? []) {
          const nb = te.encode(b.name);
          if (nb.length > 255 || b.name.includes("\uFFFD")) return false; // U+FFFD: bytes that were not UTF-8 (the reader decodes names)
          n += 1 + nb.length + 8 + (b.pageSize !== undefined ? 8 : 0) + (b.mrAddr !== undefined ? 8 : 0);
          if ((b.mrAddr !== undefined) !== ignoreShared) return false;
        }
        break;
      }
      case RAM_FLAG.ZERO:
      case RAM_FLAG.PAGE:
      case RAM_FLAG.XBZRLE:
      case RAM_FLAG.COMPRESS_PAGE:
        if (cont !== (r.name === undefined)) return false;
        if (r.name) n += 1 + r.name.length;
        n += kind === RAM_FLAG.ZERO ? 1 : kind === RAM_FLAG.PAGE ? r.data!.length : kind === RAM_FLAG.XBZRLE ? 3 + r.data!.length : 4 + r.data!.length;
        break;
      default:
        return false;
    }
  }
  return n === payload;
}

function blockFits(recs: readonly BlockRecord[], payload: number): boolean {
  let n = 0;
  for (const r of recs) {
    n += 8;
    if (r.flags === BLK_MIG.DEVICE_BLOCK) n += 1 + r.name!.length + r.data!.length;
    else if (r.flags === (BLK_MIG.DEVICE_BLOCK | BLK_MIG.ZERO_BLOCK)) n += 1 + r.name!.length;
    else if (r.flags === BLK_MIG.PROGRESS) continue;
    else if (r.flags === BLK_MIG.EOS && r.value === 0n) continue;
    else return false;
  }
  return n === payload;
}

function htabFits(items: readonly HtabItem[], payload: number): boolean {
  let n = 0;
  for (const x of items) n += x.kind === "header" ? 4 : x.kind === "end" ? 8 : 8 + x.hptes.length;
  const head = items[0];
  if (!head || head.kind !== "header") return false;
  if (head.value === 0 && items.at(-1)?.kind !== "end") return false;
  return n === payload;
}

function tryAll<T>(gen: () => Generator<T>): T[] | undefined {
  try {
    return [...gen()];
  } catch {
    return undefined;
  }
}

/** QEMU stream (decompressed, in memory) -> BER stream. Throws for what it cannot carry (PACKAGED commands). */
export function qemuToBer(input: Uint8Array, options: BerStreamOptions = {}): BerStreamResult {
  const r = decodeForReplay(input, options.decode);
  try {
    return berFromDecoded(input, r, options);
  } finally {
    r.dispose();
  }
}

/** QEMU -> BER from a decode result of `input` (every section and command must be listed in it). */
export function berFromDecoded(input: Uint8Array, r: DecodeResult, options: BerStreamOptions = {}): BerStreamResult {
  assertReplayable(r, "converting to BER");
  const items = new BerItemWriter();
  items.header(r.version);
  if (r.configuration) items.configuration(input, r.configuration);
  const devicesBySection = new Map<number, DeviceSectionResult>();
  for (const dev of r.devices) devicesBySection.set(dev.sectionIndex, dev);
  type Item = { at: number; i: number; s?: SectionRecord; c?: CommandRecord };
  const list: Item[] = r.sections.map((s, i) => ({ at: s.offset, i, s }));
  r.commands.forEach((c, i) => list.push({ at: c.offset, i, c }));
  list.sort((a, b) => a.at - b.at);
  const ramOpts = berRamOptions(options, r.pageSize, r.configuration);
  for (const it of list) {
    if (it.c) items.command(input, it.c);
    else items.section(input, it.s!, devicesBySection.get(it.i), ramOpts);
  }
  if (r.eof) items.eof();
  if (r.vmdesc) items.vmdesc(input, r.vmdesc);
  items.finish();
  return items.result();
}

/** The RAM record options of a QEMU -> BER conversion (as the decoder read the MEM_SIZE entries). */
export function berRamOptions(options: BerStreamOptions, pageSize: number, config: ConfigurationInfo | undefined): RamReplayOptions {
  const ro = options.decode?.ram ?? {};
  const ignoreShared = ro.ignoreShared ?? (config?.capabilities?.includes("x-ignore-shared") ?? false);
  return { pageSize, ignoreShared, ...(ro.blockPageSize !== undefined ? { blockPageSize: ro.blockPageSize } : {}) };
}

/**
 * Writes the items of one BER Stream from decoded QEMU items and their bytes (`input` holds each item's bytes
 * at the offsets its record gives), front to back: used on a whole stream in memory (berFromDecoded) and item
 * by item as a stream arrives (StreamBerConverter). Data views of `input` may be handed out in the chunks.
 */
export class BerItemWriter {
  private readonly out = new ChunkedBer();
  private readonly w = this.out.w;
  private sections = 0;
  private devices = 0;
  private commands = 0;
  private ramCount = 0;
  private blockCount = 0;
  private htabChunks = 0;
  private readonly opaque: string[] = [];
  private handedOut = 0;

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

  configuration(input: Uint8Array, c: ConfigurationInfo): void {
    const len = be32At(input, c.offset + 1);
    const s: State = { len, name: input.subarray(c.offset + 5, c.offset + 5 + len) };
    if (c.targetPageBits !== undefined) s.target_page_bits = c.targetPageBits;
    if (c.capabilities !== undefined) {
      s.caps_count = c.capabilities.length;
      s.capabilities = c.capabilities.map((name) => ({ name }));
    }
    if (c.uuid !== undefined) s.uuid = c.uuid;
    const v = new BerOutputVisitor({ writer: this.w, rootTag: TAG_CONFIGURATION });
    saveState(v, configurationDescription(c.capabilities?.length ?? 0), s);
    if (v.error) throw v.error;
  }

  command(input: Uint8Array, c: CommandRecord): void {
    const w = this.w;
    this.commands++;
    w.fork(TAG_COMMAND, true);
    w.int(c.cmd);
    this.out.octets(input.subarray(c.offset + 5, c.offset + 5 + c.length));
    w.join();
  }

  /** A section: a device's state through its description, live payloads as records when they fit, else opaque. */
  section(input: Uint8Array, s: SectionRecord, dev: DeviceSectionResult | undefined, ramOpts: RamReplayOptions): void {
    const w = this.w;
    const out = this.out;
    this.sections++;
    const from = s.payloadOffset;
    const to = from + s.payloadSize;
    w.fork(SEC_TAGS[s.type], true);
    w.int(s.id >>> 0);
    if (s.type === "start" || s.type === "full") {
      const n = input[s.offset + 5]!;
      out.qemuString(input.subarray(s.offset + 6, s.offset + 6 + n));
      w.int(s.instanceId >>> 0);
      w.int(s.version >>> 0);
    }
    let done = false;
    if (dev) {
      this.devices++;
      const spec = deviceSpec(dev);
      const v = new BerOutputVisitor({ writer: w });
      saveState(v, spec.description, spec.state, spec.idstr);
      if (v.error) throw v.error;
      done = true;
    } else if (s.type !== "full" && s.idstr === "ram") {
      const recs = tryAll(() => ramRecords(input, from, to, ramOpts));
      if (recs && ramFits(recs, s.payloadSize, ramOpts.ignoreShared === true)) {
        writeRam(out, recs);
        this.ramCount += recs.length;
        done = true;
      }
    } else if (s.type !== "full" && s.idstr === "block") {
      const recs = tryAll(() => blockRecords(input, from, to));
      if (recs && blockFits(recs, s.payloadSize)) {
        writeBlock(out, recs);
        this.blockCount += recs.length;
        done = true;
      }
    } else if (s.type !== "full" && s.idstr === "spapr/htab") {
      const recs = tryAll(() => htabItems(input, from, to));
      if (recs && htabFits(recs, s.payloadSize)) {
        this.htabChunks += writeHtab(out, recs);
        done = true;
      }
    }
    if (!done) {
      out.octets(input.subarray(from, to), TAG_OPAQUE);
      this.opaque.push(`${s.idstr} (${s.type} at ${s.offset})`);
    }
    if (s.footer) w.int(be32At(input, s.offset + s.size - 4), TAG_FOOTER);
    w.join();
  }

  eof(): void {
    this.w.null(TAG_EOF);
  }

  vmdesc(input: Uint8Array, v: VmdescInfo): void {
    if (v.offset === undefined) throw new VmstreamError("STATE", "the vmdesc was not read from the stream");
    this.out.octets(input.subarray(v.offset + 5, v.offset + 5 + v.length), TAG_VMDESC);
  }

  /** Close the items and the Stream. */
  finish(): void {
    this.w.join(); // items
    this.w.join(); // Stream
    this.out.finish();
  }

  /** The chunks settled since the last call (streaming). */
  take(): Uint8Array[] {
    return this.out.drain();
  }

  /** Everything written (the whole-stream path; nothing taken before). */
  result(): BerStreamResult {
    return { chunks: this.out.chunks, bytes: this.out.bytes, report: this.report() };
  }

  report(): BerStreamReport {
    return {
      sections: this.sections,
      devices: this.devices,
      ramRecords: this.ramCount,
      blockRecords: this.blockCount,
      htabChunks: this.htabChunks,
      commands: this.commands,
      opaqueSections: this.opaque,
      borrowedBytes: this.out.borrowed,
    };
  }
}

function pageRecord(out: ChunkedBer, tag: Tag, r: RamRecord, body: () => void): void {
  const w = out.w;
  w.fork(tag, true);
  if (r.name) out.qemuString(r.name);
  w.bigint(r.addr);
  body();
  w.join();
}

function writeRam(out: ChunkedBer, recs: readonly RamRecord[]): void {
  const w = out.w;
  w.fork(TAG_RAM, true);
  for (const r of recs) {
    switch (r.flags & ~RAM_FLAG.CONTINUE) {
      case RAM_FLAG.MEM_SIZE:
        w.fork(TAG_MEMSIZE, true);
        w.bigint(r.addr);
        w.fork(T_SEQUENCE, true);
        for (const b of r.blocks ?? []) {
          w.fork(T_SEQUENCE);
          out.qemuString(te.encode(b.name));
          w.bigint(b.length);
          if (b.pageSize !== undefined) w.bigint(b.pageSize, TAG_PAGE_SIZE);
          if (b.mrAddr !== undefined) w.bigint(b.mrAddr, TAG_MR_ADDR);
          w.join();
        }
        w.join();
        w.join();
        break;
      case RAM_FLAG.ZERO:
        pageRecord(out, TAG_ZERO, r, () => w.int(r.fill ?? 0));
        break;
      case RAM_FLAG.PAGE:
        pageRecord(out, TAG_PAGE, r, () => out.octets(r.data!));
        break;
      case RAM_FLAG.XBZRLE:
        pageRecord(out, TAG_XBZRLE, r, () => {
          w.int(r.encoding ?? 1);
          out.octets(r.data!);
        });
        break;
      case RAM_FLAG.COMPRESS_PAGE:
        pageRecord(out, TAG_COMPRESSED, r, () => out.octets(r.data!));
        break;
      case RAM_FLAG.HOOK:
        w.bigint(r.addr | BigInt(r.flags), TAG_HOOK);
        break;
      case RAM_FLAG.EOS:
        w.null(TAG_RAM_EOS);
        break;
    }
  }
  w.join();
}

function writeBlock(out: ChunkedBer, recs: readonly BlockRecord[]): void {
  const w = out.w;
  w.fork(TAG_BLOCK, true);
  for (const r of recs) {
    if (r.flags & BLK_MIG.DEVICE_BLOCK) {
      const zero = (r.flags & BLK_MIG.ZERO_BLOCK) !== 0;
      w.fork(zero ? TAG_BLOCK_ZERO : TAG_BLOCK_DATA, true);
      out.qemuString(r.name!);
      w.bigint(r.value);
      if (!zero) out.octets(r.data!);
      w.join();
    } else if (r.flags === BLK_MIG.PROGRESS) w.bigint(r.value, TAG_PROGRESS);
    else w.null(TAG_BLOCK_EOS);
  }
  w.join();
}

function writeHtab(out: ChunkedBer, items: readonly HtabItem[]): number {
  const w = out.w;
  let n = 0;
  w.fork(TAG_HTAB, true);
  const head = items[0] as { kind: "header"; value: number };
  w.int(head.value >>> 0);
  if (head.value === 0) {
    w.fork(T_SEQUENCE, true);
    for (const x of items) {
      if (x.kind !== "chunk") continue;
      w.fork(TAG_HTAB_CHUNK, true);
      w.int(x.index >>> 0);
      out.octets(x.hptes);
      w.int(x.nInvalid);
      w.join();
      n++;
    }
    w.join();
  }
  w.join();
  return n;
}

/** Convenience: QEMU -> BER in one buffer. */
export function qemuToBerBytes(input: Uint8Array, options: BerStreamOptions = {}): Uint8Array {
  const r = qemuToBer(input, options);
  return joinChunks(r.chunks, r.bytes);
}

// ---------------------------------------------------------------------------------------------
// BER -> QEMU

export interface QemuFromBerOptions {
  /** Registered device descriptions (as the decoder's `devices`): "auto" (default, x86 pc), "none" or a registry. */
  readonly devices?: DeviceRegistryOption;
}

export interface QemuFromBerReport {
  readonly sections: number;
  readonly devices: number;
  readonly registryDevices: number;
  readonly vmdescDevices: number;
  readonly commands: number;
}

export interface QemuFromBerResult {
  /** The QEMU stream as gathered chunks (page data: views into the BER input). */
  readonly chunks: Uint8Array[];
  readonly bytes: number;
  readonly report: QemuFromBerReport;
}

class In {
  constructor(readonly r: BerReader) {}

  /** Read a header and check its identifier (one octet, or the class and number of a high tag). */
  expect(tag: Tag, what: string): void {
    const r = this.r;
    r.header();
    if (!this.is(tag)) r.raise(`expected ${what}`, `identifier 0x${r.id.toString(16)} (tag ${r.tagNo})`, r.start);
  }

  is(tag: Tag): boolean {
    const r = this.r;
    if (typeof tag === "number") return r.id === tag;
    return r.id === tag[0] && r.tagNo === tagNumber(tag);
  }

  /** Peek: whether the next value inside the value that ends at `end` (enter()) has this identifier. */
  next(tag: Tag, end: number): boolean {
    const r = this.r;
    if (r.atEnd(end) || !r.peekHeader()) return false;
    const p = r.pos;
    r.header();
    const ok = this.is(tag);
    r.pos = p;
    return ok;
  }

  u32(what: string): number {
    this.expect(0x02, what);
    const v = this.r.int();
    if (v < 0 || v > 0xffffffff) this.r.raise(`${what} out of range`, String(v), this.r.start);
    return v;
  }

  u64(tag: Tag, what: string): bigint {
    this.expect(tag, what);
    const v = this.r.bigint();
    if (v < 0n || v > 0xffffffffffffffffn) this.r.raise(`${what} out of range`, String(v), this.r.start);
    return v;
  }

  /** QemuString: the bytes (UTF8String or OCTET STRING). */
  qemuString(what: string): Uint8Array {
    const r = this.r;
    r.header();
    if (r.id !== 0x0c && r.id !== 0x04 && r.id !== 0x2c && r.id !== 0x24) r.raise(`expected ${what} (a QemuString)`, `identifier 0x${r.id.toString(16)}`, r.start);
    return r.octets();
  }

  octets(tag: Tag, what: string): Uint8Array {
    this.expect(tag, what);
    return this.r.octets();
  }
}

function tagNumber(t: Uint8Array): number {
  let n = 0;
  for (let i = 1; i < t.length; i++) n = n * 128 + (t[i]! & 0x7f);
  return n;
}

function findEntry(doc: VmdescDocument | undefined, used: Set<number>, idstr: string, instanceId: number): number {
  if (!doc) return -1;
  for (let i = 0; i < doc.devices.length; i++) {
    const d = doc.devices[i]!;
    if (!used.has(i) && d.name === idstr && d.instance_id === instanceId) return i;
  }
  return -1;
}

/** The vmdesc bytes of a BER stream (a pass over the top-level items), if it has one. */
function berVmdesc(r: BerReader, itemsEnd: number): Uint8Array | undefined {
  const p = r.pos;
  const d = r.depth;
  let found: Uint8Array | undefined;
  try {
    while (!r.atEnd(itemsEnd)) {
      r.header();
      if (r.id === TAG_VMDESC) found = r.octets();
      else r.skip();
    }
  } finally {
    r.pos = p;
    r.depth = d;
  }
  return found;
}

/** BER stream (in memory) -> QEMU stream. */
export function berToQemu(input: Uint8Array, options: QemuFromBerOptions = {}): QemuFromBerResult {
  const r = new BerReader(input);
  const i = new In(r);
  const out = new ByteWriter({ initialCapacity: 1 << 16 });
  const registry: DeviceRegistry | undefined = resolveRegistry(options.devices);
  const td = new TextDecoder("utf-8");

  i.expect(TAG_STREAM, "a BER migration stream ([APPLICATION 16])");
  const streamEnd = r.enter();
  i.expect(TAG_HEADER, "the stream Header ([APPLICATION 17])");
  const hEnd = r.enter();
  const magic = i.u32("magic");
  if (magic !== QEMU_VM_FILE_MAGIC) r.raise("bad magic in the BER stream header", `0x${magic.toString(16)}`);
  const version = i.u32("version");
  r.leave(hEnd);
  i.expect(T_SEQUENCE, "the item list (SEQUENCE OF Item)");
  const itemsEnd = r.enter();

  const vmdescBytes = berVmdesc(r, itemsEnd);
  let vmdoc: VmdescDocument | undefined;
  if (vmdescBytes) {
    try {
      vmdoc = JSON.parse(td.decode(vmdescBytes)) as VmdescDocument;
    } catch {
      vmdoc = undefined;
    }
  }
  const used = new Set<number>();

  const enc = new StreamEncoder(out, { configuration: true, footers: false, vmdesc: true });
  enc.header(version);
  let machine: string | undefined;
  let pageSize = 4096;
  let ram: RamWriter | undefined;
  const ramOpts: { ignoreShared: boolean; blockPageSize: (name: string) => boolean } = { ignoreShared: false, blockPageSize: () => false };
  const pageSized = new Set<string>();
  ramOpts.blockPageSize = (name) => pageSized.has(name);
  const block = new BlockWriter(out);
  const htab = new HtabWriter(out);
  // the idstr of each section id (START/FULL bind it; PART/END use it)
  const idstrs = new Map<number, string>();
  let sections = 0;
  let devices = 0;
  let registryDevices = 0;
  let vmdescDevices = 0;
  let commands = 0;

  while (!r.atEnd(itemsEnd)) {
    r.header();
    const id = r.id;
    if (id === TAG_CONFIGURATION) {
      r.pos = r.start; // the visitor reads the whole StateBody
      const v = new BerInputVisitor(r, { rootTag: TAG_CONFIGURATION });
      const head = v.peekStruct();
      const s: State = {};
      loadState(v, configurationDescription(1024), s, head?.version ?? 1);
      if (v.error) throw v.error;
      machine = td.decode(s.name as Uint8Array);
      if (s.target_page_bits !== undefined) pageSize = 2 ** (s.target_page_bits as number);
      enc.configuration({
        machine,
        ...(s.target_page_bits !== undefined ? { targetPageBits: s.target_page_bits as number } : {}),
        ...(s.caps_count !== undefined ? { capabilities: (s.capabilities as State[]).map((c) => c.name as string) } : {}),
        ...(s.uuid !== undefined ? { uuid: s.uuid as Uint8Array } : {}),
      });
      continue;
    }
    if (id === TAG_COMMAND) {
      const e = r.enter();
      const cmd = i.u32("cmd");
      const data = i.octets(T_OCTET_STRING, "command data");
      if (!r.atEnd(e)) r.raise("PACKAGED commands (a package) are not supported yet", undefined, r.pos, "UNSUPPORTED");
      r.leave(e);
      enc.command(cmd, data);
      commands++;
      continue;
    }
    if (id === TAG_EOF) {
      r.null();
      enc.eof();
      continue;
    }
    if (id === TAG_VMDESC) {
      const b = r.octets();
      out.u8(0x06);
      out.be32(b.length);
      out.borrow(b);
      continue;
    }
    const type = id === TAG_START ? "start" : id === TAG_PART ? "part" : id === TAG_END ? "end" : id === TAG_FULL ? "full" : undefined;
    if (!type) throw new VmstreamError("BAD_VALUE", "unknown stream item", { offset: r.start, detail: `identifier 0x${id.toString(16)}` });
    const e = r.enter();
    sections++;
    const secId = i.u32("sectionId");
    out.u8(SEC_BYTE[type]);
    out.be32(secId);
    let idstr: string;
    let instanceId = 0;
    let secVersion = 0;
    if (type === "start" || type === "full") {
      const name = i.qemuString("idstr");
      instanceId = i.u32("instanceId");
      secVersion = i.u32("version");
      out.u8(name.length);
      out.bytes(name);
      out.be32(instanceId);
      out.be32(secVersion);
      idstr = td.decode(name);
      idstrs.set(secId, idstr);
    } else {
      idstr = idstrs.get(secId) ?? "";
    }
    // the body
    if (!r.peekHeader()) r.raise("section without a body");
    const bodyAt = r.pos;
    r.header();
    const bid = r.id;
    if (bid === TAG_VMSTATE) {
      r.pos = bodyAt;
      const got = loadDevice(r, registry, { machine, pageSize }, idstr, instanceId, secVersion, vmdoc, used);
      const v = new WireOutputVisitor(out);
      saveState(v, got.description, got.state, idstr);
      if (v.error) throw v.error;
      devices++;
      if (got.source === "registry") registryDevices++;
      else vmdescDevices++;
    } else if (bid === TAG_OPAQUE) {
      out.borrow(r.octets());
    } else if (bid === TAG_RAM) {
      ram ??= new RamWriter(out, pageSize, ramOpts);
      readRam(i, r.enter(), ram, ramOpts, pageSized, pageSize);
    } else if (bid === TAG_BLOCK) {
      readBlock(i, r.enter(), block);
    } else if (bid === TAG_HTAB) {
      readHtab(i, r.enter(), htab);
    } else {
      r.raise("unknown section body", `identifier 0x${bid.toString(16)}`, r.start);
    }
    if (!r.atEnd(e)) {
      const f = i.u64(TAG_FOOTER, "the section footer ([APPLICATION 126])");
      out.u8(0x7e);
      out.be32(Number(f));
    }
    r.leave(e);
  }
  r.leave(itemsEnd);
  r.leave(streamEnd);
  if (r.pos !== r.end) r.raise("bytes after the BER stream", `${r.end - r.pos} bytes`);
  return {
    chunks: out.chunks(),
    bytes: out.byteLength,
    report: { sections, devices, registryDevices, vmdescDevices, commands },
  };
}

/** Load one device body with the description the decoder would find: the registry's when it loads, else the vmdesc's. */
function loadDevice(
  r: BerReader,
  registry: DeviceRegistry | undefined,
  ctx: { machine: string | undefined; pageSize: number },
  idstr: string,
  instanceId: number,
  version: number,
  doc: VmdescDocument | undefined,
  used: Set<number>,
): { description: VMStateDescription; state: State; source: "registry" | "vmdesc" } {
  const at = r.pos;
  const depth = r.depth;
  const reg = registry?.(idstr, instanceId, version, ctx);
  let regError: VmstreamError | undefined;
  if (reg) {
    const v = new BerInputVisitor(r);
    const s: State = {};
    loadState(v, reg, s, v.peekStruct()?.version ?? version);
    if (!v.error) return { description: reg, state: s, source: "registry" };
    regError = v.error;
    r.pos = at;
    r.depth = depth;
  }
  const index = findEntry(doc, used, idstr, instanceId);
  if (index < 0) {
    if (regError) throw regError;
    throw new VmstreamError("NO_DESCRIPTION", "no description for a device section", { offset: at, detail: `${idstr}/${instanceId}: not registered, and not listed in the vmdesc` });
  }
  used.add(index);
  const desc = { ...descriptionFromVmdesc(doc!.devices[index]!), version };
  const v = new BerInputVisitor(r);
  const s: State = {};
  loadState(v, desc, s, version);
  if (v.error) throw v.error;
  return { description: desc, state: s, source: "vmdesc" };
}

function readRam(i: In, end: number, ram: RamWriter, opts: { ignoreShared: boolean }, pageSized: Set<string>, pageSize: number): void {
  const r = i.r;
  const mask = BigInt(pageSize - 1);
  while (!r.atEnd(end)) {
    if (i.next(TAG_RAM_EOS, end)) {
      r.header();
      r.null();
      ram.record({ flags: RAM_FLAG.EOS, addr: 0n });
      continue;
    }
    if (i.next(TAG_HOOK, end)) {
      const h = i.u64(TAG_HOOK, "RamHook");
      ram.record({ flags: Number(h & mask), addr: h & ~mask });
      continue;
    }
    if (i.next(TAG_MEMSIZE, end)) {
      r.header();
      const e = r.enter();
      const total = i.u64(0x02, "total");
      i.expect(T_SEQUENCE, "the RAM block list");
      const le = r.enter();
      const blocks: RamBlockSpec[] = [];
      let ignoreShared = false;
      while (!r.atEnd(le)) {
        i.expect(T_SEQUENCE, "RamBlockInfo");
        const be = r.enter();
        const name = new TextDecoder("utf-8").decode(i.qemuString("block name"));
        const length = i.u64(0x02, "usedLength");
        let ps: bigint | undefined;
        let mr: bigint | undefined;
        if (i.next(TAG_PAGE_SIZE, be)) ps = i.u64(TAG_PAGE_SIZE, "pageSize");
        if (i.next(TAG_MR_ADDR, be)) mr = i.u64(TAG_MR_ADDR, "mrAddr");
        r.leave(be);
        if (ps !== undefined) pageSized.add(name);
        if (mr !== undefined) ignoreShared = true;
        blocks.push({ name, length, ...(ps !== undefined ? { pageSize: ps } : {}), ...(mr !== undefined ? { mrAddr: mr } : {}) });
      }
      r.leave(le);
      r.leave(e);
      opts.ignoreShared = ignoreShared;
      ram.record({ flags: RAM_FLAG.MEM_SIZE, addr: total, blocks });
      continue;
    }
    r.header();
    const kind = i.is(TAG_ZERO) ? RAM_FLAG.ZERO : i.is(TAG_PAGE) ? RAM_FLAG.PAGE : i.is(TAG_XBZRLE) ? RAM_FLAG.XBZRLE : i.is(TAG_COMPRESSED) ? RAM_FLAG.COMPRESS_PAGE : 0;
    if (kind === 0) r.raise("unknown RAM record", `identifier 0x${r.id.toString(16)} (tag ${r.tagNo})`, r.start);
    const e = r.enter();
    const name = i.next(0x02, e) ? undefined : i.qemuString("block");
    const addr = i.u64(0x02, "offset");
    const flags = kind | (name === undefined ? RAM_FLAG.CONTINUE : 0);
    if (kind === RAM_FLAG.ZERO) {
      const fill = i.u32("fill");
      ram.record({ flags, addr, ...(name ? { name } : {}), fill });
    } else if (kind === RAM_FLAG.XBZRLE) {
      const encoding = i.u32("encoding");
      const data = i.octets(T_OCTET_STRING, "XBZRLE data");
      ram.record({ flags, addr, ...(name ? { name } : {}), encoding, data });
    } else {
      const data = i.octets(T_OCTET_STRING, "page data");
      ram.record({ flags, addr, ...(name ? { name } : {}), data });
    }
    r.leave(e);
  }
  r.leave(end);
}

function readBlock(i: In, end: number, block: BlockWriter): void {
  const r = i.r;
  while (!r.atEnd(end)) {
    if (i.next(TAG_PROGRESS, end)) {
      block.record({ flags: BLK_MIG.PROGRESS, value: i.u64(TAG_PROGRESS, "BlockProgress") });
      continue;
    }
    if (i.next(TAG_BLOCK_EOS, end)) {
      r.header();
      r.null();
      block.record({ flags: BLK_MIG.EOS, value: 0n });
      continue;
    }
    r.header();
    const zero = i.is(TAG_BLOCK_ZERO);
    if (!zero && !i.is(TAG_BLOCK_DATA)) r.raise("unknown block record", `identifier 0x${r.id.toString(16)} (tag ${r.tagNo})`, r.start);
    const e = r.enter();
    const name = i.qemuString("device");
    const value = i.u64(0x02, "sector");
    if (zero) block.record({ flags: BLK_MIG.DEVICE_BLOCK | BLK_MIG.ZERO_BLOCK, value, name });
    else block.record({ flags: BLK_MIG.DEVICE_BLOCK, value, name, data: i.octets(T_OCTET_STRING, "block data") });
    r.leave(e);
  }
  r.leave(end);
}

function readHtab(i: In, end: number, htab: HtabWriter): void {
  const r = i.r;
  const header = i.u32("htab header");
  htab.header(header);
  if (!r.atEnd(end)) {
    i.expect(T_SEQUENCE, "the HTAB chunk list");
    const le = r.enter();
    while (!r.atEnd(le)) {
      i.expect(TAG_HTAB_CHUNK, "HtabChunk ([APPLICATION 48])");
      const e = r.enter();
      const index = i.u32("index");
      const hptes = i.octets(T_OCTET_STRING, "HPTEs");
      const nInvalid = i.u32("nInvalid");
      r.leave(e);
      if (hptes.length % 16 !== 0) r.raise("HPTE bytes not a multiple of 16", String(hptes.length));
      htab.chunk({ index, nValid: hptes.length / 16, nInvalid, hptes });
    }
    r.leave(le);
    htab.endMarker();
  }
  r.leave(end);
}

/** Convenience: BER -> QEMU in one buffer. */
export function berToQemuBytes(input: Uint8Array, options: QemuFromBerOptions = {}): Uint8Array {
  const r = berToQemu(input, options);
  return joinChunks(r.chunks, r.bytes);
}
