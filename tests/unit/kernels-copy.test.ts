// copy and copyPages: every backend against a plain byte-array model (memmove; pages in list order), on plain and
// shared memories, at every alignment; and the same RangeErrors for ranges outside the memory.
import { describe, expect, it } from "vitest";
import { createKernels, type Kernels } from "../../src/kernels/index.js";
import { sharedKernelMemory } from "../../src/kernels/pool.js";
import { SeededRandom } from "../helpers/random.js";

const backends = ["wasm-simd", "wasm-scalar", "js"] as const;
const kernelsOf = (shared: boolean): Kernels[] => backends.map((backend) => createKernels({ backend, ...(shared ? { memory: sharedKernelMemory() } : {}) }));

for (const shared of [false, true]) {
  describe(`copy kernels, ${shared ? "shared" : "plain"} memory`, () => {
    it("copy: memmove at every alignment and overlap, the bytes around untouched", () => {
      for (const k of kernelsOf(shared)) {
        const rng = new SeededRandom(11);
        const base = k.alloc(1 << 16);
        for (let trial = 0; trial < 300; trial++) {
          const init = rng.bytes(1 << 16);
          k.u8.set(init, base);
          const len = rng.int(trial % 3 === 0 ? 20000 : 300);
          const src = rng.int((1 << 16) - len);
          const dst = rng.int(3) === 0 ? Math.min((1 << 16) - len, Math.max(0, src + rng.int(64) - 32)) : rng.int((1 << 16) - len);
          const want = init.slice();
          want.copyWithin(dst, src, src + len);
          k.copy(base + dst, base + src, len);
          expect(Buffer.compare(k.u8.subarray(base, base + (1 << 16)), want), `${k.backend} dst ${dst} src ${src} len ${len}`).toBe(0);
        }
      }
    });

    it("copyPages: pairs in list order (a later pair sees an earlier one's bytes), any list alignment", () => {
      for (const k of kernelsOf(shared)) {
        const rng = new SeededRandom(12);
        const P = 1024;
        const area = k.alloc(64 * P);
        const list = k.alloc(8 * 200 + 8);
        for (let trial = 0; trial < 50; trial++) {
          const init = rng.bytes(64 * P);
          k.u8.set(init, area);
          const want = init.slice();
          const n = rng.int(200);
          const at = list + rng.int(8);
          const dv = new DataView(k.memory.buffer);
          for (let i = 0; i < n; i++) {
            const dst = rng.int(63 * P);
            const src = rng.int(63 * P);
            dv.setUint32(at + i * 8, area + dst, true);
            dv.setUint32(at + i * 8 + 4, area + src, true);
            want.copyWithin(dst, src, src + P);
          }
          k.copyPages(at, n, P);
          expect(Buffer.compare(k.u8.subarray(area, area + 64 * P), want), `${k.backend} trial ${trial}`).toBe(0);
        }
      }
    });

    it("ranges outside the memory are refused before anything is copied", () => {
      for (const k of kernelsOf(shared)) {
        const end = k.memory.buffer.byteLength;
        const p = k.alloc(8192);
        k.u8.fill(2, p, p + 4096);
        k.u8.fill(1, p + 4096, p + 8192);
        expect(() => k.copy(p, end - 10, 11)).toThrow(/copy source/);
        expect(() => k.copy(end - 10, p, 11)).toThrow(/copy destination/);
        expect(() => k.copy(p, p, -1)).toThrow(/bad count/);
        const list = new Uint32Array(k.memory.buffer, p, 4);
        list.set([p + 4096, p, end - 100, p]);
        expect(() => k.copyPages(p, 2, 4096)).toThrow(/destination page/);
        expect(k.u8[p + 4096]).toBe(1); // the first pair was not copied either
        expect(() => k.copyPages(end - 8, 2)).toThrow(/list/);
      }
    });
  });
}
