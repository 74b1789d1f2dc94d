// Differential tests of bswap16/32/64: every backend (wasm-simd, wasm-scalar, js with Buffer,
// js without Buffer) against a DataView reference; bytes around the array stay untouched.

import fc from "fast-check";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { type BackendName, createKernels, type Kernels, simdSupported } from "../../src/kernels/index.js";
import { SeededRandom } from "../helpers/random.js";

type Width = 2 | 4 | 8;

interface Runner {
  name: string;
  k: Kernels;
  swap(width: Width, ptr: number, count: number): void;
}

const runners: Runner[] = [];

beforeAll(async () => {
  const names: BackendName[] = simdSupported() ? ["wasm-simd", "wasm-scalar", "js"] : ["wasm-scalar", "js"];
  for (const name of names) {
    const k = createKernels({ backend: name });
    runners.push({
      name,
      k,
      swap: (w, ptr, count) => (w === 2 ? k.bswap16(ptr, count) : w === 4 ? k.bswap32(ptr, count) : k.bswap64(ptr, count)),
    });
  }
  // The browser path of the pure-TS twin: a fresh copy of the module with no global Buffer.
  vi.stubGlobal("Buffer", undefined);
  let fb: typeof import("../../src/kernels/js/bswap.js");
  try {
    vi.resetModules();
    fb = await import("../../src/kernels/js/bswap.js");
  } finally {
    vi.unstubAllGlobals();
  }
  expect(globalThis.Buffer).toBeTypeOf("function");
  const k = createKernels({ backend: "js" });
  runners.push({
    name: "js-no-Buffer",
    k,
    swap: (w, ptr, count) => (w === 2 ? fb.bswap16(k.u8, ptr, count) : w === 4 ? fb.bswap32(k.u8, ptr, count) : fb.bswap64(k.u8, ptr, count)),
  });
});

/** The obvious reference: read each value little-endian, write it big-endian. */
function refSwap(data: Uint8Array, width: Width, count: number): Uint8Array {
  const out = data.slice();
  const dv = new DataView(out.buffer);
  for (let i = 0; i < count; i++) {
    const p = i * width;
    if (width === 2) dv.setUint16(p, dv.getUint16(p, true), false);
    else if (width === 4) dv.setUint32(p, dv.getUint32(p, true), false);
    else dv.setBigUint64(p, dv.getBigUint64(p, true), false);
  }
  return out;
}

const GUARD = 32;

function randomBytes(len: number, seed: number): Uint8Array {
  return new SeededRandom(seed).bytes(len);
}

/** Swap `count` values at `misalign` on every backend; checks the array and the guard bytes. */
function check(width: Width, count: number, misalign: number, seed: number): void {
  const len = count * width;
  // The values, plus guard bytes before and after that must come out unchanged.
  const region = randomBytes(GUARD + len + GUARD, seed ^ (count * 131 + width * 7 + misalign));
  const want = region.slice();
  want.set(refSwap(region.subarray(GUARD, GUARD + len), width, count), GUARD);
  for (const r of runners) {
    const k = r.k;
    const base = k.alloc(region.length + 64);
    const start = base + misalign;
    k.u8.set(region, start);
    r.swap(width, start + GUARD, count);
    const got = k.u8.subarray(start, start + region.length);
    let bad = -1;
    for (let i = 0; i < got.length; i++) {
      if (got[i] !== want[i]) {
        bad = i;
        break;
      }
    }
    const where = bad < 0 ? "" : bad < GUARD ? "guard before" : bad >= GUARD + len ? "guard after" : `value byte ${bad - GUARD}`;
    expect(bad, `${r.name} bswap${width * 8} count=${count} misalign=${misalign}: ${where}`).toBe(-1);
    k.free(base);
  }
}

describe("bswap16/32/64", () => {
  it("has every backend under test", () => {
    expect(runners.map((r) => r.name)).toContain("js-no-Buffer");
    expect(runners.length).toBeGreaterThanOrEqual(3);
  });

  for (const width of [2, 4, 8] as const) {
    it(`bswap${width * 8}: every count 0..40, every misalignment 0..15`, () => {
      for (let count = 0; count <= 40; count++) {
        for (let misalign = 0; misalign < 16; misalign++) check(width, count, misalign, count + 1);
      }
    });

    it(`bswap${width * 8}: long arrays around the SIMD block and view thresholds`, () => {
      for (const count of [63, 64, 65, 127, 128, 129, 255, 256, 1000, 4099]) {
        for (const misalign of [0, 1, 7]) check(width, count, misalign, count);
      }
    });

    it(`bswap${width * 8}: twice is the identity; random counts and offsets`, () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 700 }), fc.integer({ min: 0, max: 63 }), fc.integer(), (count, misalign, seed) => {
          check(width, count, misalign, seed);
          for (const r of runners) {
            const k = r.k;
            const base = k.alloc(count * width + 64);
            const data = randomBytes(count * width, seed);
            k.u8.set(data, base + misalign);
            r.swap(width, base + misalign, count);
            r.swap(width, base + misalign, count);
            expect(Array.from(k.u8.subarray(base + misalign, base + misalign + data.length)), r.name).toEqual(Array.from(data));
            k.free(base);
          }
        }),
        { numRuns: 60 },
      );
    });
  }

  it("known answers", () => {
    for (const r of runners) {
      const k = r.k;
      const p = k.alloc(64);
      const bytes = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
      k.u8.set(bytes, p);
      r.swap(2, p, 8);
      expect(Array.from(k.u8.subarray(p, p + 16)), r.name).toEqual([2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]);
      k.u8.set(bytes, p);
      r.swap(4, p, 4);
      expect(Array.from(k.u8.subarray(p, p + 16)), r.name).toEqual([4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13]);
      k.u8.set(bytes, p);
      r.swap(8, p, 2);
      expect(Array.from(k.u8.subarray(p, p + 16)), r.name).toEqual([8, 7, 6, 5, 4, 3, 2, 1, 16, 15, 14, 13, 12, 11, 10, 9]);
      k.free(p);
    }
  });
});
