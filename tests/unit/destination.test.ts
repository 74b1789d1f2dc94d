// The migration destination: records applied as they arrive, a verdict only when the input is closed,
// truncated or broken streams failed and marked partial (never complete), results independent of how the
// input is split, and RAM received straight into a host's memory (ZERO records clearing non-zero pages).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { analyzeDecoderOptions } from "../../src/analyze/report.js";
import { VmstreamError } from "../../src/io/errors.js";
import { createKernels, type Kernels } from "../../src/kernels/index.js";
import { type DestinationProgress, MigrationDestination, type MigrationDestinationOptions, receiveMigration } from "../../src/migration/destination.js";
import type { RamBlockData } from "../../src/sections/ram/format.js";
import { sha256 } from "../helpers/bytes.js";
import { NONE_OFFSETS, noneStream } from "../helpers/none-stream.js";
import { memSize, page, RAM, StreamBuilder } from "../helpers/stream-builder.js";

const P = 4096;
const FIX = (f: string) => fileURLToPath(new URL(`../fixtures/${f}`, import.meta.url));
const fixture = (name: string): Uint8Array => new Uint8Array(gunzipSync(readFileSync(FIX(`${name}.mig.gz`))));
const reference = (name: string) => JSON.parse(readFileSync(FIX(`${name}.reference.json`), "utf8"));
const X86 = fixture("x86-pc-64m");
/** Check only (no RAM kept): most tests are about verdicts, and this keeps them fast. */
const opts: MigrationDestinationOptions = { ...analyzeDecoderOptions, materialize: false };

/** A small stream: pc.ram of 4 pages; START sends page 0 (0x11) and page 2 (0x33), a PART re-zeroes page 2 and sends page 1, END sends page 3; no devices. */
function ramStream(): { bytes: Uint8Array; afterFirstPage: number } {
  const b = new StreamBuilder().header().config("pc-i440fx-7.2");
  let afterFirstPage = 0;
  b.start(2, "ram", 4, (s) => {
    memSize(s, [["pc.ram", 4 * P]]);
    page(s, RAM.PAGE, 0, "pc.ram", new Uint8Array(P).fill(0x11));
    afterFirstPage = s.length;
    page(s, RAM.PAGE, 2 * P, undefined, new Uint8Array(P).fill(0x33));
    s.be64(RAM.EOS);
  });
  b.part(2, (s) => {
    page(s, RAM.ZERO, 2 * P, "pc.ram", [0]);
    page(s, RAM.PAGE, P, undefined, new Uint8Array(P).fill(0x22));
    s.be64(RAM.EOS);
  });
  b.end(2, (s) => page(s, RAM.PAGE, 3 * P, "pc.ram", new Uint8Array(P).fill(0x44)).be64(RAM.EOS)).eof();
  return { bytes: b.build(), afterFirstPage };
}

function run(bytes: Uint8Array, o: MigrationDestinationOptions = opts, cuts: number[] = []) {
  const d = new MigrationDestination(o);
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    d.push(bytes.subarray(at, c));
    at = c;
  }
  return { d, r: d.end() };
}

describe("MigrationDestination", () => {
  it("applies RAM records as they arrive: pages are visible mid-stream, the verdict waits for the end", () => {
    const { bytes, afterFirstPage } = ramStream();
    const d = new MigrationDestination(); // keeps RAM by default
    d.push(bytes.subarray(0, afterFirstPage));
    expect(d.status).toBe("receiving");
    const mid = d.ram()!.blocks[0]!.data!;
    expect(mid[0]).toBe(0x11);
    expect(mid[P - 1]).toBe(0x11);
    expect(mid[P]).toBe(0); // not yet sent
    expect(d.progress().phase).toBe("header"); // the START section is not finished
    expect(d.progress().pages.normal).toBe(1);
    d.push(bytes.subarray(afterFirstPage, bytes.length - 1));
    expect(d.status).toBe("receiving"); // everything but the EOF byte: still no verdict
    expect(d.ram()!.blocks[0]!.data![3 * P]).toBe(0x44);
    d.push(bytes.subarray(bytes.length - 1));
    expect(d.status).toBe("receiving"); // EOF seen, but the input is not closed yet
    const r = d.end();
    expect(r.status).toBe("complete");
    expect(d.status).toBe("complete");
    expect(r.partial).toBe(false);
    const data = r.decoded!.live.ram ? r.ram!.blocks[0]!.data! : undefined;
    expect([0, P, 2 * P, 3 * P].map((o) => data![o])).toEqual([0x11, 0x22, 0, 0x44]);
    expect(r.progress.pages).toEqual({ zero: 1, normal: 4, xbzrle: 0, compressed: 0 });
    r.dispose();
  });

  it("real stream (x86-pc-xbzrle): RAM pages land while the iterations arrive; the result equals QEMU's memory", () => {
    const bytes = fixture("x86-pc-xbzrle");
    const phases: string[] = [];
    const d = new MigrationDestination({ ...opts, materialize: { ram: true }, onProgress: (p) => phases.push(p.phase) });
    const half = bytes.length >> 1;
    for (let o = 0; o < half; o += 1 << 20) d.push(bytes.subarray(o, Math.min(half, o + (1 << 20))));
    const mid = d.progress();
    expect(d.status).toBe("receiving");
    expect(mid.phase).toBe("iterate");
    expect(mid.pages.normal + mid.pages.xbzrle).toBeGreaterThan(1000);
    expect(
      d
        .ram()!
        .blocks.find((b) => b.name === "pc.ram")!
        .data!.some((x) => x !== 0),
    ).toBe(true);
    for (let o = half; o < bytes.length; o += 1 << 20) d.push(bytes.subarray(o, Math.min(bytes.length, o + (1 << 20))));
    const r = d.end();
    expect(r.status, r.error?.message).toBe("complete");
    const want = reference("x86-pc-xbzrle").guest_memory_sha256.decoded_from_stream[0];
    const ram = r.ram!.blocks.find((b) => b.name === want.ramblock)!.data!;
    expect(sha256(ram.subarray(Number(want.offset), Number(want.offset) + Number(want.length)))).toBe(want.sha256);
    expect(r.progress.pages.xbzrle).toBe(r.ram!.records.xbzrle);
    expect(r.progress.pages.xbzrle).toBeGreaterThan(0);
    // phases in stream order, each first seen once
    const order = [...new Set(phases)];
    expect(order).toEqual(["setup", "iterate", "complete", "devices", "eof", "vmdesc"]);
    r.dispose();
  });

  it("a stream cut at any offset fails, partial, with an offset (none stream: every offset; with requireVmdesc)", () => {
    const none = noneStream();
    for (let n = 0; n < none.length; n++) {
      const { r } = run(none.subarray(0, n), { ...opts, requireVmdesc: true });
      expect(r.status, `cut at ${n}`).toBe("failed");
      expect(r.partial).toBe(true);
      expect(r.error).toBeInstanceOf(VmstreamError);
      expect(r.error!.offset, `cut at ${n}`).toBeTypeOf("number");
      expect(r.error!.offset!).toBeLessThanOrEqual(n);
      r.dispose();
    }
    expect(run(none, { ...opts, requireVmdesc: true }).r.status).toBe("complete");
  });

  it("without requireVmdesc a stream cut right after QEMU_VM_EOF is complete when its devices decode without the vmdesc", () => {
    // none stream: machine "none" has no registered descriptions, its device sections need the vmdesc
    const none = noneStream();
    const complete: number[] = [];
    for (let n = NONE_OFFSETS.eof - 2; n <= none.length; n++) {
      const { r } = run(none.subarray(0, n));
      if (r.status === "complete") complete.push(n);
      else expect(r.partial).toBe(true);
      r.dispose();
    }
    expect(complete).toEqual([none.length]);
    // x86 pc: every device has a registered description, so EOF ends the device state (as in QEMU's loader,
    // which reads the vmdesc only if it is there); requireVmdesc insists on the trailer
    const whole = run(X86).r;
    const eof = whole.decoded!.eofOffset!;
    whole.dispose();
    const cut = X86.subarray(0, eof + 1);
    const lax = run(cut).r;
    expect(lax.status, lax.error?.message).toBe("complete");
    expect(lax.summary.vmdesc).toBe(false);
    lax.dispose();
    const strict = run(cut, { ...opts, requireVmdesc: true }).r;
    expect(strict.status).toBe("failed");
    expect(strict.error!.message).toMatch(/vmdesc/);
    // a trailer that starts but is cut off fails either way
    for (const n of [eof + 2, eof + 5, eof + 100, X86.length - 1]) expect(run(X86.subarray(0, n)).r.status, `cut at ${n}`).toBe("failed");
  });

  it("a real stream cut at many offsets fails with the offset and section, never complete", () => {
    const rng = fc.sample(fc.integer({ min: 0, max: X86.length - 1 }), { numRuns: 60, seed: 7 });
    const edges = [0, 1, 7, 8, 9, 100, X86.length - 1, X86.length - 2];
    for (const n of [...edges, ...rng]) {
      const { r } = run(X86.subarray(0, n), { ...opts, requireVmdesc: true }, n > 3000 ? [1000, n >> 1] : []);
      expect(r.status, `cut at ${n}`).toBe("failed");
      expect(r.partial).toBe(true);
      expect(r.error!.offset, `cut at ${n}`).toBeTypeOf("number");
      if (r.error!.code === "EOF" && r.summary.sections > 0 && r.error!.detail?.includes("section payload")) expect(r.error!.section).toBeDefined();
      r.dispose();
    }
  });

  it("a garbled stream fails at the first error; later pushes are ignored and the error sticks", () => {
    const bytes = X86.slice();
    const at = 200_000;
    bytes.fill(0xee, at, at + 64);
    const d = new MigrationDestination(opts);
    expect(d.push(bytes.subarray(0, at - 10))).toBe(true);
    const ok = d.push(bytes.subarray(at - 10, at + 100));
    expect(ok).toBe(false);
    expect(d.status).toBe("failed");
    const first = d.error!;
    expect(first.offset).toBeGreaterThanOrEqual(at - 64);
    expect(first.offset).toBeLessThanOrEqual(at + 64);
    expect(d.push(X86.subarray(at + 100))).toBe(false);
    expect(d.error).toBe(first);
    const r = d.end();
    expect(r.status).toBe("failed");
    expect(r.error).toBe(first);
    expect(r.partial).toBe(true);
    expect(r.decoded).toBeUndefined();
    expect(d.end()).toBe(r);
    expect(() => d.push(new Uint8Array(1))).toThrow(VmstreamError);
    r.dispose();
  });

  it("gives the same result however the input is split", () => {
    const { bytes } = ramStream();
    const outcome = (cuts: number[]) => {
      const { r } = run(bytes, { materialize: { ram: true } }, cuts);
      const o = { status: r.status, progress: r.progress, ram: sha256(r.ram!.blocks[0]!.data!) };
      r.dispose();
      return o;
    };
    const whole = outcome([]);
    expect(whole.status).toBe("complete");
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: bytes.length - 1 }), { maxLength: 20 }), (cuts) => {
        expect(outcome(cuts.sort((a, b) => a - b))).toEqual(whole);
      }),
      { numRuns: 60 },
    );
    // and a real stream, in random splits
    const realWhole = run(X86, { ...opts, materialize: { ram: true } });
    const digest = (r: typeof realWhole.r) => ({
      status: r.status,
      progress: r.progress,
      summary: { ...r.summary, live: undefined },
      ram: r.ram!.blocks.map((b) => sha256(b.data!)),
    });
    const want = digest(realWhole.r);
    realWhole.r.dispose();
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: X86.length - 1 }), { minLength: 1, maxLength: 40 }), (cuts) => {
        const { r } = run(
          X86,
          { ...opts, materialize: { ram: true } },
          cuts.sort((a, b) => a - b),
        );
        expect(digest(r)).toEqual(want);
        r.dispose();
      }),
      { numRuns: 4 },
    );
  });

  describe("host RAM blocks (ramBlock)", () => {
    function hostBlocks(k: Kernels, fill: number) {
      const made = new Map<string, RamBlockData>();
      const ramBlock = (name: string, length: number): RamBlockData => {
        const ptr = k.alloc(length, 4096);
        k.u8.fill(fill, ptr, ptr + length);
        const b = { name, ptr, length };
        made.set(name, b);
        return b;
      };
      return { made, ramBlock };
    }

    it("receives a real stream into pre-filled host memory: every block equals QEMU's (ZERO pages clear old data)", () => {
      const k = createKernels();
      const { made, ramBlock } = hostBlocks(k, 0xa5);
      const { d, r } = run(X86, { ...opts, kernels: k, ramBlock });
      expect(r.status, r.error?.message).toBe("complete");
      const files = reference("x86-pc-64m").analyze_migration.extract_patched.extracted_files as Record<string, { bytes: number; sha256: string }>;
      expect(made.size).toBe(Object.keys(files).length);
      for (const [name, b] of made) {
        const want = files[name.replace(/^\//, "")]!;
        expect(b.length, name).toBe(want.bytes);
        expect(sha256(k.u8.subarray(b.ptr, b.ptr + b.length)), name).toBe(want.sha256);
      }
      expect(r.progress.pages.zero).toBeGreaterThan(1000); // ZERO records really did clear 0xa5 pages
      r.dispose();
      d.dispose();
      // the host's blocks are the host's: still there after dispose
      const pc = made.get("pc.ram")!;
      expect(sha256(k.u8.subarray(pc.ptr, pc.ptr + pc.length))).toBe(files["pc.ram"]!.sha256);
    });

    it("ZERO records over non-zero pages, pages not in the stream left alone, other blocks allocated", () => {
      const k = createKernels();
      const b = new StreamBuilder().header().config("pc-i440fx-7.2");
      b.start(2, "ram", 4, (s) => {
        memSize(s, [
          ["pc.ram", 4 * P],
          ["other", 2 * P],
        ]);
        page(s, RAM.ZERO, 0, "pc.ram", [0]);
        page(s, RAM.ZERO, P, undefined, [0x5a]);
        page(s, RAM.PAGE, 2 * P, undefined, new Uint8Array(P).fill(7));
        page(s, RAM.PAGE, 0, "other", new Uint8Array(P).fill(9));
        s.be64(RAM.EOS);
      });
      b.end(2, (s) => s.be64(RAM.EOS)).eof();
      const host = k.alloc(4 * P, 4096);
      k.u8.fill(0xff, host, host + 4 * P);
      const r = run(b.build(), {
        kernels: k,
        materialize: { ram: true },
        ramBlock: (name, length) => (name === "pc.ram" ? { name, ptr: host, length } : undefined),
      }).r;
      expect(r.status, r.error?.message).toBe("complete");
      const mem = k.u8;
      expect(mem.subarray(host, host + P).every((x) => x === 0)).toBe(true);
      expect(mem.subarray(host + P, host + 2 * P).every((x) => x === 0x5a)).toBe(true);
      expect(mem.subarray(host + 2 * P, host + 3 * P).every((x) => x === 7)).toBe(true);
      expect(mem.subarray(host + 3 * P, host + 4 * P).every((x) => x === 0xff)).toBe(true); // never sent: untouched
      const other = r.ram!.blocks.find((x) => x.name === "other")!;
      expect(other.ptr).not.toBe(host);
      expect(other.data![0]).toBe(9);
      expect(r.ram!.blocks.find((x) => x.name === "pc.ram")!.ptr).toBe(host);
      r.dispose();
      expect(k.u8[host + 2 * P]).toBe(7); // dispose does not free (or clear) the host's block
    });

    it("a length mismatch fails the migration with the block named; a failed migration is marked partial", () => {
      const k = createKernels();
      const { bytes } = ramStream();
      const host = k.alloc(8 * P, 4096);
      const r = run(bytes, { kernels: k, ramBlock: (name) => ({ name, ptr: host, length: 8 * P }) }).r;
      expect(r.status).toBe("failed");
      expect(r.partial).toBe(true);
      expect(r.error!.code).toBe("MISMATCH");
      expect(r.error!.message).toMatch(/pc\.ram/);
      expect(r.error!.section?.idstr).toBe("ram");
      expect(r.error!.offset).toBeGreaterThan(0);
      // a block outside the memory is refused too
      const r2 = run(bytes, { kernels: k, ramBlock: (name, length) => ({ name, ptr: k.memory.buffer.byteLength - 100, length }) }).r;
      expect(r2.status).toBe("failed");
      expect(r2.error!.code).toBe("RANGE");
    });

    it("a truncated migration into host memory says partial: the pages received so far are there", () => {
      const k = createKernels();
      const { bytes, afterFirstPage } = ramStream();
      const host = k.alloc(4 * P, 4096);
      k.u8.fill(0xff, host, host + 4 * P);
      const r = run(bytes.subarray(0, afterFirstPage + 10), { kernels: k, ramBlock: (name, length) => ({ name, ptr: host, length }) }).r;
      expect(r.status).toBe("failed");
      expect(r.partial).toBe(true);
      expect(r.error!.code).toBe("EOF");
      expect(r.error!.section?.idstr).toBe("ram");
      expect(k.u8[host]).toBe(0x11);
      expect(k.u8[host + P]).toBe(0xff);
    });
  });

  describe("receiveMigration", () => {
    async function* chunked(b: Uint8Array, size: number, fail?: Error) {
      for (let o = 0; o < b.length; o += size) yield b.subarray(o, Math.min(b.length, o + size));
      if (fail) throw fail;
    }

    it("receives from an async source", async () => {
      const seen: DestinationProgress[] = [];
      const r = await receiveMigration(chunked(X86, 65536), { ...opts, onProgress: (p) => seen.push(p), progressBytes: 100_000 });
      expect(r.status).toBe("complete");
      expect(r.bytes).toBe(X86.length);
      expect(seen.length).toBeGreaterThan(5);
      for (let i = 1; i < seen.length; i++) expect(seen[i]!.bytes).toBeGreaterThanOrEqual(seen[i - 1]!.bytes);
      expect(seen.at(-1)!.status).toBe("complete");
      r.dispose();
    });

    it("a source that fails is a failed migration, even after every byte of a complete stream", async () => {
      const cut = await receiveMigration(chunked(X86.subarray(0, 500_000), 65536, new Error("ECONNRESET")), opts);
      expect(cut.status).toBe("failed");
      expect(cut.error!.message).toMatch(/ECONNRESET/);
      expect(cut.error!.offset).toBeTypeOf("number");
      const whole = await receiveMigration(chunked(X86, 65536, new Error("ECONNRESET")), opts);
      expect(whole.status).toBe("failed");
      expect(whole.partial).toBe(true);
      expect(whole.error!.message).toMatch(/source failed: ECONNRESET/);
      expect(whole.decoded).toBeUndefined();
    });

    it("stops reading at the first error", async () => {
      let pulled = 0;
      const bad = X86.slice();
      bad.fill(0xee, 8, 64); // the configuration section is garbage
      async function* src() {
        for (let o = 0; o < bad.length; o += 4096) {
          pulled++;
          yield bad.subarray(o, o + 4096);
        }
      }
      const r = await receiveMigration(src(), opts);
      expect(r.status).toBe("failed");
      expect(pulled).toBeLessThan(5);
    });
  });
});
