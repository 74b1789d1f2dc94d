// The decoder's RAM path with a written-page bitmap (BLK.WRITTEN, word 4 of a materialised block): ZERO
// records on pages known to be zero are skipped without reading them; every backend writes the same bytes
// and the same bitmap; the result equals decoding without a bitmap; the RAM handler keeps the bitmap right
// (COMPRESS_PAGE included) so materialised RAM is what QEMU would hold.
import { createHash } from "node:crypto";
import { deflateSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { nodeInflate } from "../../src/io/node.js";
import { BLK, createKernels, DEC, DEC_STATUS, type Kernels, RAM_FLAG } from "../../src/kernels/index.js";
import { decodeBytes, ramOf } from "../../src/sections/stream.js";
import { concat } from "../helpers/bytes.js";
import { SeededRandom } from "../helpers/random.js";
import { memSize, page, RAM, StreamBuilder } from "../helpers/stream-builder.js";

const P = 4096;
const backends = ["wasm-simd", "wasm-scalar", "js"] as const;
const K: Kernels[] = backends.map((backend) => createKernels({ backend }));
const NAME = new TextEncoder().encode("pc.ram");

function randPage(seed: number): Uint8Array {
  return new SeededRandom(seed).bytes(P);
}

function rec(offset: number, flags: number, named: boolean, body: ArrayLike<number>): Uint8Array {
  const h = new Uint8Array(8);
  new DataView(h.buffer).setBigUint64(0, BigInt(offset) | BigInt(flags | (named ? 0 : RAM_FLAG.CONTINUE)));
  return named ? concat([h, [NAME.length], NAME, body]) : concat([h, body]);
}
const EOS = Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0x10]);

interface Run {
  status: number;
  state: number[];
  block: Uint8Array;
  bitmap: Uint8Array | undefined;
  counts: number[];
}

/** ramDecode of `stream` on one materialised block of `init`, with a bitmap of `bits` (undefined: none). */
function run(k: Kernels, init: Uint8Array, bits: Uint8Array | undefined, stream: Uint8Array): Run {
  const pages = init.length / P;
  const bmBytes = Math.ceil(pages / 8);
  const block = k.alloc(init.length);
  const bm = bits ? k.alloc(bmBytes, 8) : 0;
  const meta = k.alloc(4096, 64);
  const input = k.alloc(stream.length + 16);
  try {
    const u8 = k.u8;
    u8.set(init, block);
    if (bits) u8.set(bits, bm);
    const name = meta + 64;
    const state = meta + 128;
    u8.set(NAME, name);
    new Uint32Array(k.memory.buffer, meta, BLK.WORDS).set([name, NAME.length, block, init.length, bm, 0, 0, 0]);
    new Uint32Array(k.memory.buffer, state, DEC.SIZE).set([0xffffffff, 0, 0, 0, 0, 0]);
    k.u8.set(stream, input);
    const status = k.ramDecode(input, stream.length, meta, 1, P, state);
    const t = new Uint32Array(k.memory.buffer, meta, BLK.WORDS);
    return {
      status,
      state: Array.from(new Uint32Array(k.memory.buffer, state, DEC.SIZE)),
      block: k.u8.slice(block, block + init.length),
      bitmap: bits ? k.u8.slice(bm, bm + bmBytes) : undefined,
      counts: [t[BLK.ZERO]!, t[BLK.NORMAL]!, t[BLK.XBZRLE]!],
    };
  } finally {
    k.free(block);
    if (bm) k.free(bm);
    k.free(meta);
    k.free(input);
  }
}

/** Byte arrays as length + SHA-1 (toEqual on big typed arrays is slow). */
const fp = (b: Uint8Array | undefined): string | undefined => (b ? `${b.length}:${createHash("sha1").update(b).digest("hex")}` : undefined);
const digest = (o: Run) => ({ ...o, block: fp(o.block), bitmap: o.bitmap ? Array.from(o.bitmap) : undefined });

function runAll(init: Uint8Array, bits: Uint8Array | undefined, stream: Uint8Array): Run {
  const outs = K.map((k) => run(k, init, bits, stream));
  for (let i = 1; i < outs.length; i++) expect(digest(outs[i]!), backends[i]).toEqual(digest(outs[0]!));
  return outs[0]!;
}

describe("ramDecode with a written-page bitmap (BLK.WRITTEN)", () => {
  it("BLK.WRITTEN is word 4, the LEN_HI of blocks that are not materialised", () => {
    expect(BLK.WRITTEN).toBe(4);
    expect(BLK.LEN_HI).toBe(4);
  });

  it("known answer: ZERO on a clear bit is skipped unread, on a set bit applied; PAGE, XBZRLE and other fills set the bit", () => {
    const garbage = randPage(1);
    const data = randPage(2);
    // page 0: non-zero but its bit is clear (breaks the invariant on purpose, to see that it is not read)
    // page 1: non-zero, bit set; pages 2..9 zero, bits clear
    const init = concat([garbage, garbage, new Uint8Array(8 * P)]);
    const bits = new Uint8Array([0b0000_0010, 0]);
    const stream = concat([
      rec(0, RAM_FLAG.ZERO, true, [0]),
      rec(P, RAM_FLAG.ZERO, false, [0]),
      rec(2 * P, RAM_FLAG.PAGE, false, data),
      rec(3 * P, RAM_FLAG.XBZRLE, false, [1, 0, 3, 0x10, 1, 0x77]), // one byte at offset 16
      rec(4 * P, RAM_FLAG.ZERO, false, [0x5a]),
      rec(5 * P, RAM_FLAG.ZERO, false, [0]),
      rec(9 * P, RAM_FLAG.XBZRLE, false, [1, 0, 0]), // empty delta: still counts as written
      EOS,
    ]);
    const o = runAll(init, bits, stream);
    expect(o.status).toBe(DEC_STATUS.EOS);
    expect(o.counts).toEqual([4, 1, 2]);
    const want = new Uint8Array(10 * P);
    want.set(garbage, 0); // skipped: not read, not written
    want.set(data, 2 * P);
    want[3 * P + 16] = 0x77;
    want.fill(0x5a, 4 * P, 5 * P);
    expect(fp(o.block)).toBe(fp(want));
    expect(Array.from(o.bitmap!)).toEqual([0b0001_1110, 0b0000_0010]);
    // without a bitmap every ZERO record checks its page: page 0 is zeroed
    const plain = runAll(init, undefined, stream);
    want.fill(0, 0, P);
    expect(fp(plain.block)).toBe(fp(want));
    expect(plain.counts).toEqual(o.counts);
    expect(plain.state).toEqual(o.state);
  });

  it("while the bitmap is right (clear = zero), decoding with it gives the bytes of decoding without it; bits = written pages (fast-check)", () => {
    const recArb = fc.record({
      kind: fc.constantFrom("zero", "zero", "zero", "fill", "page", "xbz"),
      page: fc.integer({ min: 0, max: 11 }),
      seed: fc.integer({ min: 1, max: 1e6 }),
    });
    fc.assert(
      fc.property(fc.array(recArb, { maxLength: 30 }), fc.integer({ min: 1, max: 1e6 }), (rs, seed) => {
        const r = new SeededRandom(seed);
        const pages = 12;
        const init = new Uint8Array(pages * P);
        const bits = new Uint8Array(2);
        for (let i = 0; i < pages; i++) {
          const v = r.u32() % 4;
          if (v === 0) init.set(randPage(seed + i), i * P); // non-zero: bit must be set
          if (v === 0 || v === 1) bits[i >> 3]! |= 1 << (i & 7); // v = 1: zero page whose bit is set (allowed)
        }
        const written = bits.slice();
        const stream = concat([
          ...rs.map((x, i) => {
            const named = i === 0;
            if (x.kind === "zero") return rec(x.page * P, RAM_FLAG.ZERO, named, [0]);
            written[x.page >> 3]! |= 1 << (x.page & 7);
            if (x.kind === "fill") return rec(x.page * P, RAM_FLAG.ZERO, named, [x.seed & 0xff || 1]);
            if (x.kind === "page") return rec(x.page * P, RAM_FLAG.PAGE, named, randPage(x.seed));
            return rec(x.page * P, RAM_FLAG.XBZRLE, named, [1, 0, 4, x.seed % 100, 2, 0xab, 0xcd]);
          }),
          EOS,
        ]);
        const a = runAll(init, bits, stream);
        const b = runAll(init, undefined, stream);
        expect(fp(a.block)).toBe(fp(b.block));
        expect(a.counts).toEqual(b.counts);
        expect(a.state).toEqual(b.state);
        expect(a.bitmap).toEqual(written);
      }),
      { numRuns: 100 },
    );
  });

  it("the bitmap must lie inside the kernels' memory", () => {
    const k = K[0]!;
    const meta = k.alloc(4096, 64);
    const block = k.alloc(16 * P);
    try {
      const size = k.memory.buffer.byteLength;
      new Uint32Array(k.memory.buffer, meta, BLK.WORDS).set([meta + 64, 1, block, 16 * P, size - 1, 0, 0, 0]);
      expect(() => k.ramDecode(meta + 512, 0, meta, 1, P, meta + 256)).toThrow(/written-page bitmap/);
      new Uint32Array(k.memory.buffer, meta, BLK.WORDS).set([meta + 64, 1, block, 16 * P, size - 2, 0, 0, 0]);
      expect(k.ramDecode(meta + 512, 0, meta, 1, P, meta + 256)).toBe(DEC_STATUS.NEED_MORE); // 2 bytes for 16 pages fit
    } finally {
      k.free(meta);
      k.free(block);
    }
  });
});

describe("RAM handler: materialised RAM with the bitmap", () => {
  /** header, configuration, START ram (MEM_SIZE), PART (records), END, EOF. */
  function stream(records: (b: StreamBuilder) => void): Uint8Array {
    const b = new StreamBuilder().header().config("pc-i440fx-7.2");
    b.start(2, "ram", 4, (b) =>
      memSize(b, [
        ["pc.ram", 8 * P],
        ["rom", 2 * P],
      ]).be64(RAM.EOS),
    );
    b.part(2, (b) => {
      records(b);
      b.be64(RAM.EOS);
    });
    b.end(2, (b) => b.be64(RAM.EOS));
    return b.eof().build();
  }

  it("ZERO after PAGE / XBZRLE / COMPRESS_PAGE / fill zeroes the page; ZERO on untouched pages leaves zeros", () => {
    const data = Array.from(randPage(7));
    const compressed = deflateSync(Buffer.from(randPage(8)));
    const bytes = stream((b) => {
      page(b, RAM.ZERO, 0, "pc.ram", [0]); // untouched
      page(b, RAM.PAGE, P, undefined, data);
      page(b, RAM.XBZRLE, 2 * P, undefined, [1, 0, 3, 0, 1, 9]);
      b.be64((3 * P) | RAM.COMPRESS | RAM.CONTINUE)
        .be32(compressed.length)
        .bytes(compressed);
      page(b, RAM.ZERO, 4 * P, undefined, [0x33]);
      page(b, RAM.PAGE, 0, "rom", data);
      // now zero them all again
      for (let i = 0; i < 6; i++) page(b, RAM.ZERO, i * P, i === 0 ? "pc.ram" : undefined, [0]);
      page(b, RAM.ZERO, 0, "rom", [0]);
      page(b, RAM.PAGE, 7 * P, "pc.ram", data); // and one page that stays
    });
    for (const k of K) {
      const r = decodeBytes(bytes, { kernels: k, materialize: { ram: true }, inflate: nodeInflate });
      const ram = ramOf(r)!;
      const want = new Uint8Array(8 * P);
      want.set(data, 7 * P);
      expect(fp(ram.blocks[0]!.data), k.backend).toBe(fp(want));
      expect(fp(ram.blocks[1]!.data), k.backend).toBe(fp(new Uint8Array(2 * P)));
      expect(ram.records).toMatchObject({ zero: 9, normal: 3, xbzrle: 1, compressed: 1 });
      r.dispose();
    }
  });

  it("the bitmaps are freed when the stream ends: many decodes on one kernels instance do not grow it", () => {
    const k = createKernels();
    const bytes = stream((b) => page(b, RAM.PAGE, P, "pc.ram", randPage(3)));
    decodeBytes(bytes, { kernels: k, materialize: { ram: true } }).dispose();
    const size = k.memory.buffer.byteLength;
    for (let i = 0; i < 200; i++) decodeBytes(bytes, { kernels: k, materialize: { ram: true } }).dispose();
    expect(k.memory.buffer.byteLength).toBe(size);
  });
});
