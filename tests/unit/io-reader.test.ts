import { describe, expect, it } from "vitest";
import { eofError, isVmstreamError, VmstreamError } from "../../src/io/errors.js";
import { ByteReader } from "../../src/io/reader.js";
import { fromHex, toHex } from "../helpers/bytes.js";
import { thrownBy } from "../helpers/errors.js";

const rd = (h: string, opts?: ConstructorParameters<typeof ByteReader>[1]): ByteReader => new ByteReader(fromHex(h), opts);

describe("ByteReader unsigned reads", () => {
  it("u8 / be16", () => {
    const r = rd("00017f80ff" + "0000" + "1234" + "ffff");
    expect([r.u8(), r.u8(), r.u8(), r.u8(), r.u8()]).toEqual([0, 1, 0x7f, 0x80, 0xff]);
    expect([r.be16(), r.be16(), r.be16()]).toEqual([0, 0x1234, 0xffff]);
    expect(r.remaining).toBe(0);
  });
  it("be32 is unsigned, boundary values", () => {
    const r = rd("00000000" + "00000001" + "7fffffff" + "80000000" + "ffffffff");
    expect([r.be32(), r.be32(), r.be32(), r.be32(), r.be32()]).toEqual([0, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1]);
  });
  it("be64 (bigint) boundary values", () => {
    const cases: [string, bigint][] = [
      ["0000000000000000", 0n],
      ["0000000080000000", 2n ** 31n],
      ["00000000ffffffff", 2n ** 32n - 1n],
      ["0000000100000000", 2n ** 32n],
      ["0020000000000001", 2n ** 53n + 1n],
      ["8000000000000000", 2n ** 63n],
      ["ffffffffffffffff", 2n ** 64n - 1n],
      ["0123456789abcdef", 0x0123456789abcdefn],
    ];
    for (const [h, v] of cases) expect(rd(h).be64()).toBe(v);
  });
  it("be64hl stores unsigned halves in hi / lo", () => {
    const r = rd("0123456789abcdef" + "ffffffff80000000");
    r.be64hl();
    expect([r.hi, r.lo]).toEqual([0x01234567, 0x89abcdef]);
    r.be64hl();
    expect([r.hi, r.lo]).toEqual([0xffffffff, 0x80000000]);
    expect(r.pos).toBe(16);
  });
  it("be64n returns safe integers and fails with RANGE above 2^53-1 without consuming", () => {
    expect(rd("001fffffffffffff").be64n()).toBe(Number.MAX_SAFE_INTEGER);
    expect(rd("0000000100000000").be64n()).toBe(2 ** 32);
    const r = rd("aa0020000000000000");
    r.u8();
    const e = thrownBy(() => r.be64n());
    expect(e.code).toBe("RANGE");
    expect(e.offset).toBe(1);
    expect(e.message).toContain("0x0020000000000000");
    expect(r.pos).toBe(1);
  });
});

describe("ByteReader signed reads", () => {
  it("s8 / sbe16 / sbe32", () => {
    const r = rd("ff807f00" + "ffff80007fff" + "ffffffff800000007ffffffffffffffe");
    expect([r.s8(), r.s8(), r.s8(), r.s8()]).toEqual([-1, -128, 127, 0]);
    expect([r.sbe16(), r.sbe16(), r.sbe16()]).toEqual([-1, -32768, 32767]);
    expect([r.sbe32(), r.sbe32(), r.sbe32(), r.sbe32()]).toEqual([-1, -(2 ** 31), 2 ** 31 - 1, -2]);
  });
  it("sbe64 (bigint)", () => {
    expect(rd("ffffffffffffffff").sbe64()).toBe(-1n);
    expect(rd("8000000000000000").sbe64()).toBe(-(2n ** 63n));
    expect(rd("7fffffffffffffff").sbe64()).toBe(2n ** 63n - 1n);
    expect(rd("fffffffeffffffff").sbe64()).toBe(-(2n ** 32n) - 1n);
    expect(rd("0000000100000000").sbe64()).toBe(2n ** 32n);
  });
  it("sbe64n", () => {
    expect(rd("ffffffffffffffff").sbe64n()).toBe(-1);
    expect(rd("ffe0000000000001").sbe64n()).toBe(-Number.MAX_SAFE_INTEGER);
    expect(rd("001fffffffffffff").sbe64n()).toBe(Number.MAX_SAFE_INTEGER);
    expect(thrownBy(() => rd("ffe0000000000000").sbe64n()).code).toBe("RANGE"); // -2^53
    expect(thrownBy(() => rd("8000000000000000").sbe64n()).code).toBe("RANGE");
  });
});

describe("ByteReader floats", () => {
  it("f32be incl. -0, infinities and NaN bit patterns", () => {
    const r = rd("3f800000" + "80000000" + "7f800000" + "ff800000" + "7fc00000" + "7f800001" + "ffffffff" + "c0200000");
    expect(r.f32be()).toBe(1);
    expect(Object.is(r.f32be(), -0)).toBe(true);
    expect(r.f32be()).toBe(Infinity);
    expect(r.f32be()).toBe(-Infinity);
    expect(r.f32be()).toBeNaN(); // quiet NaN
    expect(r.f32be()).toBeNaN(); // signalling NaN pattern
    expect(r.f32be()).toBeNaN(); // negative NaN with payload
    expect(r.f32be()).toBe(-2.5);
  });
  it("f64be incl. -0, infinities, NaN bit patterns and subnormals", () => {
    const r = rd(
      "3ff0000000000000" +
        "8000000000000000" +
        "7ff0000000000000" +
        "fff0000000000000" +
        "7ff8000000000000" +
        "7ff0000000000001" +
        "0000000000000001" +
        "400921fb54442d18",
    );
    expect(r.f64be()).toBe(1);
    expect(Object.is(r.f64be(), -0)).toBe(true);
    expect(r.f64be()).toBe(Infinity);
    expect(r.f64be()).toBe(-Infinity);
    expect(r.f64be()).toBeNaN();
    expect(r.f64be()).toBeNaN();
    expect(r.f64be()).toBe(Number.MIN_VALUE);
    expect(r.f64be()).toBe(Math.PI);
  });
});

describe("ByteReader byte runs", () => {
  it("bytes is a zero-copy subarray; bytesCopy copies", () => {
    const src = fromHex("0102030405");
    const r = new ByteReader(src);
    const a = r.bytes(2);
    expect(a.buffer).toBe(src.buffer);
    expect(toHex(a)).toBe("0102");
    src[0] = 9;
    expect(a[0]).toBe(9);
    const c = r.bytesCopy(2);
    src[2] = 9;
    expect(toHex(c)).toBe("0304");
    expect(r.bytes(0).length).toBe(0);
    expect(r.remaining).toBe(1);
    expect(thrownBy(() => r.bytes(-1)).code).toBe("RANGE");
    expect(thrownBy(() => r.bytes(0.5)).code).toBe("RANGE");
  });
  it("works on a view with a byteOffset", () => {
    const backing = fromHex("ffff" + "12345678" + "ffff");
    const r = new ByteReader(backing.subarray(2, 6));
    expect(r.be32()).toBe(0x12345678);
    expect(thrownBy(() => r.u8()).code).toBe("EOF");
  });
  it("skip", () => {
    const r = rd("0001020304");
    r.skip(3);
    expect(r.u8()).toBe(3);
    expect(thrownBy(() => r.skip(2)).code).toBe("EOF");
    expect(r.pos).toBe(4);
  });
  it("peek and peekU8 do not consume and never fail", () => {
    const r = rd("0a0b0c");
    expect(toHex(r.peek(2))).toBe("0a0b");
    expect(toHex(r.peek(10))).toBe("0a0b0c");
    expect(r.peek(0).length).toBe(0);
    expect(r.peekU8()).toBe(0x0a);
    expect(r.peekU8(2)).toBe(0x0c);
    expect(r.peekU8(3)).toBe(-1);
    expect(r.peekU8(-1)).toBe(-1);
    expect(r.pos).toBe(0);
    r.skip(3);
    expect(r.peek(1).length).toBe(0);
    expect(r.peekU8()).toBe(-1);
  });
});

describe("ByteReader counted strings", () => {
  it("lengths 1 and 255", () => {
    expect(rd("0161").cstr()).toBe("a");
    const s255 = "x".repeat(255);
    const r = rd("ff" + "78".repeat(255) + "00");
    expect(r.cstr()).toBe(s255);
    expect(r.pos).toBe(256);
  });
  it("length 0 is an error for cstr() (like qemu_get_counted_string) unless allowEmpty", () => {
    const r = rd("aa00");
    r.u8();
    const e = thrownBy(() => r.cstr());
    expect(e.code).toBe("EMPTY_STRING");
    expect(e.offset).toBe(1);
    expect(r.pos).toBe(1);
    expect(r.cstr(true)).toBe("");
    expect(r.pos).toBe(2);
  });
  it("cstrRaw accepts 0 and returns bytes", () => {
    const r = rd("00" + "0200ff");
    expect(r.cstrRaw().length).toBe(0);
    const b = r.cstrRaw();
    expect(toHex(b)).toBe("00ff");
    expect(r.remaining).toBe(0);
  });
  it("UTF-8 decoding; invalid bytes become U+FFFD", () => {
    expect(rd("05c3a9e282ac").cstr()).toBe("é€");
    expect(rd("0130").cstr()).toBe("0");
    expect(rd("02ff41").cstr()).toBe("\ufffdA");
    expect(rd("12" + toHex(new TextEncoder().encode("0000:00:01.0/PIIX3"))).cstr()).toBe("0000:00:01.0/PIIX3");
  });
  it("truncated string: EOF at the string start, nothing consumed", () => {
    const r = rd("050102", { baseOffset: 100 });
    const e = thrownBy(() => r.cstr());
    expect(e.code).toBe("EOF");
    expect(e.offset).toBe(100);
    expect(e.message).toBe("unexpected end of stream at byte 100: need 6 bytes, 3 left");
    expect(r.pos).toBe(0);
    expect(thrownBy(() => r.cstrRaw()).code).toBe("EOF");
    expect(thrownBy(() => rd("").cstr()).code).toBe("EOF");
  });
});

describe("ByteReader EOF at every offset (throwing mode)", () => {
  const readers: [string, number, (r: ByteReader) => unknown][] = [
    ["u8", 1, (r) => r.u8()],
    ["s8", 1, (r) => r.s8()],
    ["be16", 2, (r) => r.be16()],
    ["sbe16", 2, (r) => r.sbe16()],
    ["be32", 4, (r) => r.be32()],
    ["sbe32", 4, (r) => r.sbe32()],
    ["f32be", 4, (r) => r.f32be()],
    ["be64", 8, (r) => r.be64()],
    ["sbe64", 8, (r) => r.sbe64()],
    ["be64hl", 8, (r) => r.be64hl()],
    ["be64n", 8, (r) => r.be64n()],
    ["sbe64n", 8, (r) => r.sbe64n()],
    ["f64be", 8, (r) => r.f64be()],
    ["bytes(5)", 5, (r) => r.bytes(5)],
    ["skip(3)", 3, (r) => r.skip(3)],
  ];
  const LEN = 12;
  const BASE = 1000;
  for (const [name, width, read] of readers) {
    it(name, () => {
      for (let start = 0; start <= LEN; start++) {
        const r = new ByteReader(new Uint8Array(LEN), { baseOffset: BASE });
        r.pos = start;
        const left = LEN - start;
        if (width <= left) {
          read(r);
          expect(r.pos).toBe(start + width);
          expect(r.offset).toBe(BASE + start + width);
        } else {
          const e = thrownBy(() => read(r));
          expect(e.code).toBe("EOF");
          expect(e.offset).toBe(BASE + start);
          expect(e.message).toBe(`unexpected end of stream at byte ${BASE + start}: need ${width} byte${width === 1 ? "" : "s"}, ${left} left`);
          // a failed read changes nothing, and the reader is not poisoned in throwing mode
          expect(r.pos).toBe(start);
          expect(r.error).toBeUndefined();
          expect(r.remaining).toBe(left);
        }
      }
    });
  }
  it("a throwing reader can retry after EOF from a checkpoint", () => {
    const r = rd("0000000102");
    const mark = r.pos;
    expect(r.be32()).toBe(1);
    expect(thrownBy(() => r.be16()).code).toBe("EOF");
    expect(r.u8()).toBe(2);
    r.pos = mark;
    expect(r.be32()).toBe(1);
  });
});

describe("ByteReader sticky mode", () => {
  it("first error sticks, reads past the end return defaults, later reads do nothing", () => {
    const r = rd("0000000102", { sticky: true, baseOffset: 50 });
    expect(r.sticky).toBe(true);
    expect(r.ok).toBe(true);
    expect(r.be32()).toBe(1);
    expect(r.be16()).toBe(0); // EOF: needs 2, 1 left
    expect(r.ok).toBe(false);
    const first = r.error!;
    expect(first.code).toBe("EOF");
    expect(first.offset).toBe(54);
    expect(first.message).toBe("unexpected end of stream at byte 54: need 2 bytes, 1 left");
    // the reader is stopped: even the byte that is there is not read
    expect(r.u8()).toBe(0);
    expect(r.remaining).toBe(0);
    expect(r.be64()).toBe(0n);
    expect(r.sbe64()).toBe(0n);
    expect(r.f64be()).toBe(0);
    r.be64hl();
    expect([r.hi, r.lo]).toEqual([0, 0]);
    expect(r.bytes(0).length).toBe(0);
    expect(r.cstr()).toBe("");
    expect(r.cstrRaw().length).toBe(0);
    expect(r.peek(4).length).toBe(0);
    expect(r.peekU8()).toBe(-1);
    r.skip(1);
    expect(r.checkLength(99, 10, "x")).toBe(0);
    expect(r.error).toBe(first); // still the first one
    expect(r.pos).toBe(4);
    expect(() => r.check()).toThrow(first);
  });
  it("every read method returns its default after a sticky EOF on an empty input", () => {
    const calls: ((r: ByteReader) => unknown)[] = [
      (r) => r.u8(),
      (r) => r.s8(),
      (r) => r.be16(),
      (r) => r.sbe16(),
      (r) => r.be32(),
      (r) => r.sbe32(),
      (r) => r.f32be(),
      (r) => r.f64be(),
      (r) => r.be64n(),
      (r) => r.sbe64n(),
    ];
    for (const c of calls) {
      const r = rd("", { sticky: true });
      expect(c(r)).toBe(0);
      expect(r.error?.code).toBe("EOF");
      expect(r.error?.offset).toBe(0);
    }
  });
  it("non-EOF errors latch too (EMPTY_STRING, RANGE, LIMIT, raise)", () => {
    const r1 = rd("000161", { sticky: true });
    expect(r1.cstr()).toBe("");
    expect(r1.error?.code).toBe("EMPTY_STRING");
    expect(r1.cstr(true)).toBe(""); // stopped
    expect(r1.pos).toBe(0);

    const r2 = rd("ffffffffffffffff01", { sticky: true });
    expect(r2.be64n()).toBe(0);
    expect(r2.error?.code).toBe("RANGE");
    expect(r2.u8()).toBe(0);

    const r3 = rd("00001000", { sticky: true, baseOffset: 8 });
    expect(r3.checkLength(r3.be32(), 1024, "vmdesc JSON")).toBe(0);
    expect(r3.error?.code).toBe("LIMIT");
    expect(r3.error?.offset).toBe(12);
    expect(r3.error?.message).toBe("vmdesc JSON length over the limit at byte 12: 4096 > 1024");

    const r4 = rd("5145564e", { sticky: true });
    const magic = r4.be32();
    if (magic !== 0x5145564d) r4.raise("BAD_MAGIC", "not a QEMU migration stream", `magic 0x${magic.toString(16)}`, 0);
    expect(r4.error?.code).toBe("BAD_MAGIC");
    expect(r4.error?.offset).toBe(0);
    expect(r4.error?.message).toBe("not a QEMU migration stream at byte 0: magic 0x5145564e");
  });
  it("throwing mode: fail() throws and records nothing", () => {
    const r = rd("00");
    const e = new VmstreamError("BAD_VALUE", "x");
    expect(() => r.fail(e)).toThrow(e);
    expect(r.error).toBeUndefined();
    expect(r.u8()).toBe(0);
    expect(r.checkLength(5, 10, "x")).toBe(5);
    expect(thrownBy(() => r.checkLength(11, 10, "x")).code).toBe("LIMIT");
  });
  it("reset() takes new input and clears the error", () => {
    const r = rd("", { sticky: true });
    r.u8();
    expect(r.ok).toBe(false);
    r.reset(fromHex("0102"), 10);
    expect(r.ok).toBe(true);
    expect(r.offset).toBe(10);
    expect(r.be16()).toBe(0x0102);
    expect(r.data.length).toBe(2);
    r.u8();
    expect(r.error?.offset).toBe(12);
  });
});

describe("VmstreamError", () => {
  it("formats offset, section, path and detail", () => {
    const e = new VmstreamError("EOF", "unexpected end of stream", {
      offset: 1234,
      section: { idstr: "0000:00:01.0/PIIX3", id: 12 },
      path: "PIIX3.PCIDevice.config",
      detail: "need 4 bytes, 2 left",
    });
    expect(e.message).toBe("unexpected end of stream at byte 1234 (section 0000:00:01.0/PIIX3 id 12, field PIIX3.PCIDevice.config): need 4 bytes, 2 left");
    expect(e.name).toBe("VmstreamError");
    expect(e.code).toBe("EOF");
    expect(e.summary).toBe("unexpected end of stream");
    expect(e).toBeInstanceOf(Error);
    expect(isVmstreamError(e)).toBe(true);
    expect(isVmstreamError(new Error("x"))).toBe(false);
    expect(String(e.stack).startsWith("VmstreamError: unexpected end of stream at byte 1234")).toBe(true);
  });
  it("instance id and partial context", () => {
    expect(new VmstreamError("X", "bad", { section: { idstr: "cpu", id: 3, instanceId: 1 } }).message).toBe("bad (section cpu id 3 instance 1)");
    expect(new VmstreamError("X", "bad", { path: "a.b" }).message).toBe("bad (field a.b)");
    expect(new VmstreamError("X", "bad").message).toBe("bad");
    expect(new VmstreamError("X", "bad", { offset: 0 }).message).toBe("bad at byte 0");
  });
  it("withContext fills only missing fields; the first information sticks", () => {
    const inner = eofError(1234, 4, 2);
    expect(inner.message).toBe("unexpected end of stream at byte 1234: need 4 bytes, 2 left");
    const withPath = inner.withContext({ path: "PIIX3.PCIDevice.config", offset: 9999 });
    expect(withPath).not.toBe(inner);
    expect(withPath.offset).toBe(1234);
    expect(withPath.path).toBe("PIIX3.PCIDevice.config");
    const withSection = withPath.withContext({
      section: { idstr: "0000:00:01.0/PIIX3", id: 12 },
      path: "outer",
    });
    expect(withSection.path).toBe("PIIX3.PCIDevice.config");
    expect(withSection.code).toBe("EOF");
    expect(withSection.message).toBe(
      "unexpected end of stream at byte 1234 (section 0000:00:01.0/PIIX3 id 12, field PIIX3.PCIDevice.config): need 4 bytes, 2 left",
    );
    expect(String(withSection.stack).split("\n")[0]).toBe(`VmstreamError: ${withSection.message}`);
    expect(withSection.withContext({ path: "x", offset: 1 })).toBe(withSection); // nothing to add
    expect(inner.message).toBe("unexpected end of stream at byte 1234: need 4 bytes, 2 left"); // unchanged
  });
  it("wrap turns foreign errors into VmstreamError with cause", () => {
    const cause = new RangeError("boom");
    const w = VmstreamError.wrap(cause, { offset: 5 });
    expect(w.code).toBe("INTERNAL");
    expect(w.cause).toBe(cause);
    expect(w.message).toBe("boom at byte 5");
    const v = new VmstreamError("EOF", "x", { offset: 1 });
    expect(VmstreamError.wrap(v, { path: "p" }).message).toBe("x at byte 1 (field p)");
    expect(VmstreamError.wrap("str", {}, "BAD_VALUE").code).toBe("BAD_VALUE");
  });
});
