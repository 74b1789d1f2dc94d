// analyze-migration.py compatibility on the real QEMU 7.2 fixtures: every device section is read
// with a description built from the stream's own vmdesc (consuming exactly its payload and
// re-saving it byte for byte), and the whole `-d state` document, RAM block sizes and spapr/htab
// included, is the text the script printed.
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { AnalyzeDocument, analyzeDevice, analyzeToJson, analyzeView, formatAnalyzeJson } from "../../src/analyze/analyze-json.js";
import { ByteReader } from "../../src/io/reader.js";
import { ByteWriter } from "../../src/io/writer.js";
import { WireInputVisitor, WireOutputVisitor } from "../../src/visitor/wire.js";
import { x86DeviceForIdstr } from "../../src/vmstate/devices/index.js";
import { loadState, saveState } from "../../src/vmstate/engine.js";
import { descriptionFromVmdesc } from "../../src/vmstate/from-vmdesc.js";
import type { State } from "../../src/vmstate/types.js";
import { readWholeStream, type StreamSection, type WholeStream } from "../helpers/analyze-stream.js";

const fixture = (name: string) => new URL(`../fixtures/${name}`, import.meta.url);

type DeviceSection = Extract<StreamSection, { kind: "device" }>;

function devices(s: WholeStream): DeviceSection[] {
  return s.sections.filter((x): x is DeviceSection => x.kind === "device");
}

/** The analyze document of a stream, device sections from the vmdesc (what the script does). */
function analyzeDocument(s: WholeStream, useRegistered = false): AnalyzeDocument {
  const doc = new AnalyzeDocument();
  for (const sec of s.sections) {
    if (sec.kind === "ram") doc.ram(sec.sectionId, sec.blocks, sec.idstr);
    else if (sec.kind === "htab") doc.htab(sec.sectionId, sec.idstr);
    else if (sec.kind === "block") doc.set(sec.sectionId, sec.idstr, new Map());
    else {
      const vmsd = useRegistered ? analyzeView(x86DeviceForIdstr(sec.idstr)!) : descriptionFromVmdesc(sec.desc);
      const r = new ByteReader(sec.payload, { sticky: true, baseOffset: sec.offset });
      const { value } = analyzeDevice(r, vmsd, sec.version, sec.idstr);
      expect(r.remaining, sec.idstr).toBe(0);
      doc.device(sec.sectionId, sec.idstr, value);
    }
  }
  return doc;
}

function roundTrip(sec: DeviceSection): void {
  const vmsd = descriptionFromVmdesc(sec.desc);
  const r = new ByteReader(sec.payload, { sticky: true, baseOffset: sec.offset });
  const v = new WireInputVisitor(r);
  const s: State = {};
  loadState(v, vmsd, s, sec.version, sec.idstr);
  expect(v.error, sec.idstr).toBeUndefined();
  expect(r.remaining, sec.idstr).toBe(0);
  const w = new ByteWriter();
  const out = new WireOutputVisitor(w);
  saveState(out, vmsd, s, sec.idstr);
  expect(out.error).toBeUndefined();
  expect(Buffer.from(w.concat()).equals(sec.payload)).toBe(true);
}

/** The patched script's documents carry page counters of its own; keep device sections and RAM "section sizes". */
function comparable(doc: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc)) {
    if (k.startsWith("block (")) continue;
    if (k.startsWith("ram (")) out[k] = { "section sizes": (v as Record<string, unknown>)["section sizes"] };
    else out[k] = v;
  }
  return out;
}

describe("x86-pc-64m", () => {
  const stream = readWholeStream(fixture("x86-pc-64m.mig.gz"));
  const expected = readFileSync(fixture("x86-pc-64m.analyze.json"), "utf8");

  it.each(devices(stream).map((sec) => ({ sec, name: `${sec.idstr} #${sec.instanceId}` })))(
    "$name: the vmdesc description consumes exactly the payload and re-saves it",
    ({ sec }) => roundTrip(sec),
  );

  it("the -d state document is analyze-migration.py's text, byte for byte", () => {
    expect(analyzeDocument(stream).format()).toBe(expected);
  });

  it("the registered x86 descriptions render the same document without the vmdesc", () => {
    expect(analyzeDocument(stream, true).format()).toBe(expected);
  });
});

describe.each(["x86-pc-block", "x86-pc-block-zeroblocks", "x86-pc-xbzrle"])("%s (vs the patched script)", (name) => {
  const stream = readWholeStream(fixture(`${name}.mig.gz`));
  const expected = JSON.parse(readFileSync(fixture(`${name}.analyze-patched.json`), "utf8")) as Record<string, unknown>;

  it("every device section round-trips through its vmdesc description", () => {
    for (const sec of devices(stream)) roundTrip(sec);
  });

  it("device sections and RAM section sizes equal the patched script's output", () => {
    const ours = analyzeToJson(analyzeDocument(stream).toValue()) as Record<string, unknown>;
    expect(comparable(ours)).toEqual(comparable(expected));
    // Same key order too.
    expect(Object.keys(ours)).toEqual(Object.keys(expected));
  });

  it("and so do the registered descriptions", () => {
    const ours = analyzeToJson(analyzeDocument(stream, true).toValue()) as Record<string, unknown>;
    expect(comparable(ours)).toEqual(comparable(expected));
  });

  it("the device and RAM parts as text are the script's formatting of the same values", () => {
    const ours = analyzeDocument(stream).toValue();
    const text = formatAnalyzeJson(comparable(expected) as never);
    const mine = new Map([...ours].filter(([k]) => !k.startsWith("block (")));
    expect(formatAnalyzeJson(mine)).toBe(text);
  });
});

describe("the fixtures' own text", () => {
  it.each([
    "x86-pc-64m.analyze.json",
    "x86-pc-block.analyze-patched.json",
    "x86-pc-block-zeroblocks.analyze-patched.json",
    "x86-pc-xbzrle.analyze-patched.json",
  ])("%s is formatAnalyzeJson of its parsed value (the same Python formatting)", (name) => {
    const text = readFileSync(fixture(name), "utf8");
    expect(formatAnalyzeJson(JSON.parse(text) as never)).toBe(text);
  });
});

describe("ppc64-pseries", () => {
  const stream = readWholeStream(fixture("ppc64-pseries.mig.gz"));
  const expected = gunzipSync(readFileSync(fixture("ppc64-pseries.analyze.json.gz"))).toString("utf8");

  it("every device section round-trips through its vmdesc description (spapr_iommu instance ids >= 2^31)", () => {
    const iommu = devices(stream).filter((s) => s.idstr === "spapr_iommu");
    expect(iommu.map((s) => s.instanceId)).toEqual([0x80000000, 0x80000001]);
    for (const sec of devices(stream)) roundTrip(sec);
  });

  it("the -d state document is analyze-migration.py's text, byte for byte", () => {
    const text = analyzeDocument(stream).format();
    expect(text.length).toBe(expected.length);
    expect(text === expected).toBe(true);
  });
});
