// The hand-written BER TLV writer and reader (src/ber/): X.690 vectors, lengths, high tag numbers,
// indefinite lengths, strictness, and fast-check round trips of integers and floats.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BerReader, ldexp } from "../../src/ber/reader.js";
import { BerWriter, berTag, CLASS_APPLICATION, CLASS_CONTEXT, CLASS_UNIVERSAL, T_OCTET_STRING, T_SEQUENCE } from "../../src/ber/writer.js";
import { VmstreamError } from "../../src/io/errors.js";
import { fromHex, toSpacedHex } from "../helpers/bytes.js";

function enc(f: (w: BerWriter) => void): string {
  const w = new BerWriter({ initialCapacity: 64 });
  f(w);
  return toSpacedHex(w.finish());
}

function reader(h: string | Uint8Array): BerReader {
  return new BerReader(typeof h === "string" ? fromHex(h) : h);
}

function readInt(b: Uint8Array): bigint {
  const r = reader(b);
  r.header();
  expect(r.id).toBe(0x02);
  const v = r.bigint();
  expect(r.pos).toBe(b.length);
  return v;
}

function readReal(b: Uint8Array): number {
  const r = reader(b);
  r.header();
  const v = r.real();
  expect(r.pos).toBe(b.length);
  return v;
}

/** Independent reference: minimal two's complement of a bigint, by repeated division. */
function refInteger(v: bigint): string {
  const out: number[] = [];
  let x = v;
  for (;;) {
    const byte = Number(BigInt.asUintN(8, x));
    out.unshift(byte);
    x >>= 8n;
    if ((x === 0n && (byte & 0x80) === 0) || (x === -1n && (byte & 0x80) !== 0)) break;
  }
  return toSpacedHex(Uint8Array.from([0x02, out.length, ...out]));
}

describe("INTEGER", () => {
  const vectors: [number | bigint, string][] = [
    [0, "02 01 00"],
    [127, "02 01 7F"],
    [128, "02 02 00 80"],
    [-128, "02 01 80"],
    [-129, "02 02 FF 7F"],
    [255, "02 02 00 FF"],
    [256, "02 02 01 00"],
    [-1, "02 01 FF"],
    [32767, "02 02 7F FF"],
    [32768, "02 03 00 80 00"],
    [-32769, "02 03 FF 7F FF"],
    [2 ** 31 - 1, "02 04 7F FF FF FF"],
    [2 ** 31, "02 05 00 80 00 00 00"],
    [-(2 ** 31), "02 04 80 00 00 00"],
    [2 ** 32 - 1, "02 05 00 FF FF FF FF"],
    [Number.MAX_SAFE_INTEGER, "02 07 1F FF FF FF FF FF FF"],
    [Number.MIN_SAFE_INTEGER, "02 07 E0 00 00 00 00 00 01"],
    [2n ** 63n - 1n, "02 08 7F FF FF FF FF FF FF FF"],
    [2n ** 63n, "02 09 00 80 00 00 00 00 00 00 00"],
    [-(2n ** 63n), "02 08 80 00 00 00 00 00 00 00"],
    [2n ** 64n - 1n, "02 09 00 FF FF FF FF FF FF FF FF"],
    [2n ** 64n, "02 09 01 00 00 00 00 00 00 00 00"],
    [-(2n ** 64n) - 1n, "02 09 FE FF FF FF FF FF FF FF FF"],
  ];
  it.each(vectors)("%s -> %s", (v, want) => {
    expect(enc((w) => (typeof v === "bigint" ? w.bigint(v) : w.int(v)))).toBe(want);
    expect(enc((w) => w.bigint(BigInt(v)))).toBe(want);
    expect(readInt(fromHex(want))).toBe(BigInt(v));
    if (typeof v === "number" || (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER))) {
      const r = reader(want);
      r.header();
      expect(r.int()).toBe(Number(v));
    }
  });

  it("writes a u64 >= 2^63 with a leading 00 (nine octets), never as a negative number", () => {
    expect(enc((w) => w.bigint(0x8000000000000001n))).toBe("02 09 00 80 00 00 00 00 00 00 01");
    expect(readInt(fromHex("02 09 00 80 00 00 00 00 00 00 01"))).toBe(0x8000000000000001n);
  });

  it("rejects non-integers and unsafe numbers", () => {
    expect(() => enc((w) => w.int(1.5))).toThrow(VmstreamError);
    expect(() => enc((w) => w.int(2 ** 53))).toThrow(/safe integer/);
    expect(() => enc((w) => w.int(NaN))).toThrow(VmstreamError);
  });

  it("reader rejects non-minimal and empty INTEGERs, and numbers beyond 2^53 in int()", () => {
    for (const h of ["02 02 00 7F", "02 02 FF 80", "02 00"]) {
      const r = reader(h);
      r.header();
      expect(() => r.bigint(), h).toThrow(VmstreamError);
    }
    const r = reader("02 08 7F FF FF FF FF FF FF FF");
    r.header();
    expect(() => r.int()).toThrow(expect.objectContaining({ code: "RANGE" }));
  });

  it("round-trips every bigint in [-2^63, 2^64) (fast-check), minimal as the reference encoder", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }), (v) => {
        const e = enc((w) => w.bigint(v));
        expect(e).toBe(refInteger(v));
        expect(readInt(fromHex(e))).toBe(v);
      }),
      { numRuns: 2000 },
    );
  });

  it("round-trips big integers beyond 64 bits", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }), (v) => {
        const e = enc((w) => w.bigint(v));
        expect(e).toBe(refInteger(v));
        expect(readInt(fromHex(e))).toBe(v);
      }),
      { numRuns: 300 },
    );
  });

  it("round-trips safe integers written from numbers", () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.integer({ min: -300, max: 300 })), (v) => {
        const e = enc((w) => w.int(v));
        expect(e).toBe(refInteger(BigInt(v)));
        const r = reader(e);
        r.header();
        expect(r.int()).toBe(v);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("REAL (canonical binary form)", () => {
  const vectors: [number, string][] = [
    [1.0, "09 03 80 00 01"],
    [0.5, "09 03 80 FF 01"],
    [-2.5, "09 03 C0 FF 05"],
    [0, "09 00"],
    [Infinity, "09 01 40"],
    [-Infinity, "09 01 41"],
    [NaN, "09 01 42"],
    [-0, "09 01 43"],
    [2, "09 03 80 01 01"],
    [3, "09 03 80 00 03"],
    [1024, "09 03 80 0A 01"],
    [2 ** -1074, "09 04 81 FB CE 01"], // smallest subnormal: exponent -1074 needs two octets
    [2 ** 1023, "09 04 81 03 FF 01"],
    [Number.MAX_VALUE, "09 0A 81 03 CB 1F FF FF FF FF FF FF"],
  ];
  it.each(vectors)("%s -> %s", (v, want) => {
    expect(enc((w) => w.real(v))).toBe(want);
    expect(Object.is(readReal(fromHex(want)), v)).toBe(true);
  });

  /** Canonical form: binary, base 2, F = 0, odd mantissa without leading zero octets, minimal exponent. */
  function checkCanonical(b: Uint8Array): void {
    if (b[1] === 0 || b[1] === 1) return;
    const first = b[2]!;
    expect(first & 0x80).toBe(0x80);
    expect(first & 0x3c).toBe(0); // base 2, F = 0
    const ek = (first & 3) + 1;
    expect(ek).toBeLessThanOrEqual(2);
    if (ek === 2) {
      const e0 = b[3]!;
      const e1 = b[4]!;
      expect((e0 === 0 && e1 < 0x80) || (e0 === 0xff && e1 >= 0x80)).toBe(false);
    }
    const mant = b.subarray(3 + ek);
    expect(mant[0]).not.toBe(0);
    expect(mant[mant.length - 1]! & 1).toBe(1);
  }

  it("round-trips every float64 bit pattern (fast-check, subnormals and specials included)", () => {
    const dv = new DataView(new ArrayBuffer(8));
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (bits) => {
        dv.setBigUint64(0, bits);
        const v = dv.getFloat64(0);
        const e = fromHex(enc((w) => w.real(v)));
        checkCanonical(e);
        expect(Object.is(readReal(e), v)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  it("round-trips doubles near the edges (subnormals, powers of two, extremes)", () => {
    fc.assert(
      fc.property(fc.double({ noNaN: false }), fc.constantFrom(1, 2 ** -1022, 2 ** -1060, 2 ** 1000), (a, scale) => {
        for (const v of [a, a * scale, a / scale]) {
          const e = fromHex(enc((w) => w.real(v)));
          checkCanonical(e);
          expect(Object.is(readReal(e), v)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("round-trips every float32 value exactly", () => {
    fc.assert(
      fc.property(fc.float(), (v) => {
        const e = fromHex(enc((w) => w.real(v)));
        const back = readReal(e);
        expect(Object.is(back, v)).toBe(true);
        expect(Object.is(Math.fround(back), back)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it("reads the other binary forms (base 8 and 16, scale factor, long exponent) and decimal NR1-3", () => {
    const cases: [string, number][] = [
      ["09 03 90 00 01", 1], // base 8, E = 0
      ["09 03 90 01 01", 8], // base 8, E = 1
      ["09 03 A0 01 03", 48], // base 16, E = 1, N = 3
      ["09 03 84 00 01", 2], // F = 1
      ["09 03 8C 00 01", 8], // F = 3
      ["09 04 83 01 00 01", 1], // exponent length in the next octet (1), E = 0
      ["09 05 81 00 00 00 03", 3], // non-minimal two-octet exponent 0
      ["09 03 80 00 04", 4], // even mantissa (not canonical, still read)
      ["09 0A 80 C0 01 00 00 00 00 00 00 00", 2 ** -8], // 8-octet mantissa 2^56 * 2^-64
      ["09 04 01 2D 31 32", -12], // NR1 "-12"
      ["09 04 02 31 2E 35", 1.5], // NR2 "1.5"
      ["09 04 02 31 2C 35", 1.5], // NR2 with a comma
      ["09 06 03 31 2E 35 45 32", 150], // NR3 "1.5E2"
    ];
    for (const [h, v] of cases) expect(readReal(fromHex(h)), h).toBe(v);
  });

  it("rejects malformed REALs", () => {
    for (const h of ["09 02 40 00", "09 01 44", "09 03 B0 00 01", "09 02 04 31", "09 03 02 31 41", "09 01 83"]) {
      const r = reader(h);
      r.header();
      expect(() => r.real(), h).toThrow(VmstreamError);
    }
  });

  it("ldexp is exact into the subnormal range and saturates", () => {
    expect(ldexp(1, -1074)).toBe(2 ** -1074);
    expect(ldexp(3, -1075)).toBe(2 ** -1073); // 1.5 * 2^-1074 rounds to even: 2 * 2^-1074
    expect(ldexp(1, -1076)).toBe(0);
    expect(ldexp(1, 1024)).toBe(Infinity);
    expect(ldexp(2 ** 60, -1130)).toBe(2 ** -1070);
  });
});

describe("other primitives", () => {
  it("BOOLEAN, NULL, OCTET STRING, UTF8String", () => {
    expect(enc((w) => w.boolean(true))).toBe("01 01 FF");
    expect(enc((w) => w.boolean(false))).toBe("01 01 00");
    expect(enc((w) => w.null())).toBe("05 00");
    expect(enc((w) => w.octets(fromHex("DE AD")))).toBe("04 02 DE AD");
    expect(enc((w) => w.utf8("irr"))).toBe("0C 03 69 72 72");
    expect(enc((w) => w.utf8("é€"))).toBe("0C 05 C3 A9 E2 82 AC");
    const r = reader("01 01 01 01 01 00 05 00 0C 05 C3 A9 E2 82 AC 0C 03 69 72 72");
    r.header();
    expect(r.boolean()).toBe(true); // any non-zero octet is TRUE
    r.header();
    expect(r.boolean()).toBe(false);
    r.header();
    r.null();
    r.header();
    expect(r.utf8()).toBe("é€");
    r.header();
    expect(r.contentsEqual("irr")).toBe(true);
    expect(r.contentsEqual("irq")).toBe(false);
    expect(r.utf8()).toBe("irr");
  });

  it("UTF8String decoding is fatal on invalid UTF-8", () => {
    const r = reader("0C 02 C3 28");
    r.header();
    expect(() => r.utf8()).toThrow(/invalid UTF-8/);
  });

  it("reads constructed OCTET STRINGs (segments, nested, indefinite)", () => {
    const r = reader("24 80 04 02 AB CD 24 03 04 01 EF 04 00 00 00");
    r.header();
    expect(toSpacedHex(r.octets())).toBe("AB CD EF");
    expect(r.pos).toBe(r.end);
    const r2 = reader("2C 07 04 02 68 69 04 01 21");
    r2.header();
    expect(r2.utf8()).toBe("hi!");
    const bad = reader("24 03 02 01 00");
    bad.header();
    expect(() => bad.octets()).toThrow(/not an OCTET STRING/);
  });

  it("BOOLEAN and NULL of the wrong size are rejected", () => {
    const r = reader("01 02 00 00");
    r.header();
    expect(() => r.boolean()).toThrow(VmstreamError);
    const n = reader("05 01 00");
    n.header();
    expect(() => n.null()).toThrow(VmstreamError);
  });
});

describe("lengths", () => {
  it.each([
    [0, "00"],
    [127, "7F"],
    [128, "81 80"],
    [255, "81 FF"],
    [256, "82 01 00"],
    [65536, "83 01 00 00"],
  ])("OCTET STRING of %i octets has length %s", (n, want) => {
    const e = fromHex(enc((w) => w.octets(new Uint8Array(n).fill(7))));
    expect(toSpacedHex(e.subarray(1, 1 + want.split(" ").length))).toBe(want);
    const r = new BerReader(e);
    r.header();
    expect(r.len).toBe(n);
    expect(r.octets().length).toBe(n);
  });

  it.each([127, 128, 255, 256, 70000])("fork/join moves %i contents octets behind the long form", (n) => {
    const w = new BerWriter({ initialCapacity: 64 });
    w.fork(T_SEQUENCE);
    w.fork(T_SEQUENCE);
    w.octets(new Uint8Array(n - 2 - (n - 2 >= 128 ? (n - 2 >= 256 ? (n - 2 >= 65536 ? 3 : 2) : 1) : 0)).fill(0x5a));
    w.join();
    w.int(1);
    w.join();
    const out = w.finish();
    const r = new BerReader(out);
    r.header();
    const end = r.enter();
    r.header();
    const inner = r.enter();
    r.header();
    expect(r.octets().every((b) => b === 0x5a)).toBe(true);
    r.leave(inner);
    r.header();
    expect(r.int()).toBe(1);
    r.leave(end);
    expect(r.pos).toBe(out.length);
    // Minimal long form.
    const l = out[1]!;
    if (l >= 0x80) expect(out[2]).not.toBe(0);
  });

  it("reads non-minimal definite lengths (BER) but rejects 0xFF and lengths past the end", () => {
    const r = reader("04 84 00 00 00 02 AB CD");
    r.header();
    expect(toSpacedHex(r.octets())).toBe("AB CD");
    expect(() => reader("04 FF 00").header()).toThrow(/0xFF/);
    expect(() => reader("04 05 00").header()).toThrow(expect.objectContaining({ code: "EOF" }));
    expect(() => reader("04 82 01").header()).toThrow(expect.objectContaining({ code: "EOF" }));
  });

  it("indefinite length and end-of-contents", () => {
    expect(
      enc((w) => {
        w.fork(T_SEQUENCE, true);
        w.int(1);
        w.fork(0xa0, true);
        w.join();
        w.join();
      }),
    ).toBe("30 80 02 01 01 A0 00 00 00"); // an empty value gets the definite length 0
    const r = reader("30 80 02 01 01 A0 80 00 00 00 00");
    r.header();
    expect(r.len).toBe(-1);
    const end = r.enter();
    expect(end).toBe(-1);
    r.header();
    expect(r.int()).toBe(1);
    expect(r.atEnd(end)).toBe(false);
    r.header();
    const e2 = r.enter();
    expect(r.atEnd(e2)).toBe(true);
    r.leave(e2);
    r.leave(end);
    expect(r.pos).toBe(r.end);
    // skip() and count() walk indefinite values.
    const c = reader("30 80 30 80 02 01 01 00 00 04 01 00 A0 80 00 00 00 00");
    c.header();
    const ce = c.enter();
    expect(c.count(ce)).toBe(3);
    c.pos = 0;
    c.depth = 0;
    c.skipElement();
    expect(c.pos).toBe(c.end);
  });

  it("an empty indefinite value is written with length 0, unless its 0x80 was already handed out", () => {
    const w = new BerWriter();
    w.fork(T_SEQUENCE, true);
    w.fork(T_SEQUENCE, true);
    w.join();
    w.fork(T_SEQUENCE, true);
    expect(toSpacedHex(w.take())).toBe("30 80 30 00 30 80");
    w.join();
    w.join();
    expect(toSpacedHex(w.take())).toBe("00 00 00 00");
  });

  it("rejects an indefinite length on a primitive, and a missing EOC", () => {
    expect(() => reader("04 80 00 00").header()).toThrow(/primitive/);
    const r = reader("30 80 02 01 01");
    r.header();
    const end = r.enter();
    r.header();
    r.int();
    expect(() => r.atEnd(end)).toThrow(expect.objectContaining({ code: "EOF" }));
  });

  it("caps the nesting depth", () => {
    const deep = fromHex("30 80".repeat(20) + "00 00".repeat(20));
    const r = new BerReader(deep, { maxDepth: 10 });
    expect(() => r.skipElement()).toThrow(expect.objectContaining({ code: "LIMIT" }));
    expect(() => new BerReader(deep).skipElement()).not.toThrow();
  });

  it("errors carry the absolute offset", () => {
    const r = new BerReader(fromHex("02 02 00 7F"), { baseOffset: 1000 });
    r.header();
    expect(() => r.int()).toThrow(expect.objectContaining({ offset: 1000 }));
  });
});

describe("tags", () => {
  it("single-octet identifiers", () => {
    expect(berTag(CLASS_UNIVERSAL, false, 2)).toBe(0x02);
    expect(berTag(CLASS_UNIVERSAL, true, 16)).toBe(0x30);
    expect(berTag(CLASS_CONTEXT, false, 4)).toBe(0x84);
    expect(berTag(CLASS_APPLICATION, true, 18)).toBe(0x72);
    expect(berTag(CLASS_UNIVERSAL, false, 30)).toBe(0x1e);
  });

  it.each([
    [CLASS_UNIVERSAL, false, 31, "1F 1F"],
    [CLASS_UNIVERSAL, false, 127, "1F 7F"],
    [CLASS_UNIVERSAL, false, 128, "1F 81 00"],
    [CLASS_APPLICATION, false, 126, "5F 7E"],
    [CLASS_CONTEXT, true, 200, "BF 81 48"],
    [CLASS_UNIVERSAL, false, 16384, "1F 81 80 00"],
  ] as const)("class %i constructed %s number %i -> %s", (cls, cons, n, want) => {
    const t = berTag(cls, cons, n);
    expect(t).toBeInstanceOf(Uint8Array);
    expect(toSpacedHex(t as Uint8Array)).toBe(want);
    const w = new BerWriter();
    if (cons) {
      w.fork(t);
      w.join();
    } else w.int(5, t);
    const r = new BerReader(w.finish());
    r.header();
    expect(r.cls).toBe(cls);
    expect(r.constructed).toBe(cons);
    expect(r.tagNo).toBe(n);
    expect(r.id & 0x1f).toBe(0x1f);
  });

  it("rejects a tag number with a leading 0x80 octet and bad tags", () => {
    expect(() => reader("1F 80 01 00").header()).toThrow(/leading 0x80/);
    expect(() => berTag(0x20, false, 1)).toThrow(VmstreamError);
    expect(() => berTag(CLASS_CONTEXT, false, -1)).toThrow(VmstreamError);
  });

  it("round-trips tag numbers (fast-check)", () => {
    fc.assert(
      fc.property(fc.constantFrom(0x00, 0x40, 0x80, 0xc0), fc.boolean(), fc.integer({ min: 0, max: 2 ** 32 - 1 }), (cls, cons, n) => {
        const w = new BerWriter();
        if (cons) {
          w.fork(berTag(cls, cons, n));
          w.join();
        } else w.null(berTag(cls, cons, n));
        const r = new BerReader(w.finish());
        r.header();
        expect([r.cls, r.constructed, r.tagNo, r.len]).toEqual([cls, cons, n, 0]);
      }),
      { numRuns: 1000 },
    );
  });
});

describe("writer", () => {
  it("take() hands out what only indefinite values hold, never bytes under a definite fork", () => {
    const w = new BerWriter({ initialCapacity: 64 });
    w.fork(T_SEQUENCE, true);
    w.int(1);
    const a = w.take();
    expect(toSpacedHex(a)).toBe("30 80 02 01 01");
    w.fork(T_SEQUENCE); // definite: its length is not known yet
    w.int(2);
    expect(toSpacedHex(w.take())).toBe("");
    w.octets(new Uint8Array(200));
    w.join();
    const b = w.take();
    expect(toSpacedHex(b.subarray(0, 4))).toBe("30 81 CE 02");
    w.join();
    const c = w.take();
    expect(toSpacedHex(c)).toBe("00 00");
    expect(w.offset).toBe(a.length + b.length + c.length);
    const all = new Uint8Array([...a, ...b, ...c]);
    const r = new BerReader(all);
    r.skipElement();
    expect(r.pos).toBe(all.length);
  });

  it("grows its buffer and keeps nested definite lengths right (fast-check)", () => {
    type Node = { kind: "int"; v: number } | { kind: "oct"; n: number } | { kind: "seq"; indef: boolean; kids: Node[] };
    const node: fc.Arbitrary<Node> = fc.letrec<{ node: Node }>((tie) => ({
      node: fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        fc.record({ kind: fc.constant("int" as const), v: fc.integer() }),
        fc.record({ kind: fc.constant("oct" as const), n: fc.integer({ min: 0, max: 400 }) }),
        fc.record({ kind: fc.constant("seq" as const), indef: fc.boolean(), kids: fc.array(tie("node"), { maxLength: 5 }) }),
      ),
    })).node;
    const write = (w: BerWriter, x: Node): void => {
      if (x.kind === "int") w.int(x.v);
      else if (x.kind === "oct") w.octets(new Uint8Array(x.n).fill(x.n & 0xff), T_OCTET_STRING);
      else {
        w.fork(T_SEQUENCE, x.indef);
        for (const k of x.kids) write(w, k);
        w.join();
      }
    };
    const read = (r: BerReader): Node => {
      r.header();
      if (r.id === 0x02) return { kind: "int", v: r.int() };
      if (r.id === 0x04) {
        const b = r.octets();
        expect(b.every((x) => x === (b.length & 0xff))).toBe(true);
        return { kind: "oct", n: b.length };
      }
      const indef = r.len < 0;
      const end = r.enter();
      const kids: Node[] = [];
      while (!r.atEnd(end)) kids.push(read(r));
      r.leave(end);
      return { kind: "seq", indef, kids };
    };
    fc.assert(
      fc.property(node, (x) => {
        const w = new BerWriter({ initialCapacity: 64 });
        write(w, x);
        const out = w.finish();
        const r = new BerReader(out);
        // An empty indefinite value is written with the definite length 0.
        const norm = (y: Node): Node => (y.kind === "seq" ? { ...y, indef: y.indef && y.kids.length > 0, kids: y.kids.map(norm) } : y);
        expect(read(r)).toEqual(norm(x));
        expect(r.pos).toBe(out.length);
      }),
      { numRuns: 300 },
    );
  });

  it("join() without fork() and finish() with open values throw", () => {
    const w = new BerWriter();
    expect(() => w.join()).toThrow(VmstreamError);
    w.fork(T_SEQUENCE);
    expect(() => w.finish()).toThrow(/still open/);
  });
});
