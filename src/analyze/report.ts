// What the analyzer makes of a decoded stream: the analyze-migration.py-compatible document (and
// more: block, dirty-bitmap and command summaries where the script has none), the pretty dump,
// and RAM contents by page. Browser-safe; the CLI adds files and terminals.

import { printable } from "../io/errors.js";
import type { DecodeResult } from "../savevm/types.js";
import type { StreamDecoderOptions } from "../sections/stream.js";
import { blockOf, dirtyBitmapOf, htabOf, ramOf } from "../sections/stream.js";
import { PrettyVisitor } from "../visitor/pretty.js";
import { saveState } from "../vmstate/engine.js";
import { descriptionFromVmdesc } from "../vmstate/from-vmdesc.js";
import { AnalyzeDocument, type AnalyzeObject, type AnalyzeValue, analyzeStateValue, analyzeView, ramSectionValue } from "./analyze-json.js";

/** Decoder options the analyzer wants: device sections nobody registered are described from the vmdesc. */
export const analyzeDecoderOptions: Pick<StreamDecoderOptions, "describe"> = {
  describe: (_idstr, _instance, device) => descriptionFromVmdesc(device),
};

const hex = (n: number | bigint, width: number): string => "0x" + n.toString(16).padStart(width, "0");
const obj = (o: Record<string, AnalyzeValue>): AnalyzeObject => new Map(Object.entries(o));

/**
 * The `-d state` document: `"<idstr> (<section_id>)"` per section in stream order, as the script
 * writes it for RAM, sPAPR HTAB and device sections; block and dirty-bitmap sections (which the
 * script cannot read) get a summary of our own.
 */
export function analyzeDocumentOf(result: DecodeResult, options: { memory?: boolean } = {}): AnalyzeDocument {
  const doc = new AnalyzeDocument();
  const devices = new Map(result.devices.map((d) => [d.sectionIndex, d]));
  result.sections.forEach((sec, index) => {
    if (doc.has(sec.id)) return;
    if (sec.type === "full") {
      const dev = devices.get(index);
      // A registered description is shown as the script would show its bytes (vmdesc names, opaque types as hex).
      const vmsd = dev?.source === "registry" ? analyzeView(dev.description) : dev?.description;
      if (dev && vmsd) doc.device(sec.id, sec.idstr, analyzeStateValue(vmsd, dev.state, sec.idstr));
      return;
    }
    switch (sec.idstr) {
      case "ram": {
        const ram = ramOf(result);
        const value = ramSectionValue((ram?.blocks ?? []).map((b) => [b.name, b.length] as const));
        if (options.memory) value.set("memory", ramMemoryValue(result));
        doc.set(sec.id, sec.idstr, value);
        return;
      }
      case "spapr/htab":
        doc.htab(sec.id);
        return;
      case "block": {
        const b = blockOf(result);
        const devs: AnalyzeObject = new Map();
        for (const d of b?.devices ?? []) {
          devs.set(d.name, obj({ "data chunks": hex(d.dataChunks, 8), "zero chunks": hex(d.zeroChunks, 8), "bytes up to": hex(d.end, 16) }));
        }
        doc.set(sec.id, sec.idstr, obj({ devices: devs, "progress records": hex(b?.records.progress ?? 0, 8) }));
        return;
      }
      case "dirty-bitmap": {
        const d = dirtyBitmapOf(result);
        doc.set(sec.id, sec.idstr, obj({ bitmaps: String(d?.bitmaps.length ?? 0), records: String(d?.records ?? 0) }));
        return;
      }
      default:
        doc.set(sec.id, sec.idstr, "");
    }
  });
  return doc;
}

/**
 * RAM contents by page, from materialised RAM: `{ block: { "0x<offset>": "Filled with 0xNN" | "<hex bytes>" } }`.
 * Unlike the script (which shows the last record received per page), this is the RAM the stream
 * leaves behind, every page of every block.
 */
export function ramMemoryValue(result: DecodeResult): AnalyzeObject {
  const out: AnalyzeObject = new Map();
  const ram = ramOf(result);
  const P = result.pageSize;
  for (const b of ram?.blocks ?? []) {
    const data = b.data;
    if (!data) continue;
    // pages the stream never wrote are zero and are not read (reading would commit them: docs/memory.md)
    const written = b.written;
    const pages: AnalyzeObject = new Map();
    for (let off = 0; off + P <= data.length; off += P) {
      const i = off / P;
      if (written && ((written[i >> 3]! >> (i & 7)) & 1) === 0) {
        pages.set(hex(off, 16), `Filled with ${hex(0, 2)}`);
        continue;
      }
      const page = data.subarray(off, off + P);
      const first = page[0]!;
      let same = true;
      for (let i = 1; i < P && same; i++) same = page[i] === first;
      pages.set(hex(off, 16), same ? `Filled with ${hex(first, 2)}` : Array.from(page, (x) => x.toString(16).padStart(2, "0")).join(" "));
    }
    out.set(b.name, pages);
  }
  return out;
}

/**
 * The pretty trace of every device section, each after a line `# <idstr> instance <n> version <v>`,
 * and one summary line per iterative section type where it first appears. Lines are printable (no control
 * characters from the stream).
 */
export function dumpLines(result: DecodeResult, onLine: (line: string) => void): void {
  // lines carry text from the stream (idstrs, field names, strings): escaped for a terminal
  const emit = onLine;
  onLine = (line) => emit(printable(line));
  const devices = new Map(result.devices.map((d) => [d.sectionIndex, d]));
  const seenLive = new Set<string>();
  result.sections.forEach((sec, index) => {
    if (sec.type === "full") {
      const dev = devices.get(index);
      if (!dev) return;
      onLine(`# ${sec.idstr} instance ${sec.instanceId >>> 0} version ${sec.version}`);
      const v = new PrettyVisitor({ onLine });
      saveState(v, dev.description, dev.state, sec.idstr);
      if (v.error) onLine(`# (could not print: ${v.error.message})`);
      return;
    }
    if (seenLive.has(sec.idstr)) return;
    seenLive.add(sec.idstr);
    onLine(`# ${sec.idstr}: ${liveSummary(result, sec.idstr)}`);
  });
}

function liveSummary(result: DecodeResult, idstr: string): string {
  const sections = result.sections.filter((s) => s.idstr === idstr).length;
  switch (idstr) {
    case "ram": {
      const ram = ramOf(result);
      if (!ram) return `${sections} sections`;
      const r = ram.records;
      return `${ram.blocks.length} blocks, ${ram.totalBytes} bytes; ${r.zero} zero, ${r.normal} normal, ${r.xbzrle} xbzrle, ${r.compressed} compressed page records; ${sections} sections`;
    }
    case "block": {
      const b = blockOf(result);
      const devs = (b?.devices ?? []).map((d) => `${d.name} (${d.dataChunks} data + ${d.zeroChunks} zero chunks)`).join(", ");
      return `${devs || "no devices"}; ${b?.records.progress ?? 0} progress records; ${sections} sections`;
    }
    case "spapr/htab": {
      const h = htabOf(result);
      if (!h) return `${sections} sections`;
      return `${h.shift === undefined ? "no HPT" : `HPT 2^${h.shift} bytes`}; ${h.chunks} chunks, ${h.valid} valid and ${h.invalidated} invalidated entries; ${sections} sections`;
    }
    default:
      return `${sections} sections`;
  }
}
