// XBZRLE kernels (wire-format §6): every backend against a byte-loop reference written from the
// §6.2/§6.3 pseudo-code, and against each other (identical return values and identical bytes,
// including the bytes an overflowing encode leaves in its output window).

import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { type BackendName, createKernels, LinearMemory, simdSupported, XBZRLE_ERR } from "../../src/kernels/index.js";
import { jsKernelFunctions } from "../../src/kernels/js/index.js";
import { instantiateKernels } from "../../src/kernels/wasm.js";
import { toHex } from "../helpers/bytes.js";
import { SeededRandom } from "../helpers/random.js";

// ---------------------------------------------------------------------------------------------
// Reference (byte loops, straight from the pseudo-code)

function ulebRef(v: number): number[] {
  return v < 0x80 ? [v] : [(v & 0x7f) | 0x80, v >> 7];
}

/**
 * §6.2, writing into `out` exactly what QEMU writes (lengths before the data test). One addition:
 * a run longer than 0x3FFF (possible only for pages > 16 KiB, or a fully changed 16 KiB page with
 * a limit > 16 KiB) cannot be written as a small ULEB (QEMU asserts), so the kernels return -1.
 */
function encodeRef(oldP: Uint8Array, newP: Uint8Array, out: Uint8Array, limit: number): number {
  const slen = oldP.length;
  let i = 0;
  let d = 0;
  while (i < slen) {
    if (d + 2 > limit) return -1;
    let z = 0;
    while (i < slen && oldP[i] === newP[i]) {
      z++;
      i++;
    }
    if (z === slen) return 0;
    if (i === slen) return d;
    if (z > 0x3fff) return -1;
    for (const b of ulebRef(z)) out[d++] = b;
    if (d + 2 > limit) return -1;
    let n = 0;
    while (i + n < slen && oldP[i + n] !== newP[i + n]) n++;
    if (n > 0x3fff) return -1;
    for (const b of ulebRef(n)) out[d++] = b;
    if (d + n > limit) return -1;
    for (let k = 0; k < n; k++) out[d++] = newP[i + k]!;
    i += n;
  }
  return d;
}

/** §6.3 with the XBZRLE_ERR codes; `page` is changed only on success. */
function decodeRef(src: Uint8Array, page: Uint8Array): number {
  const slen = src.length;
  const dlen = page.length;
  const copy = page.slice();
  let i = 0;
  let d = 0;
  const uleb = (): number => {
    const b0 = src[i]!;
    if (b0 < 0x80) {
      i += 1;
      return b0;
    }
    const b1 = src[i + 1]!;
    if (b1 & 0x80) return -1;
    i += 2;
    return (b0 & 0x7f) | (b1 << 7);
  };
  while (i < slen) {
    if (slen - i < 2) return XBZRLE_ERR.TRUNCATED;
    const first = i === 0;
    const z = uleb();
    if (z < 0) return XBZRLE_ERR.BAD_ULEB;
    if (!first && z === 0) return XBZRLE_ERR.ZERO_RUN;
    d += z;
    if (d > dlen) return XBZRLE_ERR.PAST_PAGE;
    if (slen - i < 2) return XBZRLE_ERR.TRUNCATED;
    const n = uleb();
    if (n < 0) return XBZRLE_ERR.BAD_ULEB;
    if (n === 0) return XBZRLE_ERR.ZERO_RUN;
    if (d + n > dlen) return XBZRLE_ERR.PAST_PAGE;
    if (i + n > slen) return XBZRLE_ERR.TRUNCATED;
    copy.set(src.subarray(i, i + n), d);
    d += n;
    i += n;
  }
  page.set(copy);
  return d;
}

// ---------------------------------------------------------------------------------------------
// Harness: the same call on every backend

const BACKENDS: BackendName[] = simdSupported() ? ["wasm-simd", "wasm-scalar", "js"] : ["wasm-scalar", "js"];
const SENTINEL = 0xa5;
const GUARD = 64; // sentinel bytes checked around every output
const AREA = 4 << 20;

/** One backend: its memory, a work area, and the two kernels. */
interface Be {
  name: string;
  base: number;
  u8(): Uint8Array;
  enc(oldPtr: number, newPtr: number, outPtr: number, limit: number, pageSize: number): number;
  dec(srcPtr: number, len: number, pagePtr: number, pageSize: number): number;
}
/** Through createKernels (the public, argument-checked API: power-of-two pages, limit >= 0). */
let bes: Be[] = [];
/** The raw kernels without the API's checks (any page size, any limit), as assembly/ram.ts calls them. */
let raws: Be[] = [];

beforeAll(() => {
  bes = BACKENDS.map((name): Be => {
    const k = createKernels({ backend: name });
    return { name, base: k.alloc(AREA), u8: () => k.u8, enc: (...a) => k.xbzrleEncode(...a), dec: (...a) => k.xbzrleDecode(...a) };
  });
  raws = BACKENDS.map((name): Be => {
    const memory = new WebAssembly.Memory({ initial: AREA / 65536 + 2 });
    const lm = new LinearMemory(memory, 65536);
    const r = name === "js" ? jsKernelFunctions(lm) : instantiateKernels(name === "wasm-simd" ? "simd" : "scalar", memory);
    return { name: `${name} (raw)`, base: lm.alloc(AREA), u8: () => lm.u8, enc: r.xbzrleEncode, dec: r.xbzrleDecode };
  });
});

// Layout inside each backend's area (offsets from base; `shift` values misalign the pointers).
const OLD_AT = 0;
const NEW_AT = 1 << 20;
const OUT_AT = 2 << 20;
const SRC_AT = 3 << 20;
const PAGE_AT = (3 << 20) + (512 << 10);

interface EncodeResult {
  ret: number;
  /** The output window [out - GUARD, out + limit + GUARD). */
  bytes: Uint8Array;
}

interface Shifts {
  old?: number;
  new?: number;
  out?: number;
}

function encodeOn(be: Be, oldP: Uint8Array, newP: Uint8Array, limit: number, s: Shifts = {}): EncodeResult {
  const { base } = be;
  const o = base + OLD_AT + (s.old ?? 0);
  const w = base + NEW_AT + (s.new ?? 0);
  const out = base + OUT_AT + GUARD + (s.out ?? 0);
  const win = Math.max(limit, 0) + GUARD;
  be.u8().set(oldP, o);
  be.u8().set(newP, w);
  be.u8().fill(SENTINEL, out - GUARD, out + win);
  const ret = be.enc(o, w, out, limit, oldP.length);
  return { ret, bytes: be.u8().slice(out - GUARD, out + win) };
}

function encodeReference(oldP: Uint8Array, newP: Uint8Array, limit: number): EncodeResult {
  const win = Math.max(limit, 0) + GUARD;
  const bytes = new Uint8Array(GUARD + win).fill(SENTINEL);
  const ret = encodeRef(oldP, newP, bytes.subarray(GUARD), limit);
  return { ret, bytes };
}

/** Encode on every backend; all must match the reference exactly. Returns the reference result. */
function encodeAll(oldP: Uint8Array, newP: Uint8Array, limit: number, s: Shifts = {}, on: Be[] = bes): EncodeResult {
  const ref = encodeReference(oldP, newP, limit);
  for (const be of on) {
    const r = encodeOn(be, oldP, newP, limit, s);
    if (r.ret !== ref.ret || !bytesEqual(r.bytes, ref.bytes)) {
      expect({ backend: be.name, ret: r.ret, bytes: toHex(r.bytes) }).toEqual({ backend: be.name, ret: ref.ret, bytes: toHex(ref.bytes) });
    }
  }
  return ref;
}

interface DecodeResult {
  ret: number;
  /** [page - GUARD, page + pageSize + GUARD) */
  bytes: Uint8Array;
}

function decodeAll(src: Uint8Array, page: Uint8Array, s: { src?: number; page?: number } = {}, on: Be[] = bes): DecodeResult {
  const guarded = new Uint8Array(page.length + 2 * GUARD).fill(SENTINEL);
  guarded.set(page, GUARD);
  const refPage = page.slice();
  const ret = decodeRef(src, refPage);
  guarded.set(refPage, GUARD);
  const ref = { ret, bytes: guarded };
  for (const be of on) {
    const { base } = be;
    const sp = base + SRC_AT + (s.src ?? 0);
    const pp = base + PAGE_AT + GUARD + (s.page ?? 0);
    const u8 = be.u8();
    u8.fill(SENTINEL, sp - GUARD, sp + src.length + GUARD);
    u8.set(src, sp);
    u8.fill(SENTINEL, pp - GUARD, pp + page.length + GUARD);
    u8.set(page, pp);
    const r = be.dec(sp, src.length, pp, page.length);
    const bytes = be.u8().slice(pp - GUARD, pp + page.length + GUARD);
    if (r !== ref.ret || !bytesEqual(bytes, ref.bytes)) {
      expect({ backend: be.name, ret: r, bytes: toHex(bytes) }).toEqual({ backend: be.name, ret: ref.ret, bytes: toHex(ref.bytes) });
    }
  }
  return ref;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Page sizes the public API accepts (powers of two, 64..65536); other sizes run on the raw kernels. */
function apiPageSize(P: number): boolean {
  return P >= 64 && P <= 65536 && (P & (P - 1)) === 0;
}
function backendsFor(P: number): Be[] {
  return apiPageSize(P) ? bes : raws;
}

/** The encoded bytes of a successful result. */
function encoded(r: EncodeResult): Uint8Array {
  return r.bytes.subarray(GUARD, GUARD + Math.max(r.ret, 0));
}

function randomPage(size: number, seed: number): Uint8Array {
  return new SeededRandom(seed).bytes(size);
}

/** A byte different from b (so a "changed" byte really differs). */
function other(b: number, r: number): number {
  return (b + 1 + (r % 255)) & 0xff;
}

// ---------------------------------------------------------------------------------------------

describe("xbzrle: QEMU 7.2 unit test cases (tests/unit/test-xbzrle.c)", () => {
  it("every ULEB value 0..0x3FFF as a zero run: exact bytes, decode back", () => {
    const P = 16384;
    const oldP = new Uint8Array(P);
    // One changed byte at offset v: zrun v, nzrun 1, the byte.
    for (const be of bes) {
      const { base } = be;
      const o = base + OLD_AT,
        w = base + NEW_AT,
        out = base + OUT_AT;
      const src = base + SRC_AT,
        page = base + PAGE_AT;
      be.u8().fill(0, o, o + P);
      be.u8().fill(0, w, w + P);
      be.u8().fill(0, page, page + P);
      for (let v = 0; v < P; v++) {
        const u8 = be.u8();
        u8[w + v] = 7;
        const n = be.enc(o, w, out, P, P);
        const want = [...ulebRef(v), 1, 7];
        if (n !== want.length || !want.every((b, i) => u8[out + i] === b)) {
          expect({ be: be.name, v, n, bytes: toHex(u8.slice(out, out + 4)) }).toEqual({ be: be.name, v, n: want.length, bytes: toHex(Uint8Array.from(want)) });
        }
        u8[w + v] = 0;
        // And decode exactly those bytes onto a zero page.
        u8.set(want, src);
        const r = be.dec(src, want.length, page, P);
        if (r !== v + 1 || u8[page + v] !== 7) expect({ be: be.name, v, r, byte: u8[page + v] }).toEqual({ be: be.name, v, r: v + 1, byte: 7 });
        u8[page + v] = 0;
      }
    }
    // The same bytes from the reference, for a few values.
    for (const v of [0, 1, 127, 128, 129, 255, 256, 0x3fff]) {
      const newP = new Uint8Array(P);
      newP[v] = 7;
      expect([...encoded(encodeAll(oldP, newP, P))]).toEqual([...ulebRef(v), 1, 7]);
    }
  });

  it("every ULEB value 1..0x3FFF as a changed-run length", () => {
    const P = 16384;
    for (const be of bes) {
      const { base } = be;
      const o = base + OLD_AT,
        w = base + NEW_AT,
        out = base + OUT_AT;
      be.u8().fill(0, o, o + P);
      be.u8().fill(0, w, w + P);
      for (let v = 1; v < P; v++) {
        const u8 = be.u8();
        u8[w + v - 1] = 3; // bytes [0, v) changed
        const n = be.enc(o, w, out, P + 4, P);
        const head = [0, ...ulebRef(v)];
        const ok = n === head.length + v && head.every((b, i) => u8[out + i] === b) && u8[out + head.length] === 3 && u8[out + n - 1] === 3;
        if (!ok)
          expect({ be: be.name, v, n, head: toHex(u8.slice(out, out + 3)) }).toEqual({
            be: be.name,
            v,
            n: head.length + v,
            head: toHex(Uint8Array.from(head)),
          });
      }
    }
  });

  it("80 80 is a bad ULEB (as the zero run and as the changed-run length); 80 00 decodes as 0", () => {
    const page = randomPage(4096, 1);
    expect(decodeAll(Uint8Array.of(0x80, 0x80), page).ret).toBe(XBZRLE_ERR.BAD_ULEB);
    expect(decodeAll(Uint8Array.of(0x80, 0x80, 0x01, 0x55), page).ret).toBe(XBZRLE_ERR.BAD_ULEB);
    expect(decodeAll(Uint8Array.of(0x05, 0x80, 0x80, 0x55), page).ret).toBe(XBZRLE_ERR.BAD_ULEB);
    expect(decodeAll(Uint8Array.of(0xff, 0xff, 0x01, 0x55), page).ret).toBe(XBZRLE_ERR.BAD_ULEB);
    // Non-canonical zero run "80 00" = 0 at the first position: accepted.
    const r = decodeAll(Uint8Array.of(0x80, 0x00, 0x01, 0x55), page);
    expect(r.ret).toBe(1);
    expect(r.bytes[GUARD]).toBe(0x55);
    // Non-canonical 2-byte forms of non-zero values too ("85 00" = 5).
    expect(decodeAll(Uint8Array.of(0x85, 0x00, 0x81, 0x00, 0x66), page).ret).toBe(6);
  });

  it("a page against itself (non-zero content) encodes to 0; so does an equal copy", () => {
    for (const P of [4096, 16384]) {
      const p = randomPage(P, 2);
      p.fill(0, 100, 300);
      expect(encodeAll(p, p, P).ret).toBe(0);
      expect(encodeAll(p, p.slice(), P).ret).toBe(0);
      const q = new Uint8Array(P).fill(0x5a);
      expect(encodeAll(q, q.slice(), P).ret).toBe(0);
    }
  });

  it("zero page vs last byte = 1 -> ff 1f 01 01, decode returns 4096", () => {
    const oldP = new Uint8Array(4096);
    const newP = new Uint8Array(4096);
    newP[4095] = 1;
    const r = encodeAll(oldP, newP, 4096);
    expect(r.ret).toBe(4);
    expect([...encoded(r)]).toEqual([0xff, 0x1f, 0x01, 0x01]);
    const d = decodeAll(encoded(r), oldP);
    expect(d.ret).toBe(4096);
    expect(bytesEqual(d.bytes.subarray(GUARD, GUARD + 4096), newP)).toBe(true);
  });

  it("every even byte changed -> overflow (-1)", () => {
    const oldP = new Uint8Array(4096);
    const newP = new Uint8Array(4096);
    for (let i = 0; i < 4096; i += 2) newP[i] = 1;
    expect(encodeAll(oldP, newP, 4096).ret).toBe(-1);
  });

  it("random trials: a changed run at 1001 plus two isolated bytes round-trip, decode < 4096", () => {
    const r = new SeededRandom(0x1234567);
    for (let t = 0; t < 3000; t++) {
      const oldP = new Uint8Array(4096);
      const newP = new Uint8Array(4096);
      if (t & 1) {
        for (let i = 0; i < 4096; i++) oldP[i] = newP[i] = r.byte();
      }
      const diffLen = 1 + (r.u32() % (4096 - 1006));
      for (let i = 1001; i < 1001 + diffLen; i++) newP[i] = other(oldP[i]!, r.u32());
      const a = 1001 + diffLen + 1 + (r.u32() % (4094 - (1001 + diffLen)));
      newP[a] = other(oldP[a]!, r.u32());
      const b = r.u32() % 1000;
      newP[b] = other(oldP[b]!, r.u32());
      const e = encodeAll(oldP, newP, 4096);
      expect(e.ret).toBeGreaterThan(0);
      const d = decodeAll(encoded(e), oldP);
      expect(d.ret).toBeGreaterThan(0);
      expect(d.ret).toBeLessThan(4096);
      expect(bytesEqual(d.bytes.subarray(GUARD, GUARD + 4096), newP)).toBe(true);
    }
  });
});

describe("xbzrle: run lengths", () => {
  const P = 16384;
  it.each([1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 4096, 16383])("changed run of %i bytes at several offsets", (len) => {
    const oldP = randomPage(P, len);
    for (const at of [0, 1, 5, 8, 13, 16, 31, 64, 1000, P - len - 1, P - len]) {
      if (at < 0 || at + len > P) continue;
      const newP = oldP.slice();
      for (let i = at; i < at + len; i++) newP[i] = other(oldP[i]!, i);
      const e = encodeAll(oldP, newP, P + 8);
      expect(e.ret).toBe((at > 0 ? ulebRef(at).length : 1) + ulebRef(len).length + len);
      const d = decodeAll(encoded(e), oldP);
      expect(d.ret).toBe(at + len);
      expect(bytesEqual(d.bytes.subarray(GUARD, GUARD + P), newP)).toBe(true);
    }
  });

  it("a run of 0x4000 cannot occur with 16 KiB pages; longer runs give -1", () => {
    // With pageSize 16384, a 16384-byte equal run is the whole page (result 0), and a 16384-byte
    // changed run is the whole page too: 1 + 2 + 16384 bytes > any limit <= pageSize (QEMU's
    // only limit), so the data test overflows first. Only a limit > pageSize reaches the
    // length, which the small ULEB cannot hold: the kernels return -1 instead of asserting.
    const oldP = randomPage(P, 9);
    const newP = oldP.map((b) => b ^ 0xff);
    expect(encodeAll(oldP, newP, P).ret).toBe(-1);
    expect(encodeAll(oldP, newP, P + 3).ret).toBe(-1);
    // 16383 changed bytes (all but the first): 1 + 2 + 16383 with a limit above the page size.
    const partial = newP.slice();
    partial[0] = oldP[0]!;
    const e = encodeAll(oldP, partial, P + 3);
    expect(e.ret).toBe(1 + 2 + 16383);
    // 32 KiB pages: a zero run of 0x4000 (or more) and a changed run of 0x4000 are unencodable.
    const P2 = 32768;
    const o2 = randomPage(P2, 10);
    const n2 = o2.slice();
    n2[0x4000] ^= 1;
    expect(encodeAll(o2, n2, P2).ret).toBe(-1);
    const n3 = o2.slice();
    n3[0x3fff] ^= 1;
    expect(encodeAll(o2, n3, P2).ret).toBe(4);
    const n4 = o2.slice();
    for (let i = 0; i < 0x4000; i++) n4[i] ^= 0x40;
    expect(encodeAll(o2, n4, P2 + 100).ret).toBe(-1);
    n4[0x3fff] = o2[0x3fff]!;
    expect(encodeAll(o2, n4, P2 + 100).ret).toBe(1 + 2 + 0x3fff);
  });
});

describe("xbzrle: pages with many runs (the encoders switch to a block-mask loop after some runs)", () => {
  // Sizes that are not powers of two are not API page sizes; the raw kernels handle them (partial
  // last blocks) and run them here for the tail code.
  it.each([64, 65, 100, 127, 1000, 4095, 4096, 4100, 16384])("page size %i, change probabilities 0.05..0.95, aligned and not", (P) => {
    const on = apiPageSize(P) ? [...bes, ...raws] : raws;
    const r = new SeededRandom(P);
    for (const p of [0.05, 0.3, 0.5, 0.7, 0.95]) {
      for (const shifts of [{}, { old: 4, new: 4, out: 1 }, { old: 1, new: 3, out: 2 }, { old: 2, new: 2 }]) {
        const oldP = randomPage(P, r.u32());
        const newP = oldP.slice();
        for (let i = 0; i < P; i++) if (r.float() < p) newP[i] = other(oldP[i]!, r.u32());
        for (const limit of [P, 3 * P]) {
          const e = encodeAll(oldP, newP, limit, shifts, on);
          if (limit === 3 * P) {
            expect(e.ret).toBeGreaterThan(0);
            const d = decodeAll(encoded(e), oldP, { src: shifts.out, page: shifts.new }, on);
            expect(bytesEqual(d.bytes.subarray(GUARD, GUARD + P), newP)).toBe(true);
          }
        }
      }
    }
  });

  it("every byte pattern of an 8-byte word (the has-zero-byte and gather tricks)", () => {
    // All 256 diff masks over bytes 0..7, at word-aligned and odd offsets, several words.
    const P = 256;
    const oldP = randomPage(P, 3);
    for (let mask = 0; mask < 256; mask++) {
      const newP = oldP.slice();
      for (const base of [0, 64, 123, 248]) for (let k = 0; k < 8; k++) if (mask & (1 << k)) newP[base + k] = other(oldP[base + k]!, mask + k);
      // Many runs before them so the block-mask loop is active too.
      for (let i = 8; i < 60; i += 3) newP[i] = other(oldP[i]!, i);
      encodeAll(oldP, newP, 2 * P);
    }
  });
});

describe("xbzrle: the limit", () => {
  function pagesWith(changes: Array<[number, number]>, P = 4096): [Uint8Array, Uint8Array] {
    const oldP = randomPage(P, 77);
    const newP = oldP.slice();
    for (const [at, len] of changes) for (let i = at; i < at + len; i++) newP[i] = other(oldP[i]!, i);
    return [oldP, newP];
  }

  it("with a trailing equal run, the loop's d + 2 test needs limit >= L + 2", () => {
    const [o, n] = pagesWith([
      [10, 5],
      [300, 40],
      [1000, 200],
    ]);
    const L = encodeAll(o, n, 4096).ret;
    expect(L).toBe(1 + 1 + 5 + 2 + 1 + 40 + 2 + 2 + 200);
    expect(encodeAll(o, n, L - 1).ret).toBe(-1);
    expect(encodeAll(o, n, L).ret).toBe(-1);
    expect(encodeAll(o, n, L + 1).ret).toBe(-1);
    expect(encodeAll(o, n, L + 2).ret).toBe(L);
  });

  it("with the last byte changed, limit = L is accepted", () => {
    const [o, n] = pagesWith([
      [10, 5],
      [4000, 96],
    ]);
    const L = encodeAll(o, n, 4096).ret;
    expect(L).toBe(1 + 1 + 5 + 2 + 1 + 96);
    expect(encodeAll(o, n, L - 1).ret).toBe(-1);
    expect(encodeAll(o, n, L).ret).toBe(L);
    expect(encodeAll(o, n, L + 1).ret).toBe(L);
  });

  it("each of the three tests decides at its boundary", () => {
    // Zero-run length test: the encoding so far is d; the next pair needs d + 2 <= limit.
    // Changed-run length test: after the zero-run length, d + 2 <= limit again.
    // Data test: after both lengths, d + n <= limit.
    const cases: Array<Array<[number, number]>> = [
      [[0, 1]],
      [
        [0, 3],
        [4095, 1],
      ],
      [
        [200, 1],
        [202, 1],
        [204, 1],
      ],
      [
        [5, 127],
        [1000, 128],
        [3000, 1],
      ],
      [
        [130, 2],
        [4094, 2],
      ],
    ];
    for (const c of cases) {
      const [o, n] = pagesWith(c);
      const full = encodeAll(o, n, 8192).ret;
      // The API refuses negative limits; the raw kernels treat them like 0 and 1 (overflow).
      for (let limit = -2; limit <= full + 3; limit++) encodeAll(o, n, limit, {}, limit < 0 ? raws : bes);
    }
  });

  it("small limits never write at or past outPtr + limit (sentinels)", () => {
    const o = randomPage(4096, 5);
    const patterns = [
      (p: Uint8Array) => {
        for (let i = 0; i < 4096; i += 2) p[i] ^= 1;
      },
      (p: Uint8Array) => {
        for (let i = 0; i < 4096; i++) p[i] ^= 0x10;
      },
      (p: Uint8Array) => {
        for (let i = 500; i < 900; i++) p[i] ^= 0x10;
      },
      (p: Uint8Array) => {
        p[4095] ^= 1;
      },
      (p: Uint8Array) => {
        p[0] ^= 1;
        p[200] ^= 1;
        for (let i = 300; i < 340; i++) p[i] ^= 3;
      },
    ];
    for (const f of patterns) {
      const n = o.slice();
      f(n);
      for (let limit = 0; limit <= 80; limit++) {
        const r = encodeAll(o, n, limit);
        expect(r.bytes.subarray(GUARD + limit).every((b) => b === SENTINEL)).toBe(true);
        expect(r.bytes.subarray(0, GUARD).every((b) => b === SENTINEL)).toBe(true);
        if (r.ret > 0) expect(r.bytes.subarray(GUARD + r.ret).every((b) => b === SENTINEL)).toBe(true);
      }
    }
  });

  it("limit < 2 overflows even for equal pages (the first d + 2 test comes before the scan)", () => {
    const p = randomPage(4096, 6);
    expect(encodeAll(p, p, 0).ret).toBe(-1);
    expect(encodeAll(p, p, 1).ret).toBe(-1);
    expect(encodeAll(p, p, 2).ret).toBe(0);
  });
});

describe("xbzrle: malformed decoder input", () => {
  const P = 4096;
  const page = randomPage(P, 11);
  const cases: Array<[string, number[], number]> = [
    ["empty", [], 0],
    ["one byte", [0x05], XBZRLE_ERR.TRUNCATED],
    ["zero run only", [0x05, 0x01], XBZRLE_ERR.TRUNCATED],
    ["two-byte zero run, nothing else", [0x85, 0x01], XBZRLE_ERR.TRUNCATED],
    ["changed-run length longer than the data", [0x05, 0x02, 0xaa], XBZRLE_ERR.TRUNCATED],
    ["data cut short", [0x00, 0x04, 1, 2, 3], XBZRLE_ERR.TRUNCATED],
    ["second pair cut after zero run", [0x00, 0x01, 0xaa, 0x05], XBZRLE_ERR.TRUNCATED],
    ["second pair: zero run + 1 byte", [0x00, 0x01, 0xaa, 0x05, 0x01], XBZRLE_ERR.TRUNCATED],
    ["zero-length zero run in second pair", [0x00, 0x01, 0xaa, 0x00, 0x01, 0xbb], XBZRLE_ERR.ZERO_RUN],
    ["non-canonical zero-length zero run in second pair", [0x00, 0x01, 0xaa, 0x80, 0x00, 0x01, 0xbb], XBZRLE_ERR.ZERO_RUN],
    ["zero-length changed run", [0x05, 0x00, 0xaa], XBZRLE_ERR.ZERO_RUN],
    ["non-canonical zero-length changed run", [0x05, 0x80, 0x00, 0xaa], XBZRLE_ERR.ZERO_RUN],
    ["zero run past the page", [0xff, 0x7f, 0x01, 0xaa], XBZRLE_ERR.PAST_PAGE],
    ["zero run to the page end, then a changed byte", [0x80, 0x20, 0x01, 0xaa], XBZRLE_ERR.PAST_PAGE],
    ["changed run past the page", [0xff, 0x1f, 0x02, 0xaa, 0xbb], XBZRLE_ERR.PAST_PAGE],
    ["changed run past the page and past the input (page test first)", [0xff, 0x1f, 0x05, 0xaa], XBZRLE_ERR.PAST_PAGE],
    ["second pair past the page", [0x00, 0x01, 0xaa, 0xff, 0x1f, 0x01, 0xbb], XBZRLE_ERR.PAST_PAGE],
    ["bad ULEB in changed-run length", [0x05, 0x81, 0x80, 0xaa], XBZRLE_ERR.BAD_ULEB],
    ["good pair then truncated", [0x03, 0x02, 0xaa, 0xbb, 0x01], XBZRLE_ERR.TRUNCATED],
    ["last byte of the page", [0xff, 0x1f, 0x01, 0xaa], 4096],
    ["two pairs", [0x03, 0x02, 0xaa, 0xbb, 0x01, 0x01, 0xcc], 7],
  ];
  it.each(cases)("%s", (_name, bytes, want) => {
    const d = decodeAll(Uint8Array.from(bytes), page);
    expect(d.ret).toBe(want);
    if (want < 0) expect(bytesEqual(d.bytes.subarray(GUARD, GUARD + P), page)).toBe(true);
    expect(d.bytes.subarray(0, GUARD).every((b) => b === SENTINEL)).toBe(true);
    expect(d.bytes.subarray(GUARD + P).every((b) => b === SENTINEL)).toBe(true);
  });

  it("a valid prefix followed by an error leaves the page untouched", () => {
    const src = [0x00, 0x40, ...new Array(0x40).fill(0x11), 0x10, 0x20, ...new Array(0x20).fill(0x22), 0x00, 0x01, 0x33];
    const d = decodeAll(Uint8Array.from(src), page);
    expect(d.ret).toBe(XBZRLE_ERR.ZERO_RUN);
    expect(bytesEqual(d.bytes.subarray(GUARD, GUARD + P), page)).toBe(true);
  });

  it("long runs (memory.copy path) and runs at the very end of page and input, misaligned", () => {
    for (const len of [1, 15, 16, 17, 255, 256, 257, 300, 1000]) {
      for (const ps of [0, 1, 3]) {
        const src = [...ulebRef(P - len), ...ulebRef(len), ...randomPage(len, len)];
        const d = decodeAll(Uint8Array.from(src), page, { src: ps, page: 3 - ps });
        expect(d.ret).toBe(P);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

type Pattern =
  | { kind: "words"; count: number }
  | { kind: "clusters"; count: number; len: number }
  | { kind: "random"; p: number }
  | { kind: "tail"; len: number };

const patternArb: fc.Arbitrary<Pattern> = fc.oneof(
  fc.record({ kind: fc.constant("words" as const), count: fc.integer({ min: 0, max: 12 }) }),
  fc.record({ kind: fc.constant("clusters" as const), count: fc.integer({ min: 1, max: 10 }), len: fc.integer({ min: 1, max: 300 }) }),
  fc.record({ kind: fc.constant("random" as const), p: fc.constantFrom(0.01, 0.1, 0.5, 0.9, 1) }),
  fc.record({ kind: fc.constant("tail" as const), len: fc.integer({ min: 1, max: 40 }) }),
);

function makeNew(oldP: Uint8Array, pat: Pattern, seed: number): Uint8Array {
  const r = new SeededRandom(seed);
  const P = oldP.length;
  const n = oldP.slice();
  const change = (i: number) => {
    if (i >= 0 && i < P) n[i] = other(oldP[i]!, r.u32());
  };
  switch (pat.kind) {
    case "words":
      for (let c = 0; c < pat.count; c++) {
        const at = (r.u32() % Math.max(1, P >> 3)) << 3;
        for (let i = at; i < at + 8; i++) if (r.u32() & 7) change(i);
      }
      break;
    case "clusters":
      for (let c = 0; c < pat.count; c++) {
        const at = r.u32() % P;
        for (let i = at; i < at + pat.len; i++) if (r.u32() % 16) change(i);
      }
      break;
    case "random":
      for (let i = 0; i < P; i++) if (r.float() < pat.p) change(i);
      break;
    case "tail":
      for (let i = P - pat.len; i < P; i++) change(i);
      break;
  }
  return n;
}

describe("xbzrle: properties", () => {
  const pageSizeArb = fc.oneof(
    fc.constantFrom(4096, 4096, 4096, 64, 128, 256, 1024, 8192, 16384),
    fc.integer({ min: 0, max: 300 }), // raw kernels only (not API page sizes)
  );

  it("decode(encode(old, new)) on old == new, every backend identical to the reference", () => {
    fc.assert(
      fc.property(
        pageSizeArb,
        patternArb,
        fc.integer(),
        fc.integer(),
        fc.record({ old: fc.integer({ min: 0, max: 15 }), new: fc.integer({ min: 0, max: 15 }), out: fc.integer({ min: 0, max: 15 }) }),
        fc.constantFrom("page", "page+16", "half", "small"),
        (P, pat, s1, s2, shifts, limitKind) => {
          const oldP = randomPage(P, s1);
          const newP = makeNew(oldP, pat, s2);
          const limit = limitKind === "page" ? P : limitKind === "page+16" ? P + 16 : limitKind === "half" ? P >> 1 : s2 & 63;
          const e = encodeAll(oldP, newP, limit, shifts, backendsFor(P));
          if (e.ret > 0) {
            const d = decodeAll(encoded(e), oldP, { src: shifts.out, page: shifts.old }, backendsFor(P));
            expect(d.ret).toBeGreaterThan(0);
            expect(bytesEqual(d.bytes.subarray(GUARD, GUARD + P), newP)).toBe(true);
          } else if (e.ret === 0) {
            expect(bytesEqual(oldP, newP)).toBe(true);
          }
        },
      ),
      { numRuns: 600 },
    );
  });

  it("decoding arbitrary bytes: every backend identical to the reference, page untouched on error", () => {
    const tokenArb = fc.oneof(
      fc.integer({ min: 0, max: 255 }).map((b) => [b]),
      fc.integer({ min: 0, max: 0x3fff }).map((v) => ulebRef(v)),
      fc.integer({ min: 1, max: 40 }).map((v) => [v, ...new Array<number>(v).fill(0x5c)]),
    );
    fc.assert(
      fc.property(fc.constantFrom(4096, 64, 128, 100, 17), fc.array(tokenArb, { maxLength: 24 }), fc.integer({ min: 0, max: 7 }), (P, tokens, shift) => {
        const src = Uint8Array.from(tokens.flat());
        const page = randomPage(P, src.length + P);
        const d = decodeAll(src, page, { src: shift, page: 7 - shift }, backendsFor(P));
        if (d.ret < 0) expect(bytesEqual(d.bytes.subarray(GUARD, GUARD + P), page)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
