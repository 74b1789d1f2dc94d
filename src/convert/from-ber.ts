// BER -> QEMU (docs/ber.md): the items of a BER Stream read back and written through the StreamEncoder. A
// device body is loaded into the description the QEMU decoder would choose (the registered one when it loads,
// else the one from the section's vmdesc entry) and written by its walk; live section bodies are read in their
// kind's form and written by their kind's writer. For a stream QEMU wrote, the result is the original stream.
// Browser-safe.
import { BerExpect } from "../ber/expect.js";
import { BerReader } from "../ber/reader.js";
import { T_OCTET_STRING, T_SEQUENCE } from "../ber/writer.js";
import { joinChunks } from "../io/chunks.js";
import { type SectionRef, VmstreamError } from "../io/errors.js";
import { ByteWriter } from "../io/writer.js";
import { configurationDescription } from "../savevm/configuration.js";
import { DEFAULT_LIMITS, QEMU_VM_FILE_MAGIC } from "../savevm/constants.js";
import { type DescriptionSources, registeredDescription, VmdescEntries, vmdescDescription } from "../savevm/device-sections.js";
import { StreamEncoder } from "../savevm/encoder.js";
import type { DeviceContext } from "../savevm/types.js";
import { parseVmdescJson } from "../savevm/vmdesc.js";
import { defaultVmdescFallback } from "../sections/device/fallback.js";
import { type DeviceRegistryOption, resolveRegistry } from "../sections/device/registry.js";
import { sectionKind } from "../sections/kinds.js";
import { BerInputVisitor, TAG_VMSTATE } from "../visitor/ber/index.js";
import { loadState } from "../vmstate/engine.js";
import { descriptionFromVmdesc } from "../vmstate/from-vmdesc.js";
import type { State, VMStateDescription } from "../vmstate/types.js";
import { sectionTypeOf, TAG_COMMAND, TAG_CONFIGURATION, TAG_EOF, TAG_FOOTER, TAG_HEADER, TAG_OPAQUE, TAG_STREAM, TAG_VMDESC } from "./ber-items.js";

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

const utf8 = new TextDecoder("utf-8");

/**
 * What a pass over the top-level items tells before the stream is written: the vmdesc (its entries describe
 * device sections) and whether sections carry footers (the machine type decides; the encoder needs it first).
 */
function streamFacts(i: BerExpect, itemsEnd: number): { vmdesc: { text: Uint8Array; at: number } | undefined; footers: boolean } {
  const r = i.r;
  const p = r.pos;
  const d = r.depth;
  let vmdesc: { text: Uint8Array; at: number } | undefined;
  let footers: boolean | undefined;
  try {
    while (!r.atEnd(itemsEnd)) {
      r.header();
      if (r.id === TAG_VMDESC) vmdesc = { at: r.start, text: r.octets() };
      else if (footers === undefined && sectionTypeOf(r.id) !== undefined && r.constructed) {
        const e = r.enter();
        let last = false;
        while (!r.atEnd(e)) {
          r.header();
          last = i.is(TAG_FOOTER);
          r.skip();
        }
        r.leave(e);
        footers = last;
      } else r.skip();
    }
  } finally {
    r.pos = p;
    r.depth = d;
  }
  return { vmdesc, footers: footers ?? true };
}

/** BER stream (in memory) -> QEMU stream. */
export function berToQemu(input: Uint8Array, options: QemuFromBerOptions = {}): QemuFromBerResult {
  const r = new BerReader(input);
  const i = new BerExpect(r);
  const out = new ByteWriter({ initialCapacity: 1 << 16 });
  const sources: DescriptionSources = {
    devices: resolveRegistry(options.devices),
    describe: (_i, _n, entry) => descriptionFromVmdesc(entry),
    vmdescFallback: defaultVmdescFallback,
  };

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

  const facts = streamFacts(i, itemsEnd);
  // a vmdesc that is no vmdesc fails here, at its own offset: it would be written into the QEMU stream as it is
  const entries = facts.vmdesc ? new VmdescEntries(parseVmdescJson(facts.vmdesc.text, DEFAULT_LIMITS.vmdescDepth, facts.vmdesc.at).json) : undefined;
  const enc = new StreamEncoder(out, { configuration: true, footers: facts.footers, vmdesc: true });
  enc.header(version);
  const ctx: { machine: string | undefined; pageSize: number } = { machine: undefined, pageSize: 4096 };
  const writers = new Map<string, { record(r: unknown): void }>();
  const report = { sections: 0, devices: 0, registryDevices: 0, vmdescDevices: 0, commands: 0 };
  // the idstr of each section id (START/FULL bind it; PART/END use it)
  const idstrs = new Map<number, string>();

  while (!r.atEnd(itemsEnd)) {
    r.header();
    // what the encoder refuses (an item out of order) is said at the BER offset of the item
    const itemAt = r.start;
    try {
      const id = r.id;
      if (id === TAG_CONFIGURATION) {
        r.pos = r.start; // the visitor reads the whole StateBody
        const v = new BerInputVisitor(r, { rootTag: TAG_CONFIGURATION });
        const head = v.peekStruct();
        const state: State = {};
        loadState(v, configurationDescription(DEFAULT_LIMITS), state, head?.version ?? 1);
        if (v.error) throw v.error;
        ctx.machine = utf8.decode(state.name as Uint8Array);
        if (state.target_page_bits !== undefined) ctx.pageSize = 2 ** (state.target_page_bits as number);
        enc.configuration({ state });
        continue;
      }
      if (id === TAG_COMMAND) {
        const e = r.enter();
        const cmd = i.u32("cmd");
        const data = i.octets(T_OCTET_STRING, "command data");
        if (!r.atEnd(e)) r.raise("PACKAGED commands (a package) are not supported yet", undefined, r.pos, "UNSUPPORTED");
        r.leave(e);
        enc.command(cmd, data);
        report.commands++;
        continue;
      }
      if (id === TAG_EOF) {
        r.null();
        enc.eof();
        continue;
      }
      if (id === TAG_VMDESC) {
        enc.vmdescTrailer(r.octets());
        continue;
      }
      const type = sectionTypeOf(id);
      if (!type) throw new VmstreamError("BAD_VALUE", "unknown stream item", { offset: r.start, detail: `identifier 0x${id.toString(16)}` });
      const e = r.enter();
      report.sections++;
      const secId = i.u32("sectionId");
      let name: Uint8Array | undefined;
      let instanceId = 0;
      let secVersion = 0;
      if (type === "start" || type === "full") {
        name = i.qemuString("idstr");
        instanceId = i.u32("instanceId");
        secVersion = i.u32("version");
      }
      if (!r.peekHeader()) r.raise("section without a body");
      const bodyAt = r.pos;
      r.header();
      if (r.id === TAG_VMSTATE) {
        r.pos = bodyAt;
        const idstr = utf8.decode(name ?? new Uint8Array(0));
        const got = loadDevice(r, sources, entries, ctx, { idstr, id: secId, instanceId }, secVersion);
        enc.device({
          id: secId,
          idstr: name ?? new Uint8Array(0),
          instanceId,
          version: secVersion,
          description: got.description,
          state: got.state,
          vmdesc: "omit",
        });
        report.devices++;
        if (got.source === "registry") report.registryDevices++;
        else report.vmdescDevices++;
      } else {
        enc.begin(type, secId, name, instanceId, secVersion);
        const idstr = name ? utf8.decode(name) : (idstrs.get(secId) ?? "");
        if (name) idstrs.set(secId, idstr);
        const kind = sectionKind(idstr);
        if (r.id === TAG_OPAQUE) out.borrow(r.octets());
        else if (kind?.ber && i.is(kind.ber.tag)) {
          let w = writers.get(kind.idstr);
          if (!w) writers.set(kind.idstr, (w = kind.writer(out, ctx.pageSize)));
          kind.ber.read(i, r.enter(), (rec) => w.record(rec), ctx.pageSize);
        } else r.raise("unknown section body", `identifier 0x${r.id.toString(16)}`, r.start);
        endSection(i, e, secId, enc, itemAt);
        continue;
      }
      endSection(i, e, secId, enc, itemAt, true);
    } catch (e) {
      throw VmstreamError.wrap(e, { offset: itemAt });
    }
  }
  r.leave(itemsEnd);
  r.leave(streamEnd);
  if (r.pos !== r.end) r.raise("bytes after the BER stream", `${r.end - r.pos} bytes`);
  return { chunks: out.chunks(), bytes: out.byteLength, report };
}

/** The footer of a section item: present exactly when the stream's sections carry footers, and naming the section. */
function endSection(i: BerExpect, e: number, id: number, enc: StreamEncoder, at: number, written = false): void {
  const r = i.r;
  const has = !r.atEnd(e);
  if (has !== enc.framing.footers) r.raise(has ? "a section footer in a stream whose sections have none" : "a section without its footer", undefined, at);
  if (has) {
    const f = i.u64(TAG_FOOTER, "the section footer ([APPLICATION 126])");
    if (f !== BigInt(id)) r.raise("the section footer names another section", `footer ${f}, section ${id}`, r.start);
  }
  r.leave(e);
  if (!written) enc.end();
}

/** Load one device body with the description the decoder would choose: the registry's when it loads, else the vmdesc's. */
function loadDevice(
  r: BerReader,
  sources: DescriptionSources,
  entries: VmdescEntries | undefined,
  ctx: DeviceContext,
  ref: SectionRef,
  version: number,
): { description: VMStateDescription; state: State; source: "registry" | "vmdesc" | "legacy" | "opaque" } {
  const at = r.pos;
  const depth = r.depth;
  const reg = registeredDescription(sources, ref, version, ctx, at);
  let regError: VmstreamError | undefined;
  if (reg) {
    const v = new BerInputVisitor(r);
    const state: State = {};
    loadState(v, reg, state, v.peekStruct()?.version ?? version);
    if (!v.error) return { description: reg, state, source: "registry" };
    regError = v.error;
    r.pos = at;
    r.depth = depth;
  }
  const index = entries ? entries.find(ref.idstr, ref.instanceId ?? 0) : -1;
  if (index < 0) {
    if (regError) throw regError;
    throw new VmstreamError("NO_DESCRIPTION", "no description for a device section", {
      offset: at,
      detail: `${ref.idstr}/${ref.instanceId}: not registered, and not listed in the vmdesc`,
    });
  }
  entries!.use(index);
  const chosen = vmdescDescription(sources, entries!.entry(index), ref, version, DEFAULT_LIMITS, at);
  const description = { ...chosen.description, version };
  const v = new BerInputVisitor(r);
  const state: State = {};
  loadState(v, description, state, version);
  if (v.error) throw v.error;
  return { description, state, source: chosen.source };
}

/** Convenience: BER -> QEMU in one buffer. */
export function berToQemuBytes(input: Uint8Array, options: QemuFromBerOptions = {}): Uint8Array {
  const r = berToQemu(input, options);
  return joinChunks(r.chunks, r.bytes);
}
