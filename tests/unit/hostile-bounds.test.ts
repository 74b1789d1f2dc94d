// Work and memory bounded by the input (issue #13, item 1; docs/decoder.md, "Bounds"): crafted streams that ask
// for far more work than their size are rejected after little of it, searches are linear, and decode time and
// peak RSS, measured in child processes running dist/, grow at most linearly with the input.
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { analyzeDecoderOptions } from "../../src/analyze/report.js";
import { InputTail } from "../../src/convert/input-tail.js";
import { VmstreamError } from "../../src/io/errors.js";
import { ByteReader } from "../../src/io/reader.js";
import { DEFAULT_LIMITS, SEC } from "../../src/savevm/constants.js";
import type { DecodeResult } from "../../src/savevm/types.js";
import { findVmdescTrailer, parseVmdescJson } from "../../src/savevm/vmdesc.js";
import { decodeBytes, StreamDecoder, validateBytes } from "../../src/sections/stream.js";
import { WireInputVisitor } from "../../src/visitor/wire.js";
import { loadState } from "../../src/vmstate/engine.js";
import { F } from "../../src/vmstate/fields.js";
import {
  budgetEdgeStream,
  emptyElementsStream,
  manyDevicesStream,
  manySubsectionsStream,
  repeatedSubsectionStream,
  trailerCandidatesStream,
} from "../helpers/hostile-streams.js";
import { StreamBuilder } from "../helpers/stream-builder.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const DIST = fileURLToPath(new URL("../../dist/", import.meta.url));
const tmp = suiteTempDir("vmstream-bounds-");

/** `check`'s verdict on bytes (the analyzer's descriptions from the vmdesc), and how long it took. */
function check(bytes: Uint8Array) {
  const t = performance.now();
  const v = validateBytes(bytes, analyzeDecoderOptions);
  return { ...v, ms: performance.now() - t };
}

function limitError(v: { ok: boolean; error?: VmstreamError }): VmstreamError {
  expect(v.ok).toBe(false);
  expect(v.error).toBeInstanceOf(VmstreamError);
  expect(v.error!.code).toBe("LIMIT");
  expect(v.error!.message).toContain("too many visits");
  return v.error!;
}

describe("elements that read nothing cost a budget of visits per byte read", () => {
  it.each(["buffer", "struct", "nested"] as const)("16M empty elements (%s) in a ~200-byte stream: a LIMIT error with offset, section and path", (kind) => {
    const bytes = emptyElementsStream(1 << 24, 1, kind);
    expect(bytes.length).toBeLessThan(400);
    const v = check(bytes);
    const e = limitError(v);
    expect(e.offset).toBe(25); // the payload of the one device section (nothing of it was read)
    expect(e.section).toMatchObject({ idstr: "dev", instanceId: 0 });
    expect(e.path).toMatch(/^dev\.a0\(16777216\)\(0\)\.\[\d+\]/);
    expect(v.ms).toBeLessThan(10_000); // (without the budget: about a minute and 6 GB for the buffer kind)
  });

  it("the same stream with several such arrays stops at the first", () => {
    const e = limitError(check(emptyElementsStream(1 << 24, 4, "buffer")));
    expect(e.path).toMatch(/^dev\.a0\(/);
  });

  it("a subsection repeated in its 10 bytes a time, each asking for 100k empty structs", () => {
    const bytes = repeatedSubsectionStream(100, 100_000);
    const e = limitError(check(bytes));
    expect(e.path).toContain("dev/sub");
  });

  it("the allowance is shared by all device sections: small sections cannot each spend the base", () => {
    // each section walks 60000 empty elements (under the base of 65536) and reads nothing
    const e = limitError(check(emptyElementsStream(60_000, 1, "struct", 50)));
    expect(e.section).toMatchObject({ idstr: "dev", instanceId: 1 });
  });

  it("work within the budget decodes (the base, and visits per byte read), work past it does not", () => {
    const base = DEFAULT_LIMITS.visitsBase;
    const k = DEFAULT_LIMITS.visitsPerByte;
    expect(check(emptyElementsStream(base - 10, 1, "struct")).ok).toBe(true);
    // each section reads 1024 bytes and walks k - 1 empty structs per byte: the allowance grows, all decode
    const within = check(budgetEdgeStream(40, 1024, k - 1));
    expect(within.error).toBeUndefined();
    expect(within.summary.devices).toBe(40);
    // k + 1 per byte: each section spends 1024 visits more than it earns, so the base runs out
    const past = limitError(check(budgetEdgeStream(80, 1024, k + 1)));
    expect(past.section!.instanceId).toBeGreaterThanOrEqual(Math.floor(base / 1024) - 2);
    // a caller can raise the budget
    const raised = validateBytes(budgetEdgeStream(80, 1024, k + 1), { ...analyzeDecoderOptions, limits: { visitsPerByte: k + 2 } });
    expect(raised.error).toBeUndefined();
  });

  it("a registered description whose count comes from the stream: 4G empty structs after 4 bytes", () => {
    // (the shape that once ran the "truncated stream" property of vmstate-properties.test.ts out of memory)
    const empty = { name: "e", version: 1, fields: [] };
    const desc = { name: "dev", version: 1, fields: [F.uint32("n"), F.structArray("e", empty, { field: "n" })] };
    const bytes = new StreamBuilder()
      .header()
      .full(0, "dev", 1, (s) => s.be32(0xffffffff))
      .eof()
      .build();
    const t = performance.now();
    // (strictDevices: the registered description's own error, not the search for another description)
    const v = validateBytes(bytes, { devices: (idstr) => (idstr === "dev" ? desc : undefined), strictDevices: true });
    expect(performance.now() - t).toBeLessThan(10_000);
    const e = limitError(v);
    expect(e.path).toMatch(/^dev\.e\(4294967295\)\(0\)\.\[\d+\]$/);
    expect(e.offset).toBe(29);
    // the walk is bounded the same way outside the decoder (a WireInputVisitor of its own)
    const r = new ByteReader(new Uint8Array([0, 0, 0, 200]), { sticky: true });
    const w = new WireInputVisitor(r, { base: 100, perByte: 2 });
    const state: Record<string, unknown> = {};
    loadState(w, desc, state, 1);
    expect(w.error?.code).toBe("LIMIT");
    expect(w.visits).toBe(100 + 2 * 4 + 1);
    // a count the budget allows decodes
    const small = new StreamBuilder()
      .header()
      .full(0, "dev", 1, (s) => s.be32(1000))
      .eof()
      .build();
    expect(validateBytes(small, { devices: (idstr) => (idstr === "dev" ? desc : undefined) }).error).toBeUndefined();
  });

  it("without the analyzer's descriptions (the opaque fallback) the empty-element stream reads as the 0 bytes it is", () => {
    const r = decodeBytes(emptyElementsStream(1 << 24, 4, "buffer"));
    try {
      expect(r.completeness.complete).toBe(true);
      expect(r.devices[0]!.source).toBe("opaque");
      expect(r.devices[0]!.payloadSize).toBe(0);
    } finally {
      r.dispose();
    }
  });
});

describe("searches are linear", () => {
  it("100k same-named device sections are matched to their vmdesc entries in order", () => {
    const n = 100_000;
    const t = performance.now();
    const r = decodeBytes(manyDevicesStream(n), analyzeDecoderOptions);
    try {
      expect(performance.now() - t).toBeLessThan(60_000); // (scanning from the first entry: minutes)
      expect(r.completeness.complete).toBe(true);
      expect(r.devices).toHaveLength(n);
      expect(r.devices[n - 1]!.state).toEqual({ x: (n - 1) & 0xff });
    } finally {
      r.dispose();
    }
  });

  it("the verdict lists what is missing and what is not listed, matching by name and instance in order", () => {
    const b = new StreamBuilder().header();
    b.full(0, "a", 1, (s) => s.u8(1));
    b.full(1, "b", 1, (s) => s.u8(2));
    b.full(2, "a", 1, (s) => s.u8(3));
    b.full(3, "c", 1, (s) => s.u8(4), 7);
    const one = (name: string, instance = 0) => ({ name, instance_id: instance, vmsd_name: name, version: 1, fields: [{ name: "x", type: "uint8", size: 1 }] });
    const bytes = b
      .eof()
      .vmdesc({ page_size: 4096, devices: [one("a"), one("a"), one("a"), one("b"), one("c")] })
      .build();
    // "c" instance 7 has a registered description and no vmdesc entry
    const c = { name: "c", version: 1, fields: [F.uint8("x")] };
    const d = new StreamDecoder({ ...analyzeDecoderOptions, devices: (idstr, instance) => (idstr === "c" && instance === 7 ? c : undefined) });
    let r: DecodeResult | undefined;
    try {
      d.push(bytes);
      r = d.end();
      expect(r.completeness.missingDevices).toEqual([
        { name: "a", instanceId: 0 },
        { name: "c", instanceId: 0 },
      ]);
      expect(r.completeness.unlistedSections).toEqual([{ idstr: "c", instanceId: 7 }]);
      expect(r.devices.map((x) => x.state)).toEqual([{ x: 1 }, { x: 2 }, { x: 3 }, { x: 4 }]);
      expect(r.devices.map((x) => x.vmdesc)).toEqual([one("a"), one("b"), one("a"), undefined]);
    } finally {
      r?.dispose();
      d.dispose();
    }
  });

  it("a subsection is found by name, not by a scan of the description's list (20k listed, the last one 20k times)", () => {
    const v = check(manySubsectionsStream(20_000, 20_000));
    expect(v.ms).toBeLessThan(30_000); // (a scan per subsection read: over a minute)
    expect(v.error?.code).toBe("BAD_VALUE");
    // the message names a few of the subsections, not all 20000
    expect(v.error!.message).toMatch(/the stream has subsections \[dev\/s19999, .*, \.\.\. \(20000 in all\)\], the vmdesc lists \[dev\/s0, /);
    expect(v.error!.message.length).toBeLessThan(1000);
  });

  it("the vmdesc trailer search parses a few candidates at most (1 MiB of would-be trailers)", () => {
    const bytes = trailerCandidatesStream(1 << 20);
    const t = performance.now();
    expect(findVmdescTrailer(bytes, DEFAULT_LIMITS.vmdescBytes, DEFAULT_LIMITS.vmdescDepth)).toBeUndefined();
    expect(performance.now() - t).toBeLessThan(5_000); // (a parse per candidate: minutes)
  });

  it("the trailer search finds what a parse of every candidate finds (random tails with planted candidates)", () => {
    const json = (text: string) => new TextEncoder().encode(text);
    /** The search as it was: a parse of every candidate, shortest text first. */
    const reference = (b: Uint8Array): number | undefined => {
      for (let i = b.length - 5; i >= 1; i--) {
        if (b[i] !== SEC.VMDESCRIPTION || b[i - 1] !== SEC.EOF) continue;
        const len = ((b[i + 1]! << 24) | (b[i + 2]! << 16) | (b[i + 3]! << 8) | b[i + 4]!) >>> 0;
        if (i + 5 + len !== b.length || b[i + 5] !== 0x7b) continue; // QEMU's JSON starts with "{" right away
        try {
          parseVmdescJson(b.subarray(i + 5), 64);
          return i;
        } catch {
          // not this one
        }
      }
      return undefined;
    };
    const piece = fc.oneof(
      fc.uint8Array({ maxLength: 12 }),
      fc.constantFrom(json('{"page_size":4096,"devices":[]}'), json('{"page_size": 4096,\n\t"devices": [ ]}\r\n'), json('{"x":"\u00e9"}'), json("{")),
      fc.constant("trailer" as const),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), (pieces) => {
        // build back to front so that a "trailer" piece can give the length to the end
        let tail = new Uint8Array(0);
        for (let k = pieces.length - 1; k >= 0; k--) {
          const p = pieces[k]!;
          const head =
            p === "trailer" ? new Uint8Array([0, 6, tail.length >>> 24, (tail.length >>> 16) & 0xff, (tail.length >>> 8) & 0xff, tail.length & 0xff]) : p;
          const next = new Uint8Array(head.length + tail.length);
          next.set(head);
          next.set(tail, head.length);
          tail = next;
        }
        expect(findVmdescTrailer(tail, 1 << 20, 64)?.at).toBe(reference(tail));
      }),
      { numRuns: 5000 },
    );
  });

  it("InputTail finds the bytes of a range among many small parts", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 300 }), fc.nat(), fc.nat(), fc.nat(), (sizes, a, b, c) => {
        const tail = new InputTail();
        const all: number[] = [];
        for (const n of sizes) {
          const chunk = Uint8Array.from({ length: n }, (_, i) => (all.length + i) & 0xff);
          all.push(...chunk);
          tail.push(chunk);
        }
        const dropAt = c % all.length;
        tail.drop(dropAt);
        const from = dropAt + (a % (all.length - dropAt));
        const to = from + (b % (all.length - from + 1));
        expect(Array.from(tail.range(from, to))).toEqual(all.slice(from, to));
      }),
      { numRuns: 300 },
    );
  });

  it("chunks held while paused are fed in order, also when the decoder pauses again inside one", () => {
    // 300 sections of 1 KiB, a 64 KiB window and 200 KiB chunks: a held chunk never fits at once, so a pause
    // comes before all of it is taken
    const b = new StreamBuilder().header();
    for (let i = 0; i < 300; i++) b.full(i, "dev", 1, (s) => s.bytes(new Uint8Array(1024).fill(i)), i);
    const entries = Array.from({ length: 300 }, (_, i) => ({
      name: "dev",
      instance_id: i,
      vmsd_name: "dev",
      version: 1,
      fields: [{ name: "d", type: "buffer", size: 1024 }],
    }));
    const vmdesc = JSON.stringify({ page_size: 4096, devices: entries });
    const bytes = b.eof().vmdesc(vmdesc).build();
    const plain = decodeBytes(bytes, analyzeDecoderOptions);
    const expected = plain.devices.map((x) => x.state);
    plain.dispose();
    let pauses = 0;
    const d: StreamDecoder = new StreamDecoder({
      ...analyzeDecoderOptions,
      vmdesc,
      limits: { windowBytes: 64 << 10 },
      onEvent: (e) => {
        if (e.type !== "device") return;
        pauses++;
        d.pause();
      },
    });
    let r: DecodeResult | undefined;
    try {
      for (let o = 0; o < bytes.length; o += 200 << 10) d.push(bytes.subarray(o, o + (200 << 10)));
      while (d.isPaused) d.resume();
      r = d.end();
      expect(pauses).toBe(300);
      expect(r.devices.map((x) => x.state)).toEqual(expected);
      expect(r.completeness.complete).toBe(true);
    } finally {
      r?.dispose();
      d.dispose();
    }
  });
});

/** One run of `check` in a child process on dist/: its verdict, decode time and peak RSS. */
function measure(path: string): { ok: boolean; code?: string; ms: number; maxRssKiB: number } {
  const script = `
    const { validateFile } = await import(${JSON.stringify(join(DIST, "sections/node.js"))});
    const { analyzeDecoderOptions } = await import(${JSON.stringify(join(DIST, "analyze/report.js"))});
    const t = performance.now();
    const v = await validateFile(process.argv[1], analyzeDecoderOptions);
    const ms = performance.now() - t;
    console.log(JSON.stringify({ ok: v.ok, code: v.error?.code, ms, maxRssKiB: process.resourceUsage().maxRSS }));
  `;
  const r = spawnSync(process.execPath, ["--max-old-space-size=2048", "--input-type=module", "-e", script, path], { encoding: "utf8", timeout: 300_000 });
  if (r.status !== 0) throw new Error(`child failed (${r.status ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout) as { ok: boolean; code?: string; ms: number; maxRssKiB: number };
}

/**
 * Inputs of 4 sizes, each twice the last, checked in fresh processes: from the smallest to the largest (8x the
 * input) time may grow at most 24x and RSS above an empty process's 24x (3x per doubling; quadratic would be
 * 64x). Small measurements are floored (timer and allocator noise), and absolute ceilings catch what a ratio
 * cannot.
 */
function expectLinear(name: string, make: (scale: number) => Uint8Array, verdict: (m: ReturnType<typeof measure>) => void): void {
  const empty = join(tmp(), `${name}-empty.mig`);
  writeFileSync(empty, new StreamBuilder().header().eof().build());
  const baseRss = measure(empty).maxRssKiB;
  const runs = [1, 2, 4, 8].map((scale) => {
    const path = join(tmp(), `${name}-${scale}.mig`);
    const bytes = make(scale);
    writeFileSync(path, bytes);
    // the faster of two runs: a busy shared machine only ever slows a run down
    const a = measure(path);
    const b = measure(path);
    verdict(a);
    return { size: bytes.length, ms: Math.min(a.ms, b.ms), rss: Math.min(a.maxRssKiB, b.maxRssKiB) };
  });
  const first = runs[0]!;
  const last = runs[3]!;
  const detail = JSON.stringify({ baseRss, runs });
  expect(last.size / first.size, detail).toBeGreaterThan(7);
  expect(last.ms / Math.max(first.ms, 50), detail).toBeLessThanOrEqual(24);
  expect((last.rss - baseRss) / Math.max(first.rss - baseRss, 16 << 10), detail).toBeLessThanOrEqual(24);
  expect(last.ms, detail).toBeLessThan(120_000);
  expect(last.rss, detail).toBeLessThan(1536 << 10);
}

describe("time and peak RSS grow linearly with the input (child processes on dist/)", () => {
  it("many same-named device sections (matching them to vmdesc entries)", () => {
    expectLinear(
      "devices",
      (s) => manyDevicesStream(10_000 * s),
      (m) => expect(m.ok).toBe(true),
    );
  }, 600_000);

  it("device walks spending all the visits their bytes allow", () => {
    expectLinear(
      "budget",
      (s) => budgetEdgeStream(32 * s, 1024, DEFAULT_LIMITS.visitsPerByte - 1),
      (m) => expect(m.ok).toBe(true),
    );
  }, 600_000);

  it("a subsection read again and again among many listed", () => {
    expectLinear(
      "subsections",
      (s) => manySubsectionsStream(2_500 * s, 2_500 * s),
      (m) => expect(m.code).toBe("BAD_VALUE"),
    );
  }, 600_000);

  it("would-be vmdesc trailers (the search at the end of a file)", () => {
    expectLinear(
      "trailer",
      (s) => trailerCandidatesStream(256 * 1024 * s),
      (m) => expect(m.code).toBe("BAD_SECTION"),
    );
  }, 600_000);

  it("the CLI's check rejects the 200-byte stream of 16M empty elements at once", () => {
    const path = join(tmp(), "empty-elements.mig");
    writeFileSync(path, emptyElementsStream(1 << 24));
    const t = performance.now();
    const r = spawnSync(process.execPath, [MAIN, "check", path], { encoding: "utf8", timeout: 120_000 });
    expect(performance.now() - t).toBeLessThan(30_000);
    expect(r.status).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/^BROKEN: the description makes too many visits for the bytes it reads at byte 25 \(section dev id 0 instance 0/m);
  }, 120_000);
});
