import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createKernels, LinearMemory } from "../../src/kernels/index.js";
import { wasmBytes } from "../../src/kernels/wasm.js";

const backends = ["wasm-simd", "wasm-scalar", "js"] as const;

describe("LinearMemory", () => {
  it("rebuilds its views after memory.grow (a stale view would drop writes)", () => {
    const mem = new WebAssembly.Memory({ initial: 1 });
    const lm = new LinearMemory(mem, 1024);
    const before = lm.u8;
    const p = lm.alloc(200_000);
    expect(before.byteLength).toBe(0); // detached by the grow
    lm.u8[p + 199_999] = 7;
    expect(new Uint8Array(mem.buffer)[p + 199_999]).toBe(7);
    expect(lm.view.getUint8(p + 199_999)).toBe(7);
  });

  it("aligns, reuses freed regions and merges neighbours", () => {
    const lm = new LinearMemory(new WebAssembly.Memory({ initial: 1 }), 100);
    const a = lm.alloc(5000);
    const b = lm.alloc(5000, 64);
    const c = lm.alloc(10);
    expect(a % 4096).toBe(0);
    expect(b % 64).toBe(0);
    expect(b).toBeGreaterThanOrEqual(a + 5000);
    lm.free(a);
    lm.free(b);
    // a and b merged: a 10000-byte request fits where they were.
    expect(lm.alloc(10_000)).toBe(a);
    expect(() => lm.free(c + 1)).toThrow(/not allocated/);
    lm.free(c);
  });

  it("a zeroed region reads zero: bytes handed out before are cleared, bytes freed clean or never handed out are not written", () => {
    const lm = new LinearMemory(new WebAssembly.Memory({ initial: 1 }), 65536);
    const a = lm.alloc(3 * 4096);
    lm.u8.fill(0xaa, a, a + 3 * 4096);
    lm.free(a);
    const z = lm.alloc(5 * 4096, 4096, true); // over a's dirty bytes and fresh ones
    expect(z).toBe(a);
    expect(lm.u8.subarray(z, z + 5 * 4096).every((v) => v === 0)).toBe(true);
    // given back clean: the allocator trusts it (the marker below shows it writes nothing there)...
    lm.u8[z + 4096] = 0x55;
    lm.free(z, true);
    const again = lm.alloc(5 * 4096, 4096, true);
    expect(again).toBe(z);
    expect(lm.u8[again + 4096]).toBe(0x55);
    lm.u8[again + 4096] = 0;
    // ...until part of it is handed out without `zeroed`: that part is no longer known to be zero
    lm.free(again, true);
    const plain = lm.alloc(4096 * 2);
    lm.u8.fill(0xbb, plain, plain + 2 * 4096);
    lm.free(plain);
    const last = lm.alloc(5 * 4096, 4096, true);
    expect(last).toBe(z);
    expect(lm.u8.subarray(last, last + 5 * 4096).every((v) => v === 0)).toBe(true);
  });

  it("never hands out host bytes below the memory's end", () => {
    const mem = new WebAssembly.Memory({ initial: 3 });
    const end = mem.buffer.byteLength;
    for (const backend of backends) {
      const k = createKernels({ backend, memory: mem });
      const p = k.alloc(4096);
      expect(p).toBeGreaterThanOrEqual(end);
      expect(k.memory).toBe(mem);
    }
  });

  it("kernels sharing a host memory share one allocator: no region is handed out twice", () => {
    const mem = new WebAssembly.Memory({ initial: 1 });
    const ks = backends.map((backend) => createKernels({ backend, memory: mem }));
    const regions = ks.flatMap((k) => [k.alloc(1 << 20), k.alloc(4096)].map((p, i) => [p, p + (i === 0 ? 1 << 20 : 4096)] as const));
    regions.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < regions.length; i++) expect(regions[i]![0]).toBeGreaterThanOrEqual(regions[i - 1]![1]);
    const p = ks[0]!.alloc(64);
    ks[2]!.free(p); // one allocator: any instance may give a region back
    expect(ks[1]!.alloc(64)).toBe(p);
  });

  it("a host that grows its memory after us keeps the pages it got (an emulator's own allocator grows it too)", () => {
    const mem = new WebAssembly.Memory({ initial: 2 });
    const k = createKernels({ backend: "js", memory: mem, noWarmup: true });
    const ours: [number, number][] = [];
    const take = (n: number) => {
      const p = k.alloc(n);
      ours.push([p, p + n]);
      return p;
    };
    take(100_000);
    const small = take(64);
    k.free(small); // a hole at the top of our pages
    ours.pop();
    const hostStart = mem.buffer.byteLength;
    mem.grow(3); // the host's pages: [hostStart, hostStart + 3 pages)
    const hostEnd = mem.buffer.byteLength;
    take(200_000);
    take(64); // fits in what is left of our earlier pages
    take(70_000);
    for (const [s, e] of ours) expect(e <= hostStart || s >= hostEnd, `[${s}, ${e}) overlaps the host's [${hostStart}, ${hostEnd})`).toBe(true);
    ours.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < ours.length; i++) expect(ours[i]![0]).toBeGreaterThanOrEqual(ours[i - 1]![1]);
  });

  it("refuses sizes a wasm32 memory cannot hold", () => {
    const lm = new LinearMemory(new WebAssembly.Memory({ initial: 1 }), 0);
    expect(() => lm.alloc(2 ** 32 + 4096)).toThrow(/4 GiB/);
    expect(() => lm.alloc(-1)).toThrow(RangeError);
    expect(() => lm.alloc(10, 3)).toThrow(/alignment/);
  });
});

describe("wasm builds", () => {
  it("import-memory builds import env.memory; the others bring their own", () => {
    for (const flavour of ["simd", "scalar"] as const) {
      const imp = new WebAssembly.Module(wasmBytes(flavour, true) as BufferSource);
      expect(WebAssembly.Module.imports(imp).some((i) => i.kind === "memory" && i.module === "env" && i.name === "memory")).toBe(true);
      const own = new WebAssembly.Module(wasmBytes(flavour, false) as BufferSource);
      expect(WebAssembly.Module.imports(own).some((i) => i.kind === "memory")).toBe(false);
    }
  });

  it("the scalar build contains no SIMD instruction; the SIMD build does", () => {
    const wat = (t: string) => readFileSync(new URL(`../../build/kernels.${t}.wat`, import.meta.url), "utf8");
    expect(wat("scalar")).not.toMatch(/v128|i8x16|i64x2|i32x4/);
    expect(wat("simd")).toMatch(/v128\.load/);
    for (const f of ["simd", "scalar"] as const) expect(WebAssembly.validate(wasmBytes(f, false) as BufferSource)).toBe(true);
  });

  it("kernels on a host memory see host writes (zero copy)", () => {
    const mem = new WebAssembly.Memory({ initial: 1 });
    for (const backend of backends) {
      const k = createKernels({ backend, memory: mem });
      const ram = k.alloc(4 * 4096);
      const bm = k.alloc(8, 8);
      new Uint8Array(mem.buffer).fill(0, ram, ram + 4 * 4096);
      new Uint8Array(mem.buffer)[ram + 2 * 4096 + 17] = 1; // host writes page 2
      expect(k.zeroPages(ram, 4, bm)).toBe(3);
      expect(k.u8[bm]).toBe(0b1011);
    }
  });
});

describe("argument checks", () => {
  it("every backend refuses the same bad arguments with the same RangeError", () => {
    for (const backend of backends) {
      const k = createKernels({ backend });
      const end = k.memory.buffer.byteLength;
      const p = k.alloc(8192);
      expect(() => k.zeroPages(p, 1, p, 100)).toThrow(/page size 100/);
      expect(() => k.zeroPages(end - 4096, 2, p)).toThrow(/outside the kernels' memory/);
      expect(() => k.changedPages(p, end, 1, p, false)).toThrow(/shadow/);
      expect(() => k.xbzrleEncode(p, p, end - 10, 4096)).toThrow(/output/);
      expect(() => k.xbzrleDecode(p, -1, p)).toThrow(/bad count/);
      expect(() => k.bswap64(end - 8, 2)).toThrow(RangeError);
      expect(() => k.ramEncode(p, 4096, 2, 1, 0, 0, 0, p, 1, p, 100, 0, p)).toThrow(/firstPage/);
      expect(() => k.ramEncode(p, 4096, 0, 1, 0, 0, 0, p, 256, p, 100, 0, p)).toThrow(/name length/);
    }
  });
});
