// What a fixture's reference.json says about its stream, read with vmstream's own decoder (RAM, disks and the
// HPT materialised): sections, page/record counts per RAM block, block-migration and spapr/htab records, and the
// sha256 of every RAM block and disk image. tools/make-fixtures.ts checks these facts against what QEMU itself
// reported (pmemsave, query-migrate, the destination's disk) before it writes them.
import { blockOf, type decodeBytes, htabOf, ramOf } from "../src/sections/stream.js";
import { sha256 } from "../tests/helpers/bytes.js";
import { iterativeSequence } from "../tests/helpers/result-digest.js";

export type Decoded = ReturnType<typeof decodeBytes>;

export const hex = (n: number): string => `0x${n.toString(16)}`;

/** A slice of a RAM block and its sha256 (compared with pmemsave of the same guest-physical range). */
export interface RamSlice {
  ramblock: string;
  offset: string;
  length: string;
  sha256: string;
}

/** The optional subsections of the configuration section that the stream carried. */
function configurationSubsections(r: Decoded): string[] {
  const c = r.configuration;
  if (!c) return [];
  return [
    ...(c.targetPageBits !== undefined ? ["configuration/target-page-bits"] : []),
    ...(c.capabilities !== undefined ? ["configuration/capabilities"] : []),
    ...(c.uuid !== undefined ? ["configuration/uuid"] : []),
  ];
}

/** Page records by kind, named as the flags are. */
const pageCounts = (p: { normal: number; zero: number; xbzrle: number; compressed: number }): Record<string, number> => ({
  PAGE: p.normal,
  ZERO: p.zero,
  XBZRLE: p.xbzrle,
  COMPRESS_PAGE: p.compressed,
});

const nonZero = (o: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(o).filter(([, v]) => v > 0));

/** The `scan` object of reference.json (same keys as the tests read; see tests/fixtures/README-qemu-7.2.md). */
export function scanFacts(r: Decoded): Record<string, unknown> {
  const vmdesc = r.vmdesc;
  const scan: Record<string, unknown> = {
    by: "vmstream decodeBytes (src/sections/stream.ts)",
    bytes: r.bytes,
    version: r.version,
    configuration: { name: r.configuration?.machine, subsections: configurationSubsections(r) },
    // the 0x06 byte, then be32 length and the JSON
    vmdescription: vmdesc && {
      offset: vmdesc.offset,
      json_len: vmdesc.length,
      ends_at_eof: vmdesc.offset !== undefined && vmdesc.offset + 5 + vmdesc.length === r.bytes,
    },
    page_size: r.pageSize,
    device_sections: r.devices.map((d) => `${d.idstr} (instance ${d.instanceId}, version ${d.version})`),
    iterative_section_sequence: iterativeSequence(r),
    iterative_idstrs: [...new Set(r.sections.filter((s) => s.type !== "full").map((s) => s.idstr))],
  };
  const partsOf = (idstr: string): number => r.sections.filter((s) => s.idstr === idstr && (s.type === "part" || s.type === "end")).length;
  const ram = ramOf(r);
  if (ram) {
    scan.ram = {
      blocks: Object.fromEntries(ram.blocks.map((b) => [b.name, Number(b.length)])),
      records: nonZero({ MEM_SIZE: ram.records.memSize, EOS: ram.records.eos, ...pageCounts(ram.records) }),
      per_block: Object.fromEntries(ram.blocks.map((b) => [b.name, nonZero(pageCounts(b.pages))])),
      part_sections: partsOf("ram"),
    };
  }
  const blk = blockOf(r);
  if (blk) {
    scan.block = {
      records: nonZero({ EOS: blk.records.eos, PROGRESS: blk.records.progress, DEVICE_BLOCK: blk.records.device, "DEVICE_BLOCK|ZERO_BLOCK": blk.records.zero }),
      devices: Object.fromEntries(blk.devices.map((d) => [d.name, { data_chunks: d.dataChunks, zero_chunks: d.zeroChunks }])),
      progress: blk.progress,
      part_sections: partsOf("block"),
    };
  }
  const htab = htabOf(r);
  if (htab) {
    const { shift, chunks, valid, invalidated } = htab;
    scan["spapr/htab"] = { header: shift, chunks, valid_ptes: valid, invalid_ptes: invalidated, part_sections: partsOf("spapr/htab") };
  }
  return scan;
}

/**
 * Every RAM block (name without its leading "/", as analyze-migration.py -x names its files) and every disk image
 * (`block-DEVICE.img`) decoded from the stream: bytes and sha256.
 */
export function extractedFiles(r: Decoded): Record<string, { bytes: number; sha256: string }> {
  const files: Record<string, { bytes: number; sha256: string }> = {};
  for (const b of ramOf(r)?.blocks ?? []) {
    const data = b.data;
    if (!data) throw new Error(`RAM block ${b.name} was not materialised`);
    files[b.name.replace(/^\//, "")] = { bytes: data.length, sha256: sha256(data) };
  }
  for (const d of blockOf(r)?.devices ?? []) {
    if (!d.image) throw new Error(`disk ${d.name} was not materialised`);
    files[`block-${d.name}.img`] = { bytes: d.image.length, sha256: sha256(d.image) };
  }
  return Object.fromEntries(Object.entries(files).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** sha256 of `length` bytes at `offset` of RAM block `name`. */
export function ramSlice(r: Decoded, name: string, offset: number, length: number): RamSlice {
  const b = ramOf(r)?.blocks.find((x) => x.name === name);
  const data = b?.data;
  if (!data) throw new Error(`no materialised RAM block ${name}`);
  if (offset + length > data.length) throw new Error(`${name}: ${hex(offset)}+${hex(length)} is past its end (${hex(data.length)})`);
  return { ramblock: name, offset: hex(offset), length: hex(length), sha256: sha256(data.subarray(offset, offset + length)) };
}
