// RAM through the encoder: a block in the kernels' memory sent by RamWriter.sendBlock (ramEncode: zero
// detection, CONTINUE, send bitmap) decodes to the same RAM; the XBZRLE cache behaves as QEMU's (miss -> normal
// page + insert, hit -> XBZRLE or nothing when unchanged, overflow -> normal page, aliasing evicts).
import { describe, expect, it } from "vitest";
import { ByteWriter } from "../../src/io/writer.js";
import { createKernels } from "../../src/kernels/index.js";
import type { Kernels } from "../../src/kernels/types.js";
import { StreamEncoder } from "../../src/savevm/encoder.js";
import { RamWriter, XbzrleCache } from "../../src/sections/ram/writer.js";
import { decodeBytes, ramOf } from "../../src/sections/stream.js";

const PS = 4096;

function setup(k: Kernels, pages: number) {
  const ptr = k.alloc(pages * PS, 4096);
  k.u8.fill(0, ptr, ptr + pages * PS);
  const w = new ByteWriter();
  const enc = new StreamEncoder(w, { vmdesc: false });
  const ram = new RamWriter(w, PS, {}, k);
  enc.header();
  enc.configuration({ machine: "none" });
  enc.begin("start", 2, "ram", 0, 4);
  ram.memSize([
    { name: "pc.ram", length: BigInt(pages * PS) },
    { name: "small", length: BigInt(2 * PS) },
  ]);
  ram.eos();
  enc.end();
  return { ptr, w, enc, ram, block: { name: "pc.ram", ptr, length: pages * PS } };
}

function finish(s: ReturnType<typeof setup>): Uint8Array {
  s.enc.begin("end", 2);
  s.ram.eos();
  s.enc.end();
  s.enc.eof();
  return s.enc.bytes();
}

function decodedRam(b: Uint8Array): Uint8Array {
  const r = decodeBytes(b, { materialize: true });
  try {
    return ramOf(r)!.blocks[0]!.data!.slice();
  } finally {
    r.dispose();
  }
}

describe.each(["js", "wasm-scalar"] as const)("RamWriter.sendBlock (%s kernels)", (backend) => {
  it("a block with zero and data pages decodes to the same RAM, CONTINUE after the first record", () => {
    const k = createKernels({ backend });
    const s = setup(k, 64);
    for (let p = 0; p < 64; p += 3) k.u8.fill(p + 1, s.ptr + p * PS + 100, s.ptr + p * PS + 200);
    s.enc.begin("part", 2);
    const st = s.ram.sendBlock(s.block);
    s.ram.zero("small", 0n); // another block: named
    s.ram.eos();
    s.enc.end();
    expect(st.normal).toBe(22);
    expect(st.zero).toBe(42);
    const b = finish(s);
    expect(decodedRam(b)).toEqual(k.u8.slice(s.ptr, s.ptr + 64 * PS));
    const r = decodeBytes(b);
    expect(ramOf(r)!.records).toMatchObject({ zero: 43, normal: 22 });
    r.dispose();
    // only the first record of pc.ram names it: 64 records, one name
    const text = new TextDecoder("latin1").decode(b);
    expect(text.split("pc.ram").length - 1).toBe(2); // MEM_SIZE + first page record
    s.ram.dispose();
  });

  it("a send bitmap selects pages and is cleared", () => {
    const k = createKernels({ backend });
    const s = setup(k, 32);
    k.u8.fill(0xee, s.ptr, s.ptr + 32 * PS);
    const map = k.alloc(4, 8);
    k.u8.set([0b0000_0101, 0, 0, 0x80], map);
    s.enc.begin("part", 2);
    const st = s.ram.sendBlock(s.block, { sendMapPtr: map });
    s.ram.eos();
    s.enc.end();
    expect(st.normal).toBe(3);
    expect([...k.u8.subarray(map, map + 4)]).toEqual([0, 0, 0, 0]);
    const ram = decodedRam(finish(s));
    for (const p of [0, 2, 31]) expect(ram[p * PS + 5]).toBe(0xee);
    expect(ram[1 * PS + 5]).toBe(0);
  });
});

describe("XbzrleCache", () => {
  it("sizes in bytes: bytes / pageSize rounded down to a power of two slots", () => {
    const k = createKernels({ backend: "js" });
    expect(new XbzrleCache(k, 5 * PS + 100, PS).slots).toBe(4);
    expect(new XbzrleCache(k, 8 * PS, PS).slots).toBe(8);
    expect(() => new XbzrleCache(k, PS - 1, PS)).toThrow(/smaller than one page/);
  });

  it("miss -> normal + insert; hit -> XBZRLE, or nothing when unchanged; overflow -> normal; aliasing evicts", () => {
    const k = createKernels({ backend: "js" });
    const s = setup(k, 8);
    const cache = new XbzrleCache(k, 4 * PS, PS); // 4 slots: page p and p+4 share a slot
    for (let p = 0; p < 8; p++) k.u8.fill(p + 1, s.ptr + p * PS, s.ptr + (p + 1) * PS);
    const pass = (pages?: number[]) => {
      let map: number | undefined;
      if (pages) {
        map = k.alloc(1, 8);
        k.u8[map] = pages.reduce((a, p) => a | (1 << p), 0);
      }
      s.enc.begin("part", 2);
      const st = s.ram.sendBlock(s.block, { cache, ...(map !== undefined ? { sendMapPtr: map } : {}) });
      s.ram.eos();
      s.enc.end();
      return st;
    };
    // 1st pass: XBZRLE not active yet: normal pages, nothing cached
    expect(pass()).toMatchObject({ normal: 8, xbzrle: 0 });
    expect(cache.cached(0)).toBe(false);
    // 2nd pass, active: every page misses and is inserted; pages 4..7 evict 0..3
    cache.activate();
    expect(pass()).toMatchObject({ normal: 8, xbzrle: 0, unchanged: 0 });
    expect(cache.cached(0)).toBe(false);
    expect(cache.cached(4 * PS)).toBe(true);
    // 3rd pass on pages 4..6: page 4 changed a little (hit -> XBZRLE), 5 unchanged (hit -> nothing),
    // 6 changed in every other byte (hit -> overflow -> normal); then page 0 (evicted: miss -> normal + insert, evicting 4)
    k.u8[s.ptr + 4 * PS + 10] = 0x99;
    for (let i = 0; i < PS; i += 2) k.u8[s.ptr + 6 * PS + i] = 0x42;
    // (an overflowed page counts in overflow and normal)
    expect(pass([4, 5, 6])).toMatchObject({ xbzrle: 1, unchanged: 1, overflow: 1, normal: 1 });
    expect(pass([0])).toMatchObject({ normal: 1, xbzrle: 0 });
    expect(cache.cached(0)).toBe(true);
    expect(cache.cached(4 * PS)).toBe(false);
    // 4th pass: page 6 hit against what was sent (the overflowed page went into the cache) -> unchanged
    expect(pass([6])).toMatchObject({ unchanged: 1, normal: 0, xbzrle: 0 });
    // last stage: a miss is sent normally and not inserted
    cache.lastStage = true;
    k.u8[s.ptr + 4 * PS + 11] = 0x98;
    expect(pass([4])).toMatchObject({ normal: 1 });
    expect(cache.cached(4 * PS)).toBe(false);
    // the destination's RAM is the source's
    const b = finish(s);
    expect(decodedRam(b)).toEqual(k.u8.slice(s.ptr, s.ptr + 8 * PS));
    const r = decodeBytes(b);
    expect(ramOf(r)!.records.xbzrle).toBe(1);
    r.dispose();
    cache.dispose();
  });
});
