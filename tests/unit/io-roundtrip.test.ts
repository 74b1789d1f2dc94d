import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteReader } from "../../src/io/reader.js";
import { ByteWriter } from "../../src/io/writer.js";
import { thrownBy } from "../helpers/errors.js";

/** One typed write and the read that must give the value back. */
type Op =
  | { t: "u8" | "be16" | "be32" | "s8" | "sbe16" | "sbe32" | "f32be" | "f64be"; v: number }
  | { t: "be64" | "sbe64"; v: bigint }
  | { t: "be64hl"; hi: number; lo: number }
  | { t: "be64n"; v: number }
  | { t: "bytes" | "borrow" | "cstrRaw"; v: Uint8Array }
  | { t: "cstr"; v: string }
  | { t: "zeros"; n: number };

const utf8 = new TextEncoder();
const u32 = fc.integer({ min: 0, max: 0xffffffff });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.integer({ min: 0, max: 0xff }).map((v): Op => ({ t: "u8", v })),
  fc.integer({ min: 0, max: 0xffff }).map((v): Op => ({ t: "be16", v })),
  fc.oneof(u32, fc.constantFrom(0, 2 ** 31, 2 ** 32 - 1)).map((v): Op => ({ t: "be32", v })),
  fc.integer({ min: -128, max: 127 }).map((v): Op => ({ t: "s8", v })),
  fc.integer({ min: -32768, max: 32767 }).map((v): Op => ({ t: "sbe16", v })),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((v): Op => ({ t: "sbe32", v })),
  fc.float().map((v): Op => ({ t: "f32be", v })),
  fc.double().map((v): Op => ({ t: "f64be", v })),
  fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.constantFrom(0n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n)).map((v): Op => ({ t: "be64", v })),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((v): Op => ({ t: "sbe64", v })),
  fc.tuple(u32, u32).map(([hi, lo]): Op => ({ t: "be64hl", hi, lo })),
  fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }).map((v): Op => ({ t: "be64n", v })),
  fc.uint8Array({ maxLength: 40 }).map((v): Op => ({ t: "bytes", v })),
  fc.uint8Array({ maxLength: 300 }).map((v): Op => ({ t: "borrow", v })),
  fc.uint8Array({ maxLength: 255 }).map((v): Op => ({ t: "cstrRaw", v })),
  fc
    .string({ unit: "grapheme", maxLength: 60 })
    .filter((s) => utf8.encode(s).length <= 255)
    .map((v): Op => ({ t: "cstr", v })),
  fc.integer({ min: 0, max: 40 }).map((n): Op => ({ t: "zeros", n })),
);

/** Wire size of one op. */
function size(op: Op): number {
  switch (op.t) {
    case "u8":
    case "s8":
      return 1;
    case "be16":
    case "sbe16":
      return 2;
    case "be32":
    case "sbe32":
    case "f32be":
      return 4;
    case "f64be":
    case "be64":
    case "sbe64":
    case "be64hl":
    case "be64n":
      return 8;
    case "bytes":
    case "borrow":
      return op.v.length;
    case "cstrRaw":
      return 1 + op.v.length;
    case "cstr":
      return 1 + utf8.encode(op.v).length;
    case "zeros":
      return op.n;
  }
}

function write(w: ByteWriter, op: Op): void {
  switch (op.t) {
    case "u8":
    case "be16":
    case "be32":
    case "s8":
    case "sbe16":
    case "sbe32":
    case "f32be":
    case "f64be":
      w[op.t](op.v);
      return;
    case "be64":
    case "sbe64":
      w[op.t](op.v);
      return;
    case "be64hl":
      w.be64hl(op.hi, op.lo);
      return;
    case "be64n":
      w.be64n(op.v);
      return;
    case "bytes":
      w.bytes(op.v);
      return;
    case "borrow":
      w.borrow(op.v);
      return;
    case "cstrRaw":
      w.cstr(op.v);
      return;
    case "cstr":
      w.cstr(op.v);
      return;
    case "zeros":
      w.zeros(op.n);
      return;
  }
}

/** Read `op`'s type back and check the value. */
function readAndCheck(r: ByteReader, op: Op): void {
  switch (op.t) {
    case "u8":
    case "be16":
    case "be32":
    case "s8":
    case "sbe16":
    case "sbe32":
    case "f32be":
    case "f64be":
      expect(Object.is(r[op.t](), op.v)).toBe(true);
      return;
    case "be64":
    case "sbe64":
      expect(r[op.t]()).toBe(op.v);
      return;
    case "be64hl":
      r.be64hl();
      expect([r.hi, r.lo]).toEqual([op.hi, op.lo]);
      return;
    case "be64n":
      expect(r.sbe64n()).toBe(op.v);
      return;
    case "bytes":
    case "borrow":
      expect(Array.from(r.bytes(op.v.length))).toEqual(Array.from(op.v));
      return;
    case "cstrRaw":
      expect(Array.from(r.cstrRaw())).toEqual(Array.from(op.v));
      return;
    case "cstr":
      expect(r.cstr(true)).toBe(op.v);
      return;
    case "zeros":
      expect(r.bytes(op.n).every((b) => b === 0)).toBe(true);
      return;
  }
}

const writerOpts = fc.record({
  initialCapacity: fc.constantFrom(1, 64, 100, 4096),
  borrowMin: fc.constantFrom(0, 16, 256),
});

describe("ByteWriter -> ByteReader round trip (fast-check)", () => {
  it("a random sequence of typed writes reads back the same values and consumes exactly the written length", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), writerOpts, (ops, opts) => {
        const w = new ByteWriter(opts);
        let expected = 0;
        for (const op of ops) {
          write(w, op);
          expected += size(op);
          expect(w.pos).toBe(expected);
        }
        expect(w.byteLength).toBe(expected);
        const out = w.finish();
        expect(out.length).toBe(expected);
        // the gathered chunks hold the same bytes
        const chunks = w.chunks();
        expect(chunks.reduce((n, c) => n + c.length, 0)).toBe(expected);
        expect(Array.from(w.concat())).toEqual(Array.from(out));

        const r = new ByteReader(out);
        for (const op of ops) readAndCheck(r, op);
        expect(r.pos).toBe(expected);
        expect(r.remaining).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  it("a truncated stream fails at the offset of the first op that does not fit (both modes)", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 30 }), fc.nat(), fc.nat({ max: 1 << 20 }), (ops, cutSeed, base) => {
        const w = new ByteWriter();
        for (const op of ops) write(w, op);
        const all = w.finish();
        const cut = cutSeed % all.length || 0;
        const truncated = all.subarray(0, cut);

        // the first op whose bytes are not all there, and its offset
        let failAt = 0;
        let failIndex = -1;
        for (let i = 0; i < ops.length; i++) {
          const n = size(ops[i]!);
          if (failAt + n > cut) {
            failIndex = i;
            break;
          }
          failAt += n;
        }
        if (failIndex < 0) return; // all ops fit (the cut fell in an empty tail)

        const sticky = new ByteReader(truncated, { sticky: true, baseOffset: base });
        for (let i = 0; i < failIndex; i++) readAndCheck(sticky, ops[i]!);
        expect(sticky.ok).toBe(true);
        const op = ops[failIndex]!;
        // the failing op returns its default and records the error
        switch (op.t) {
          case "be64hl":
            sticky.be64hl();
            expect([sticky.hi, sticky.lo]).toEqual([0, 0]);
            break;
          case "cstr":
            expect(sticky.cstr(true)).toBe("");
            break;
          case "cstrRaw":
            expect(sticky.cstrRaw().length).toBe(0);
            break;
          case "bytes":
          case "borrow":
            expect(sticky.bytes(op.v.length).length).toBe(0);
            break;
          case "zeros":
            expect(sticky.bytes(op.n).length).toBe(0);
            break;
          case "be64n":
            expect(sticky.sbe64n()).toBe(0);
            break;
          case "be64":
          case "sbe64":
            expect(sticky[op.t]()).toBe(0n);
            break;
          default:
            expect(sticky[op.t]()).toBe(0);
        }
        // later reads do nothing
        for (let i = failIndex + 1; i < ops.length; i++) expect(sticky.u8()).toBe(0);
        expect(sticky.error?.code).toBe("EOF");
        expect(sticky.error?.offset).toBe(base + failAt);

        const throwing = new ByteReader(truncated, { baseOffset: base });
        const caught = thrownBy(() => {
          for (const op of ops) readAndCheck(throwing, op);
        });
        expect(caught.code).toBe("EOF");
        expect(caught.offset).toBe(base + failAt);
        expect(throwing.pos).toBe(failAt);
      }),
      { numRuns: 300 },
    );
  });
});
