// NEW migration streams from a decoded one (tests only).
//
// engineModelStream / runEngine: the decoded model (materialised RAM, disks, HPT; devices from their states and
// descriptions, QEMU's section ids) through the library's source engine (MigrationSource).
//
// buildModelStream: what no library API writes — records of the test's own through the low-level writers (extra
// RAM PART sections, a disk image through BlockWriter.image, HPTE chunks added to the original htab sections).
// Layout (as QEMU's):
//   header, configuration,
//   START of every live handler in the original order (ram: MEM_SIZE of the decoded blocks; block: EOS;
//   spapr/htab: its header, re-read from the original START),
//   ram PART: every page of every materialised block through RamWriter.sendBlock (ramEncode, zero pages as ZERO),
//   one ram PART per `ramParts` callback (records written by the test),
//   block PART: `block.image` in 1 MiB chunks through BlockWriter,
//   spapr/htab PART / END: the original items written again through HtabWriter (plus `htab` chunks of the test's),
//   ram END (EOS), block END (PROGRESS 100, EOS),
//   device sections from their decoded states and descriptions, EOF, vmdesc (generated, or the stream's text).

import { deviceSpec } from "../../src/convert/devices.js";
import { VmstreamError } from "../../src/io/errors.js";
import { ByteWriter } from "../../src/io/writer.js";
import type { Kernels } from "../../src/kernels/types.js";
import { type MigrationDevice, type MigrationOutcome, MigrationSource, type MigrationSourceOptions } from "../../src/migration/source.js";
import { encoderFor } from "../../src/savevm/encoder.js";
import type { DecodeResult, SectionRecord } from "../../src/savevm/types.js";
import type { BlockResult } from "../../src/sections/block/handler.js";
import { BlockWriter } from "../../src/sections/block/writer.js";
import { RamWriter } from "../../src/sections/ram/writer.js";
import type { HtabChunk, HtabItem } from "../../src/sections/spapr-htab/format.js";
import type { HtabResult } from "../../src/sections/spapr-htab/handler.js";
import { HtabWriter } from "../../src/sections/spapr-htab/writer.js";
import { liveRecords, recordsAt } from "./records.js";

export interface MaterializedBlock {
  readonly name: string;
  readonly length: bigint;
  readonly ptr: number;
  readonly mrAddr?: bigint;
}

export interface ModelStreamOptions {
  /** Extra ram PART sections, one per callback, after the PART carrying the model's RAM. */
  readonly ramParts?: readonly ((ram: RamWriter) => void)[];
  /** Write this disk image as the block section's data (needed when the stream has a block section). */
  readonly block?: { readonly device: string; readonly image: Uint8Array; readonly zeroBlocks?: boolean };
  /** HPTE chunks of the test's own, written before the end marker of the first spapr/htab PART / of the END. */
  readonly htab?: { readonly part?: readonly HtabChunk[]; readonly end?: readonly HtabChunk[] };
}

export interface ModelStreamResult {
  readonly bytes: Uint8Array;
  readonly vmdescGenerated: boolean;
  readonly htabChunks: number;
}

export function ramBlocksOf(r: DecodeResult): readonly MaterializedBlock[] {
  const ram = r.live.ram as { materialized: boolean; blocks: readonly MaterializedBlock[] } | undefined;
  if (!ram?.materialized) throw new VmstreamError("STATE", "needs materialised RAM (materialize: { ram: true })");
  return ram.blocks;
}

/** The bytes of a materialised block (a view into the kernels' memory: copy it before the next allocation). */
export function ramBlockBytes(r: DecodeResult, name: string): Uint8Array {
  const b = ramBlocksOf(r).find((x) => x.name === name);
  if (!b) throw new Error(`no RAM block ${name}`);
  return (r.kernels as Kernels).u8.subarray(b.ptr, b.ptr + Number(b.length));
}

export function buildModelStream(input: Uint8Array, r: DecodeResult, opts: ModelStreamOptions = {}): ModelStreamResult {
  const live = r.sections.filter((s) => s.type !== "full");
  const starts = live.filter((s) => s.type === "start");
  for (const s of starts) {
    if (!["ram", "block", "spapr/htab"].includes(s.idstr)) throw new Error(`buildModelStream: live section ${s.idstr} not supported`);
  }
  const out = new ByteWriter({ initialCapacity: 1 << 20 });
  const enc = encoderFor(r, out);
  const ignoreShared = r.configuration?.capabilities?.includes("x-ignore-shared") ?? false;
  const ram = new RamWriter(out, r.pageSize, { ignoreShared }, r.kernels as Kernels);
  const block = new BlockWriter(out);
  const htab = new HtabWriter(out);
  const id = (name: string): SectionRecord | undefined => starts.find((s) => s.idstr === name);
  let htabChunks = 0;
  const replayHtab = (s: SectionRecord, extra: readonly HtabChunk[] = []): void => {
    let header = -1;
    for (const x of recordsAt<HtabItem>(liveRecords(input), s.offset)) {
      if (x.kind === "header") {
        header = x.value;
        htab.header(x.value);
      } else if (x.kind === "end") {
        for (const c of extra) {
          htab.chunk(c);
          htabChunks++;
        }
        extra = [];
        htab.endMarker();
      } else {
        htab.chunk(x);
        htabChunks++;
      }
    }
    if (extra.length > 0) throw new Error(`buildModelStream: cannot add HPTE chunks to an htab section with header 0x${header.toString(16)}`);
  };
  try {
    // START sections
    for (const s of starts) {
      enc.begin("start", s.id, s.idstr, s.instanceId, s.version);
      if (s.idstr === "ram") {
        ram.memSize(ramBlocksOf(r).map((b) => ({ name: b.name, length: b.length, ...(b.mrAddr !== undefined ? { mrAddr: b.mrAddr } : {}) })));
        ram.eos();
      } else if (s.idstr === "block") block.eos();
      else replayHtab(s);
      enc.end();
    }
    // PART sections
    const ramStart = id("ram");
    if (ramStart) {
      enc.begin("part", ramStart.id);
      for (const b of ramBlocksOf(r)) ram.sendBlock({ name: b.name, ptr: b.ptr, length: Number(b.length) }, { zeroDetect: true });
      ram.eos();
      enc.end();
      for (const part of opts.ramParts ?? []) {
        enc.begin("part", ramStart.id);
        part(ram);
        ram.eos();
        enc.end();
      }
    }
    const blockStart = id("block");
    if (blockStart) {
      if (!opts.block) throw new Error("buildModelStream: the stream has a block section: pass the disk image (or use engineModelStream)");
      enc.begin("part", blockStart.id);
      block.image(opts.block.device, opts.block.image, opts.block.zeroBlocks ? { zeroBlocks: true } : {});
      block.eos();
      enc.end();
    }
    const htabStart = id("spapr/htab");
    if (htabStart) {
      let first = true;
      for (const s of live.filter((x) => x.idstr === "spapr/htab" && x.type === "part")) {
        enc.begin("part", htabStart.id);
        replayHtab(s, first ? opts.htab?.part : undefined);
        first = false;
        enc.end();
      }
      if (first && opts.htab?.part?.length) throw new Error("buildModelStream: no spapr/htab PART to add HPTE chunks to");
    }
    // END sections
    for (const s of starts) {
      enc.begin("end", s.id);
      if (s.idstr === "ram") ram.eos();
      else if (s.idstr === "block") {
        block.progress(100);
        block.eos();
      } else {
        const e = live.find((x) => x.idstr === "spapr/htab" && x.type === "end");
        if (e) replayHtab(e, opts.htab?.end);
        else {
          htab.header(0);
          for (const c of opts.htab?.end ?? []) htab.chunk(c);
          htab.endMarker();
        }
      }
      enc.end();
    }
  } finally {
    ram.dispose();
  }
  for (const dev of r.devices) enc.device(deviceSpec(dev));
  enc.eof();
  let vmdescGenerated = false;
  if (r.vmdesc) {
    const text = enc.vmdescText();
    vmdescGenerated = text === r.vmdesc.text;
    enc.vmdescTrailer(vmdescGenerated ? text : r.vmdesc.text);
  }
  return { bytes: out.concat(), vmdescGenerated, htabChunks };
}

/** The section id QEMU gave the live section `idstr` of a decoded stream. */
export function liveSectionId(r: DecodeResult, idstr: string): number {
  const s = r.sections.find((x) => x.type === "start" && x.idstr === idstr);
  if (!s) throw new Error(`no ${idstr} START section`);
  return s.id;
}

/** Engine options from a decoded QEMU stream: its RAM blocks (sent once: the host log says nothing changes), its devices and ids. */
export function engineOptionsOf(r: DecodeResult): Pick<MigrationSourceOptions, "kernels" | "blocks" | "dirtyLog" | "devices" | "machine" | "ramSectionId"> {
  const devices: MigrationDevice[] = r.devices.map((d) => {
    const s = deviceSpec(d);
    return {
      idstr: s.idstr,
      instanceId: s.instanceId,
      description: s.description,
      state: s.state,
      sectionId: s.id,
      ...(s.version !== undefined ? { version: s.version } : {}),
      ...(s.vmdesc !== undefined ? { vmdesc: s.vmdesc } : {}),
    };
  });
  return {
    kernels: r.kernels as Kernels,
    blocks: ramBlocksOf(r).map((b) => ({ name: b.name, ptr: b.ptr, length: Number(b.length) })),
    dirtyLog: () => undefined,
    devices,
    machine: r.configuration!.machine,
    ramSectionId: liveSectionId(r, "ram"),
  };
}

/** A whole MigrationSource run; `advance(round)` changes the guest after each round. The stream is copied out. */
export function runEngine(options: MigrationSourceOptions, advance: (round: number) => void = () => {}): { bytes: Uint8Array; outcome: MigrationOutcome } {
  const chunks: Uint8Array[] = [];
  const src = new MigrationSource(options, (c) => chunks.push(c.slice()));
  let round = 0;
  try {
    const outcome = src.run(() => advance(++round));
    return { bytes: Buffer.concat(chunks), outcome };
  } finally {
    src.dispose();
  }
}

/**
 * The decoded model through the source engine in one pass (nothing changes): RAM, the disks and the HPT as
 * materialised (decode with `materialize: { ram: true, block: true, htab: true }`), then the devices.
 * `blockChunks`: block records sent (data and zero chunks).
 */
export function engineModelStream(r: DecodeResult): { bytes: Uint8Array; blockChunks: number } {
  const block = r.live.block as BlockResult | undefined;
  const htab = r.live["spapr/htab"] as HtabResult | undefined;
  if (block?.devices.some((d) => !d.image)) throw new Error("engineModelStream: decode with materialize.block");
  if (htab && htab.shift !== undefined && !htab.hpt) throw new Error("engineModelStream: decode with materialize.htab");
  const { bytes, outcome } = runEngine({
    ...engineOptionsOf(r),
    ...(block
      ? { blockDevices: block.devices.map((d) => ({ name: d.name, data: d.image!, dirtyLog: () => undefined })), blockSectionId: liveSectionId(r, "block") }
      : {}),
    ...(htab ? { htab: { ...(htab.hpt ? { hpt: htab.hpt } : {}), dirtyLog: () => undefined, sectionId: liveSectionId(r, "spapr/htab") } } : {}),
    bandwidth: 2 ** 40,
    downtimeTarget: 1,
    maxRounds: 1,
  });
  let blockChunks = 0;
  for (const round of [...outcome.rounds, outcome.final]) {
    for (const c of round.sections) if (c.kind === "block") blockChunks += c.chunks + c.zeroChunks;
  }
  return { bytes, blockChunks };
}
