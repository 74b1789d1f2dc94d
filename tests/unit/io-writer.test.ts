import { describe, expect, it } from "vitest";
import { ByteWriter, GatherWriter } from "../../src/io/writer.js";
import { toHex } from "../helpers/bytes.js";
import { thrownBy } from "../helpers/errors.js";

function bytesOf(f: (w: ByteWriter) => void): string {
  const w = new ByteWriter();
  f(w);
  return toHex(w.finish());
}

describe("ByteWriter unsigned puts", () => {
  it("u8", () => {
    expect(bytesOf((w) => [0, 1, 0x7f, 0x80, 0xff].forEach((v) => w.u8(v)))).toBe("00017f80ff");
  });
  it("be16", () => {
    expect(bytesOf((w) => [0, 1, 0x1234, 0x8000, 0xffff].forEach((v) => w.be16(v)))).toBe("0000000112348000ffff");
  });
  it("be32 boundary values", () => {
    expect(bytesOf((w) => [0, 1, 0x12345678, 2 ** 31, 2 ** 32 - 1].forEach((v) => w.be32(v)))).toBe(
      "00000000" + "00000001" + "12345678" + "80000000" + "ffffffff",
    );
  });
  it("integer puts wrap modulo 2^width like DataView (no range check)", () => {
    expect(bytesOf((w) => w.u8(0x1ff))).toBe("ff");
    expect(bytesOf((w) => w.be16(0x12345))).toBe("2345");
    expect(bytesOf((w) => w.be32(-1))).toBe("ffffffff");
    expect(bytesOf((w) => w.be64(-1n))).toBe("ffffffffffffffff");
    expect(bytesOf((w) => w.be64(2n ** 64n + 5n))).toBe("0000000000000005");
  });
  it("be64 (bigint) boundary values", () => {
    const cases: [bigint, string][] = [
      [0n, "0000000000000000"],
      [1n, "0000000000000001"],
      [2n ** 31n, "0000000080000000"],
      [2n ** 32n - 1n, "00000000ffffffff"],
      [2n ** 32n, "0000000100000000"],
      [2n ** 53n + 1n, "0020000000000001"],
      [2n ** 63n, "8000000000000000"],
      [2n ** 64n - 1n, "ffffffffffffffff"],
      [0x0123456789abcdefn, "0123456789abcdef"],
    ];
    for (const [v, h] of cases) expect(bytesOf((w) => w.be64(v))).toBe(h);
  });
  it("be64hl writes two u32 halves", () => {
    expect(bytesOf((w) => w.be64hl(0x01234567, 0x89abcdef))).toBe("0123456789abcdef");
    expect(bytesOf((w) => w.be64hl(0xffffffff, 0xffffffff))).toBe("ffffffffffffffff");
    expect(bytesOf((w) => w.be64hl(0x00200000, 1))).toBe("0020000000000001");
  });
  it("be64n takes any safe integer, negatives in two's complement", () => {
    expect(bytesOf((w) => w.be64n(0))).toBe("0000000000000000");
    expect(bytesOf((w) => w.be64n(2 ** 32))).toBe("0000000100000000");
    expect(bytesOf((w) => w.be64n(Number.MAX_SAFE_INTEGER))).toBe("001fffffffffffff");
    expect(bytesOf((w) => w.be64n(-1))).toBe("ffffffffffffffff");
    expect(bytesOf((w) => w.be64n(-(2 ** 32) - 1))).toBe("fffffffeffffffff");
    expect(bytesOf((w) => w.be64n(-Number.MAX_SAFE_INTEGER))).toBe("ffe0000000000001");
    for (const bad of [2 ** 53, 1.5, NaN, Infinity]) {
      const e = thrownBy(() => new ByteWriter().be64n(bad));
      expect(e.code).toBe("RANGE");
    }
  });
});

describe("ByteWriter signed puts", () => {
  it("s8 / sbe16 / sbe32", () => {
    expect(bytesOf((w) => [-1, -128, 127, 0].forEach((v) => w.s8(v)))).toBe("ff807f00");
    expect(bytesOf((w) => [-1, -32768, 32767].forEach((v) => w.sbe16(v)))).toBe("ffff80007fff");
    expect(bytesOf((w) => [-1, -(2 ** 31), 2 ** 31 - 1, -2].forEach((v) => w.sbe32(v)))).toBe("ffffffff800000007ffffffffffffffe");
  });
  it("sbe64", () => {
    expect(bytesOf((w) => w.sbe64(-1n))).toBe("ffffffffffffffff");
    expect(bytesOf((w) => w.sbe64(-(2n ** 63n)))).toBe("8000000000000000");
    expect(bytesOf((w) => w.sbe64(2n ** 63n - 1n))).toBe("7fffffffffffffff");
    expect(bytesOf((w) => w.sbe64(-2n))).toBe("fffffffffffffffe");
  });
});

describe("ByteWriter floats (IEEE big-endian)", () => {
  it("f32be", () => {
    expect(bytesOf((w) => w.f32be(1))).toBe("3f800000");
    expect(bytesOf((w) => w.f32be(-0))).toBe("80000000");
    expect(bytesOf((w) => w.f32be(0))).toBe("00000000");
    expect(bytesOf((w) => w.f32be(Infinity))).toBe("7f800000");
    expect(bytesOf((w) => w.f32be(-Infinity))).toBe("ff800000");
    expect(bytesOf((w) => w.f32be(NaN))).toBe("7fc00000");
    expect(bytesOf((w) => w.f32be(-2.5))).toBe("c0200000");
  });
  it("f64be", () => {
    expect(bytesOf((w) => w.f64be(1))).toBe("3ff0000000000000");
    expect(bytesOf((w) => w.f64be(-0))).toBe("8000000000000000");
    expect(bytesOf((w) => w.f64be(Infinity))).toBe("7ff0000000000000");
    expect(bytesOf((w) => w.f64be(-Infinity))).toBe("fff0000000000000");
    expect(bytesOf((w) => w.f64be(NaN))).toBe("7ff8000000000000");
    expect(bytesOf((w) => w.f64be(Number.MIN_VALUE))).toBe("0000000000000001");
    expect(bytesOf((w) => w.f64be(Math.PI))).toBe("400921fb54442d18");
  });
});

describe("ByteWriter byte runs and counted strings", () => {
  it("bytes copies", () => {
    const src = new Uint8Array([1, 2, 3]);
    const big = new Uint8Array(100).map((_, i) => i);
    const w = new ByteWriter();
    w.bytes(src);
    w.bytes(big);
    src[0] = 99;
    big[0] = 99;
    const out = w.finish();
    expect(out.length).toBe(103);
    expect(out[0]).toBe(1);
    expect(out[3]).toBe(0);
    expect(toHex(out.subarray(0, 6))).toBe("010203000102");
  });
  it("zeros", () => {
    const w = new ByteWriter();
    w.u8(0xaa);
    w.zeros(5);
    w.zeros(0);
    w.u8(0xbb);
    expect(toHex(w.finish())).toBe("aa0000000000bb");
    expect(thrownBy(() => w.zeros(-1)).code).toBe("RANGE");
    expect(thrownBy(() => w.zeros(1.5)).code).toBe("RANGE");
  });
  it("zeros really zero a reused buffer", () => {
    const w = new ByteWriter();
    for (let i = 0; i < 16; i++) w.u8(0xff);
    w.reset();
    w.zeros(16);
    expect(toHex(w.finish())).toBe("00".repeat(16));
  });
  it("cstr lengths 0, 1, 255; 256 is an error", () => {
    expect(bytesOf((w) => w.cstr(""))).toBe("00");
    expect(bytesOf((w) => w.cstr("a"))).toBe("0161");
    const s255 = "x".repeat(255);
    const out = bytesOf((w) => w.cstr(s255));
    expect(out).toBe("ff" + "78".repeat(255));
    const w = new ByteWriter();
    w.u8(7);
    const e = thrownBy(() => w.cstr("y".repeat(256)));
    expect(e.code).toBe("RANGE");
    expect(e.offset).toBe(1);
    expect(e.message).toContain("256 bytes, max 255");
    expect(w.pos).toBe(1); // nothing written
    expect(thrownBy(() => w.cstr(new Uint8Array(256))).code).toBe("RANGE");
  });
  it("cstr encodes strings as UTF-8 and takes bytes as is", () => {
    expect(bytesOf((w) => w.cstr("ram"))).toBe("0372616d");
    expect(bytesOf((w) => w.cstr("0000:00:01.0/PIIX3"))).toBe("12" + toHex(new TextEncoder().encode("0000:00:01.0/PIIX3")));
    expect(bytesOf((w) => w.cstr("é€"))).toBe("05c3a9e282ac");
    expect(bytesOf((w) => w.cstr(new Uint8Array([0, 0xff])))).toBe("0200ff");
    // 128 two-byte characters = 256 bytes
    expect(thrownBy(() => new ByteWriter().cstr("é".repeat(128))).code).toBe("RANGE");
    expect(bytesOf((w) => w.cstr("é".repeat(127) + "a")).slice(0, 2)).toBe("ff");
  });
});

describe("ByteWriter growth, positions, finish, reset", () => {
  it("grows from a small buffer and keeps every byte", () => {
    const w = new ByteWriter({ initialCapacity: 1 });
    expect(w.capacity).toBe(64);
    for (let i = 0; i < 10000; i++) w.be32(i);
    expect(w.pos).toBe(40000);
    expect(w.length).toBe(40000);
    expect(w.byteLength).toBe(40000);
    const dv = new DataView(w.finish().buffer, w.finish().byteOffset);
    for (let i = 0; i < 10000; i++) expect(dv.getUint32(i * 4)).toBe(i);
  });
  it("grows on every width at every capacity boundary", () => {
    for (let pre = 0; pre < 70; pre++) {
      const w = new ByteWriter({ initialCapacity: 64 });
      for (let i = 0; i < pre; i++) w.u8(i);
      w.be64hl(0x01020304, 0x05060708);
      w.f64be(1);
      w.be16(0xabcd);
      w.bytes(new Uint8Array(40).fill(9));
      const out = w.finish();
      expect(out.length).toBe(pre + 8 + 8 + 2 + 40);
      expect(toHex(out.subarray(pre, pre + 18))).toBe("0102030405060708" + "3ff0000000000000" + "abcd");
      for (let i = 0; i < pre; i++) expect(out[i]).toBe(i);
    }
  });
  it("ensure(n) makes room without writing", () => {
    const w = new ByteWriter({ initialCapacity: 64 });
    w.ensure(1000);
    expect(w.capacity).toBeGreaterThanOrEqual(1000);
    expect(w.pos).toBe(0);
  });
  it("finish returns a view, not a copy, valid until reset", () => {
    const w = new ByteWriter();
    w.be32(0x11223344);
    const a = w.finish();
    const b = w.finish();
    expect(a.buffer).toBe(b.buffer);
    expect(a.byteOffset).toBe(b.byteOffset);
    w.be16(0x5566); // appending does not disturb the earlier view
    expect(toHex(a)).toBe("11223344");
    expect(toHex(w.finish())).toBe("112233445566");
    w.reset();
    expect(w.pos).toBe(0);
    expect(w.finish().length).toBe(0);
    w.u8(0xee);
    expect(toHex(w.finish())).toBe("ee");
  });
});

describe("ByteWriter reserve / patch", () => {
  it("patches a reserved length in place", () => {
    const w = new ByteWriter();
    w.u8(6);
    const at = w.reserve(4);
    expect(at).toBe(1);
    w.bytes(new Uint8Array([1, 2, 3]));
    w.patchBe32(at, w.pos - at - 4);
    expect(toHex(w.finish())).toBe("06" + "00000003" + "010203");
  });
  it("patchU8 / patchBe16 / patchBe64hl / patchBe64", () => {
    const w = new ByteWriter();
    const a = w.reserve(1);
    const b = w.reserve(2);
    const c = w.reserve(8);
    const d = w.reserve(8);
    w.patchU8(a, 0xab);
    w.patchBe16(b, 0xcdef);
    w.patchBe64hl(c, 0x01020304, 0x05060708);
    w.patchBe64(d, -2n);
    expect(toHex(w.finish())).toBe("ab" + "cdef" + "0102030405060708" + "fffffffffffffffe");
  });
  it("patch survives growth", () => {
    const w = new ByteWriter({ initialCapacity: 64 });
    const at = w.reserve(4);
    for (let i = 0; i < 1000; i++) w.u8(1);
    w.patchBe32(at, 0xdeadbeef);
    expect(toHex(w.finish().subarray(0, 5))).toBe("deadbeef01");
  });
  it("patch outside the written bytes is a RANGE error", () => {
    const w = new ByteWriter();
    w.be32(0);
    expect(thrownBy(() => w.patchBe32(1, 0)).code).toBe("RANGE");
    expect(thrownBy(() => w.patchBe16(-1, 0)).code).toBe("RANGE");
    expect(thrownBy(() => w.patchU8(4, 0)).code).toBe("RANGE");
    expect(thrownBy(() => w.reserve(-1)).code).toBe("RANGE");
  });
});

describe("ByteWriter gather (zero-copy views)", () => {
  const page = (fill: number, n = 4096): Uint8Array => new Uint8Array(n).fill(fill);

  it("GatherWriter is the same class", () => {
    expect(GatherWriter).toBe(ByteWriter);
  });

  it("borrowed views are not copied: mutating the source shows in the chunks", () => {
    const w = new ByteWriter();
    const p = page(1);
    w.be64hl(0, 0x1000 | 8);
    w.borrow(p);
    w.be32(0xcafe);
    const chunks = w.chunks();
    expect(chunks.length).toBe(3);
    expect(chunks[1]).toBe(p); // the very same view object
    p[0] = 0x77;
    expect(chunks[1]![0]).toBe(0x77);
    expect(w.concat()[8]).toBe(0x77);
    expect(w.byteLength).toBe(8 + 4096 + 4);
    expect(w.pos).toBe(8 + 4096 + 4);
    expect(toHex(chunks[0]!)).toBe("0000000000001008");
    expect(toHex(chunks[2]!)).toBe("0000cafe");
  });

  it("contiguous views over the same buffer are coalesced into one view", () => {
    const mem = new Uint8Array(4 * 4096).map((_, i) => i & 0xff);
    const w = new ByteWriter();
    w.borrow(mem.subarray(0, 4096));
    w.borrow(mem.subarray(4096, 8192));
    w.borrow(mem.subarray(8192, 12288));
    let ch = w.chunks();
    expect(ch.length).toBe(1);
    expect(ch[0]!.buffer).toBe(mem.buffer);
    expect(ch[0]!.byteOffset).toBe(0);
    expect(ch[0]!.length).toBe(12288);
    // non-contiguous (a gap) -> new chunk
    w.borrow(mem.subarray(12289, 16384));
    expect(w.chunks().length).toBe(2);
    // a different buffer -> new chunk
    w.borrow(page(3));
    expect(w.chunks().length).toBe(3);
    // small field bytes in between break coalescing
    w.u8(1);
    w.borrow(mem.subarray(0, 4096));
    ch = w.chunks();
    expect(ch.length).toBe(5);
    expect(w.byteLength).toBe(12288 + 4095 + 4096 + 1 + 4096);
    const all = w.concat();
    expect(all.length).toBe(w.byteLength);
    expect(all[12288]).toBe(1); // mem[12289] & 0xff
  });

  it("views below borrowMin are copied", () => {
    const w = new ByteWriter({ borrowMin: 16 });
    const small = new Uint8Array([1, 2, 3]);
    w.borrow(small);
    small[0] = 9;
    expect(w.chunks().length).toBe(1);
    expect(toHex(w.finish())).toBe("010203");
    expect(new ByteWriter().borrowMin).toBe(256);
    const w0 = new ByteWriter({ borrowMin: 0 });
    w0.borrow(small);
    w0.borrow(new Uint8Array(0));
    expect(w0.chunks()).toEqual([small]);
  });

  it("finish concatenates when something was borrowed; chunks() does not consume", () => {
    const w = new ByteWriter();
    w.u8(0xaa);
    w.borrow(page(2, 300));
    w.u8(0xbb);
    const f = w.finish();
    expect(f.length).toBe(302);
    expect(f[0]).toBe(0xaa);
    expect(f[1]).toBe(2);
    expect(f[301]).toBe(0xbb);
    expect(w.chunks().length).toBe(3);
    expect(w.chunks().length).toBe(3);
  });

  it("growth after a borrow keeps earlier chunks intact", () => {
    const w = new ByteWriter({ initialCapacity: 64 });
    for (let i = 0; i < 60; i++) w.u8(i);
    w.borrow(page(5, 1000));
    for (let i = 0; i < 500; i++) w.u8(i & 0xff);
    const ch = w.chunks();
    expect(ch.length).toBe(3);
    expect(Array.from(ch[0]!)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    expect(ch[2]!.length).toBe(500);
    expect(ch[2]![499]).toBe(499 & 0xff);
  });

  it("patches own bytes that already became a chunk; refuses borrowed ones", () => {
    const w = new ByteWriter();
    const at = w.reserve(4);
    const p = page(0);
    w.borrow(p);
    w.u8(1);
    w.patchBe32(at, 0x01020304);
    expect(toHex(w.chunks()[0]!)).toBe("01020304");
    expect(thrownBy(() => w.patchBe32(4, 0)).code).toBe("RANGE"); // inside the borrowed page
    expect(thrownBy(() => w.patchBe16(3, 0)).code).toBe("RANGE"); // straddles own bytes and the page
    expect(p[0]).toBe(0);
    w.patchU8(4 + 4096, 0x42); // pending bytes
    expect(w.concat()[4100]).toBe(0x42);
  });

  it("takeChunks hands bytes over; later writes never overwrite them", () => {
    const w = new ByteWriter({ initialCapacity: 64 });
    w.be32(0x01020304);
    w.borrow(page(7, 512));
    w.be16(0x0506);
    const first = w.takeChunks();
    expect(first.map((c) => c.length)).toEqual([4, 512, 2]);
    expect(w.byteLength).toBe(0);
    expect(w.pos).toBe(518);
    for (let i = 0; i < 1000; i++) w.u8(0xff);
    expect(toHex(first[0]!)).toBe("01020304");
    expect(toHex(first[2]!)).toBe("0506");
    expect(w.byteLength).toBe(1000);
    expect(w.pos).toBe(1518);
    expect(thrownBy(() => w.patchU8(0, 0)).code).toBe("RANGE");
    const at = w.reserve(2);
    w.patchBe16(at, 0xbeef);
    const second = w.takeChunks();
    const total = second.reduce((n, c) => n + c.length, 0);
    expect(total).toBe(1002);
    expect(toHex(second[second.length - 1]!.subarray(-2))).toBe("beef");
  });

  it("streaming with takeChunks keeps the buffer size bounded", () => {
    const w = new ByteWriter({ initialCapacity: 4096 });
    const p = page(1);
    for (let i = 0; i < 10000; i++) {
      w.be64hl(0, i * 4096);
      w.borrow(p);
      if (i % 16 === 15) w.takeChunks();
    }
    expect(w.capacity).toBe(4096);
    expect(w.pos).toBe(10000 * (8 + 4096));
  });
});
