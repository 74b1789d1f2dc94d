// Differential tests of zeroPages / changedPages: every backend (wasm-simd, wasm-scalar, js with
// Buffer, js without Buffer) against a plain reference written here, on the same inputs.

import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type BackendName, createKernels, type Kernels, simdSupported } from "../../src/kernels/index.js";
import { SeededRandom } from "../helpers/random.js";

type PagesModule = typeof import("../../src/kernels/js/pages.js");

interface Runner {
  name: string;
  k: Kernels;
  zeroPages(ptr: number, n: number, bm: number, pageSize: number): number;
  changedPages(ptr: number, shadow: number, n: number, bm: number, refresh: boolean, pageSize: number): number;
}

const runners: Runner[] = [];

beforeAll(async () => {
  const names: BackendName[] = simdSupported() ? ["wasm-simd", "wasm-scalar", "js"] : ["wasm-scalar", "js"];
  for (const name of names) {
    const k = createKernels({ backend: name });
    runners.push({
      name,
      k,
      zeroPages: (ptr, n, bm, ps) => k.zeroPages(ptr, n, bm, ps),
      changedPages: (ptr, sh, n, bm, r, ps) => k.changedPages(ptr, sh, n, bm, r, ps),
    });
  }
  // The browser path of the pure-TS twin: load a fresh copy of the module with no global Buffer.
  vi.stubGlobal("Buffer", undefined);
  let fallback: PagesModule;
  try {
    vi.resetModules();
    fallback = await import("../../src/kernels/js/pages.js");
  } finally {
    vi.unstubAllGlobals();
  }
  expect(globalThis.Buffer).toBeTypeOf("function");
  const k = createKernels({ backend: "js" });
  runners.push({
    name: "js-no-Buffer",
    k,
    zeroPages: (ptr, n, bm, ps) => fallback.zeroPages(k.u8, ptr, n, bm, ps),
    changedPages: (ptr, sh, n, bm, r, ps) => fallback.changedPages(k.u8, ptr, sh, n, bm, r, ps),
  });
});

afterAll(() => {
  runners.length = 0;
});

// ---------------------------------------------------------------------------------------------
// Reference

function refZero(data: Uint8Array, n: number, ps: number): { bits: Uint8Array; count: number } {
  const bits = new Uint8Array(Math.ceil(n / 8));
  let count = 0;
  for (let i = 0; i < n; i++) {
    let zero = true;
    for (let j = 0; j < ps; j++) if (data[i * ps + j] !== 0) zero = false;
    if (zero) {
      bits[i >> 3]! |= 1 << (i & 7);
      count++;
    }
  }
  return { bits, count };
}

function refChanged(ram: Uint8Array, shadow: Uint8Array, n: number, ps: number): { bits: Uint8Array; count: number } {
  const bits = new Uint8Array(Math.ceil(n / 8));
  let count = 0;
  for (let i = 0; i < n; i++) {
    let same = true;
    for (let j = 0; j < ps; j++) if (ram[i * ps + j] !== shadow[i * ps + j]) same = false;
    if (!same) {
      bits[i >> 3]! |= 1 << (i & 7);
      count++;
    }
  }
  return { bits, count };
}

// ---------------------------------------------------------------------------------------------
// Running one input on one backend

/** Index of the first differing byte, or -1 (toEqual on MiB-sized typed arrays is far too slow). */
function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

const SENTINEL = 0xa5;
const GUARD = 16;

/** Bitmap region with sentinel bytes before and after; returns the bitmap pointer. */
function allocBitmap(k: Kernels, n: number): { bm: number; base: number; len: number } {
  const len = Math.ceil(n / 8);
  const base = k.alloc(len + 2 * GUARD, 64);
  k.u8.fill(SENTINEL, base, base + len + 2 * GUARD);
  return { bm: base + GUARD, base, len };
}

function readBitmap(k: Kernels, b: { bm: number; base: number; len: number }): Uint8Array {
  const u8 = k.u8;
  for (let i = 0; i < GUARD; i++) {
    expect(u8[b.base + i], "byte before the bitmap").toBe(SENTINEL);
    expect(u8[b.bm + b.len + i], "byte past ceil(n/8)").toBe(SENTINEL);
  }
  return u8.slice(b.bm, b.bm + b.len);
}

function runZero(r: Runner, data: Uint8Array, n: number, ps: number, misalign: number): { bits: Uint8Array; count: number } {
  const k = r.k;
  const base = k.alloc(n * ps + misalign + 64);
  const ptr = base + misalign;
  const b = allocBitmap(k, n);
  k.u8.set(data, ptr);
  const count = r.zeroPages(ptr, n, b.bm, ps);
  const bits = readBitmap(k, b);
  expect(firstDiff(k.u8.subarray(ptr, ptr + data.length), data), `${r.name}: zeroPages must not write page data`).toBe(-1);
  k.free(b.base);
  k.free(base);
  return { bits, count };
}

function checkZero(data: Uint8Array, n: number, ps: number, misalign = 0): void {
  const want = refZero(data, n, ps);
  for (const r of runners) {
    const got = runZero(r, data, n, ps, misalign);
    expect(got.bits, `${r.name} bitmap (n=${n}, ps=${ps}, misalign=${misalign})`).toEqual(want.bits);
    expect(got.count, `${r.name} count`).toBe(want.count);
  }
}

function checkChanged(ram: Uint8Array, shadow: Uint8Array, n: number, ps: number, misalignRam = 0, misalignShadow = 0): void {
  const want = refChanged(ram, shadow, n, ps);
  for (const r of runners) {
    const k = r.k;
    const len = n * ps;
    const rbase = k.alloc(len + misalignRam + 64);
    const sbase = k.alloc(len + misalignShadow + 64);
    const ptr = rbase + misalignRam;
    const sh = sbase + misalignShadow;
    // Sentinels around both regions: a page copy must stay inside the shadow page.
    k.u8.fill(SENTINEL, sbase, sbase + len + misalignShadow + 64);
    k.u8.set(ram, ptr);
    k.u8.set(shadow, sh);
    for (const refresh of [false, true]) {
      const b = allocBitmap(k, n);
      const count = r.changedPages(ptr, sh, n, b.bm, refresh, ps);
      const bits = readBitmap(k, b);
      const tag = `${r.name} (refresh=${refresh}, n=${n}, ps=${ps}, misalign=${misalignRam}/${misalignShadow})`;
      expect(bits, `${tag} bitmap`).toEqual(want.bits);
      expect(count, `${tag} count`).toBe(want.count);
      const u8 = k.u8;
      expect(firstDiff(u8.subarray(ptr, ptr + len), ram), `${tag}: RAM untouched`).toBe(-1);
      expect(firstDiff(u8.subarray(sh, sh + len), refresh ? ram : shadow), `${tag}: shadow`).toBe(-1);
      for (let i = sbase; i < sh; i++) expect(u8[i], `${tag}: byte before the shadow`).toBe(SENTINEL);
      for (let i = sh + len; i < sh + len + 64; i++) expect(u8[i], `${tag}: byte after the shadow`).toBe(SENTINEL);
      k.free(b.base);
    }
    // After the refresh the shadow equals RAM: nothing changed, every bit clear.
    const b = allocBitmap(k, n);
    expect(r.changedPages(ptr, sh, n, b.bm, true, ps), `${r.name}: nothing changed after refresh`).toBe(0);
    expect(readBitmap(k, b)).toEqual(new Uint8Array(Math.ceil(n / 8)));
    k.free(b.base);
    k.free(sbase);
    k.free(rbase);
  }
}

// ---------------------------------------------------------------------------------------------
// Inputs

type PageKind =
  | { t: "zero" }
  | { t: "one"; at: number; v: number } // zero but one byte; `at` is a fraction of the page
  | { t: "random"; seed: number }
  | { t: "first" }
  | { t: "last" }
  | { t: "word"; at: number }; // zero but one u64 at a random 8-byte-aligned position

const pageKind: fc.Arbitrary<PageKind> = fc.oneof(
  { weight: 4, arbitrary: fc.constant<PageKind>({ t: "zero" }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant("one" as const),
      at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      v: fc.integer({ min: 1, max: 255 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("random" as const), seed: fc.integer() }) },
  { weight: 1, arbitrary: fc.constant<PageKind>({ t: "first" }) },
  { weight: 1, arbitrary: fc.constant<PageKind>({ t: "last" }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("word" as const), at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }) }) },
);

function fillPage(out: Uint8Array, off: number, ps: number, kind: PageKind): void {
  switch (kind.t) {
    case "zero":
      break;
    case "one":
      out[off + Math.floor(kind.at * ps)] = kind.v;
      break;
    case "random": {
      new SeededRandom(kind.seed).fill(out.subarray(off, off + ps));
      break;
    }
    case "first":
      out[off] = 0x80;
      break;
    case "last":
      out[off + ps - 1] = 0x01;
      break;
    case "word": {
      const at = Math.floor(kind.at * (ps / 8)) * 8;
      // 0x8000000000000000: the -0.0 bit pattern (a Float64 compare would call it zero).
      out[off + at + 7] = 0x80;
      break;
    }
  }
}

function buildPages(kinds: PageKind[], ps: number): Uint8Array {
  const out = new Uint8Array(kinds.length * ps);
  kinds.forEach((kind, i) => fillPage(out, i * ps, ps, kind));
  return out;
}

const pageSizeArb = fc.constantFrom(64, 128, 256, 4096, 8192);

// ---------------------------------------------------------------------------------------------

describe("zeroPages", () => {
  it("has every backend under test", () => {
    expect(runners.map((r) => r.name)).toContain("js-no-Buffer");
    expect(runners.length).toBeGreaterThanOrEqual(3);
  });

  it("n = 0 writes nothing and returns 0", () => {
    checkZero(new Uint8Array(0), 0, 4096);
  });

  it("matches the reference on random page mixes (any n, page size, misalignment)", () => {
    fc.assert(
      fc.property(pageSizeArb, fc.array(pageKind, { minLength: 0, maxLength: 40 }), fc.integer({ min: 0, max: 63 }), (ps, kinds, misalign) => {
        checkZero(buildPages(kinds, ps), kinds.length, ps, misalign);
      }),
      { numRuns: 120 },
    );
  });

  it("all-zero pages, every n from 1 to 70 (bits past n stay 0)", () => {
    for (const ps of [64, 4096]) {
      for (let n = 1; n <= 70; n++) checkZero(new Uint8Array(n * ps), n, ps, n & 15);
    }
  });

  it("all-non-zero pages, every n from 1 to 20", () => {
    for (let n = 1; n <= 20; n++) checkZero(new Uint8Array(n * 64).fill(0xff), n, 64, 3);
  });

  for (const ps of [64, 4096, 8192]) {
    it(`one non-zero byte at every 16-byte boundary and the byte before it (ps=${ps})`, () => {
      // Page 2i has a byte at 16i, page 2i+1 a byte at 16i+15, with zero pages around them.
      const per = ps / 16;
      const n = 2 * per + 3;
      for (const misalign of [0, 1, 8, 15]) {
        const data = new Uint8Array(n * ps);
        for (let i = 0; i < per; i++) {
          data[(2 * i + 1) * ps + 16 * i] = 1 << (i & 7);
          data[(2 * i + 2) * ps + 16 * i + 15] = 0x80;
        }
        checkZero(data, n, ps, misalign);
      }
    });

    it(`first byte, last byte, and the -0.0 word (ps=${ps})`, () => {
      const kinds: PageKind[] = [
        { t: "first" },
        { t: "zero" },
        { t: "last" },
        { t: "word", at: 0 },
        { t: "word", at: 0.999 },
        { t: "zero" },
        { t: "zero" },
        { t: "zero" },
        { t: "first" },
        { t: "zero" },
        { t: "last" },
      ];
      checkZero(buildPages(kinds, ps), kinds.length, ps, 0);
      checkZero(buildPages(kinds, ps), kinds.length, ps, 5);
    });
  }
});

describe("changedPages", () => {
  const change: fc.Arbitrary<PageKind | null> = fc.oneof(
    { weight: 3, arbitrary: fc.constant(null) }, // page unchanged
    { weight: 3, arbitrary: pageKind },
  );

  it("n = 0 writes nothing and returns 0", () => {
    checkChanged(new Uint8Array(0), new Uint8Array(0), 0, 4096);
  });

  it("matches the reference with and without refresh (random pages, misaligned ranges)", () => {
    fc.assert(
      fc.property(
        pageSizeArb,
        fc.array(fc.tuple(fc.integer(), change), { minLength: 0, maxLength: 30 }),
        fc.integer({ min: 0, max: 31 }),
        fc.integer({ min: 0, max: 31 }),
        (ps, pages, ma, ms) => {
          const n = pages.length;
          const shadow = new Uint8Array(n * ps);
          pages.forEach(([seed], i) => {
            // Mostly random shadows, some zero ones.
            if (seed % 4 !== 0) fillPage(shadow, i * ps, ps, { t: "random", seed });
          });
          const ram = shadow.slice();
          pages.forEach(([, kind], i) => {
            if (!kind) return;
            if (kind.t === "zero") ram.fill(0, i * ps, (i + 1) * ps);
            else if (kind.t === "random") fillPage(ram, i * ps, ps, kind);
            else {
              // Flip exactly the bytes the kind marks, so the page really differs.
              const mark = new Uint8Array(ps);
              fillPage(mark, 0, ps, kind);
              for (let j = 0; j < ps; j++) ram[i * ps + j]! ^= mark[j]!;
            }
          });
          checkChanged(ram, shadow, n, ps, ma, ms);
        },
      ),
      { numRuns: 100 },
    );
  });

  for (const ps of [64, 4096, 8192]) {
    it(`one differing byte at every 16-byte boundary and the byte before it (ps=${ps})`, () => {
      const per = ps / 16;
      const n = 2 * per + 1;
      const shadow = new Uint8Array(n * ps);
      fillPage(shadow, 0, n * ps, { t: "random", seed: ps });
      const ram = shadow.slice();
      for (let i = 0; i < per; i++) {
        ram[2 * i * ps + 16 * i]! ^= 0x80;
        ram[(2 * i + 1) * ps + 16 * i + 15]! ^= 1;
      }
      checkChanged(ram, shadow, n, ps, 0, 0);
      checkChanged(ram, shadow, n, ps, 7, 7);
      checkChanged(ram, shadow, n, ps, 1, 6);
    });
  }

  it("every n from 1 to 20, all pages changed (bits past n stay 0)", () => {
    for (let n = 1; n <= 20; n++) {
      const shadow = new Uint8Array(n * 64);
      const ram = new Uint8Array(n * 64).fill(1);
      checkChanged(ram, shadow, n, 64, n & 3, 0);
    }
  });
});

describe("isZeroPage (pure TS, used by js/ram.ts)", () => {
  it("agrees with zeroPages, with and without Buffer", async () => {
    const withBuffer = await import("../../src/kernels/js/pages.js");
    const k = createKernels({ backend: "js" });
    const ps = 4096;
    const base = k.alloc(4 * ps + 64);
    for (const misalign of [0, 3]) {
      const p = base + misalign;
      k.u8.fill(0, base, base + 4 * ps + 64);
      expect(withBuffer.isZeroPage(k.u8, p, ps)).toBe(true);
      k.u8[p + ps] = 1; // first byte past the page: still zero
      expect(withBuffer.isZeroPage(k.u8, p, ps)).toBe(true);
      for (const at of [0, 1, 15, 16, 2047, ps - 4, ps - 1]) {
        k.u8[p + at] = 0x80;
        expect(withBuffer.isZeroPage(k.u8, p, ps), `byte at ${at}`).toBe(false);
        k.u8[p + at] = 0;
      }
    }
    k.free(base);
  });

  it("follows memory.grow (a fresh u8 after growth)", async () => {
    const pages = await import("../../src/kernels/js/pages.js");
    const k = createKernels({ backend: "js" });
    const a = k.alloc(4096);
    k.u8.fill(0, a, a + 4096);
    expect(pages.isZeroPage(k.u8, a, 4096)).toBe(true);
    const before = k.memory.buffer.byteLength;
    const big = k.alloc(before + (1 << 20)); // forces a grow
    expect(k.memory.buffer.byteLength).toBeGreaterThan(before);
    k.u8[a + 10] = 1;
    expect(pages.isZeroPage(k.u8, a, 4096)).toBe(false);
    const bm = k.alloc(8);
    expect(pages.zeroPages(k.u8, a, 1, bm, 4096)).toBe(0);
    k.u8[a + 10] = 0;
    expect(pages.zeroPages(k.u8, a, 1, bm, 4096)).toBe(1);
    k.free(bm);
    k.free(big);
    k.free(a);
  });
});
