// KernelPool: the shared-memory build, kernels in scratch regions, and every parallel operation against the
// single-thread kernel on the same inputs (1, 2 and 3 workers; wasm-simd, wasm-scalar and js): same bitmaps,
// counts, record bytes, caches, decoded pages and states. Then the pool's life: errors, dead workers, shutdown.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LinearMemory } from "../../src/kernels/arena.js";
import { BLK, createKernels, DEC, DEC_STATUS, ENC, type Kernels, RAM_ENCODE, SLOT_INSERT } from "../../src/kernels/index.js";
import { encodeWindowBytes } from "../../src/kernels/parallel-ram.js";
import { KernelPool, type PoolWorker, sharedKernelMemory, splitPages, type WorkerFactory, webWorkerFactory } from "../../src/kernels/pool.js";
import { isSharedMemory, wasmBytes } from "../../src/kernels/wasm.js";
import { POOL_OP } from "../../src/kernels/worker.js";
import { tsWorkerFactory, WebWorkerShim } from "../helpers/kernel-workers.js";
import { fillMixedPages } from "../helpers/ram-pages.js";
import { SeededRandom } from "../helpers/random.js";

const backends = ["wasm-simd", "wasm-scalar", "js"] as const;
const P = 4096;
const enc = new TextEncoder();

/** Kernels.ramEncode of [first, end) in one window: bytes, state. */
function encodeOnce(
  k: Kernels,
  a: { block: number; first: number; end: number; sendMap: number; slotMap: number; cache: number; name: Uint8Array; options: number },
) {
  const cap = encodeWindowBytes(a.end - a.first, P);
  const out = k.alloc(cap);
  const st = k.alloc(64);
  const np = k.alloc(256);
  k.u8.set(a.name, np);
  const n = k.ramEncode(a.block, P, a.first, a.end, a.sendMap, a.slotMap, a.cache, np, a.name.length, out, cap, a.options, st);
  const s = [...new Uint32Array(k.memory.buffer, st, ENC.SIZE)];
  const bytes = k.u8.slice(out, out + n);
  k.free(out);
  k.free(st);
  k.free(np);
  expect(s[ENC.NEXT_PAGE]).toBe(a.end);
  return { bytes, state: s };
}

function concatAll(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.compare(a, b) === 0;

describe("shared-memory kernels", () => {
  it("the shared builds import a shared memory and hold no data segment", () => {
    for (const f of ["simd", "scalar"] as const) {
      const mod = new WebAssembly.Module(wasmBytes(f, "shared") as BufferSource);
      expect(WebAssembly.Module.imports(mod)).toEqual([{ module: "env", name: "memory", kind: "memory" }]);
      // A non-shared memory does not fit the shared import, and a shared one does not fit the plain import build.
      const plain = new WebAssembly.Memory({ initial: 1 });
      expect(() => new WebAssembly.Instance(mod, { env: { memory: plain, abort() {} } })).toThrow();
      const shared = sharedKernelMemory();
      expect(() => new WebAssembly.Instance(new WebAssembly.Module(wasmBytes(f, "import") as BufferSource), { env: { memory: shared, abort() {} } })).toThrow();
      new WebAssembly.Instance(mod, { env: { memory: shared, abort() {} } });
    }
  });

  it("createKernels on a shared memory: every backend, same results as on a plain memory", () => {
    const rng = new SeededRandom(7);
    const data = rng.bytes(64 * P);
    for (let p = 0; p < 64; p += 3) data.fill(0, p * P, (p + 1) * P);
    for (const backend of backends) {
      const shared = createKernels({ backend, memory: sharedKernelMemory() });
      const plain = createKernels({ backend });
      expect(isSharedMemory(shared.memory)).toBe(true);
      const results = [shared, plain].map((k) => {
        const ram = k.alloc(64 * P);
        const bm = k.alloc(8);
        k.u8.set(data, ram);
        const n = k.zeroPages(ram, 64, bm);
        return { n, bm: k.u8.slice(bm, bm + 8) };
      });
      expect(results[0]).toEqual(results[1]);
    }
  });

  it("a scratch region: allocations stay inside it, the memory never grows, a full region is an error", () => {
    const memory = sharedKernelMemory();
    const main = createKernels({ backend: "wasm-simd", memory });
    const region = main.alloc(64 << 10);
    const before = memory.buffer.byteLength;
    const k = createKernels({ backend: "wasm-simd", memory, scratch: { ptr: region, bytes: 64 << 10 } });
    const a = k.alloc(16 << 10);
    expect(a).toBeGreaterThanOrEqual(region);
    expect(a + (16 << 10)).toBeLessThanOrEqual(region + (64 << 10));
    expect(() => k.alloc(60 << 10)).toThrow(/scratch region/);
    expect(memory.buffer.byteLength).toBe(before);
    expect(() => new LinearMemory(memory, 100, false, before + 1)).toThrow(RangeError);
    expect(() => createKernels({ scratch: { ptr: 0, bytes: 1 } })).toThrow(/memory/);
  });

  it("splitPages: inner boundaries at multiples of 64, covering the range once", () => {
    const rng = new SeededRandom(3);
    for (let i = 0; i < 200; i++) {
      const first = rng.int(300);
      const end = first + rng.int(3000);
      const r = splitPages(first, end, 1 + rng.int(700));
      let at = first;
      for (const [a, b] of r) {
        expect(a).toBe(at);
        expect(b).toBeGreaterThan(a);
        if (b !== end) expect(b % 64).toBe(0);
        at = b;
      }
      expect(at === end || (first === end && r.length === 0)).toBe(true);
    }
  });
});

for (const backend of backends) {
  for (const workers of [1, 2, 3]) {
    describe(`KernelPool: ${backend}, ${workers} worker${workers > 1 ? "s" : ""}`, () => {
      let pool: KernelPool;
      let k: Kernels;
      beforeAll(async () => {
        pool = await KernelPool.start({ memory: sharedKernelMemory(), factory: tsWorkerFactory(), workers, backend });
        k = pool.kernels;
      });
      afterAll(() => pool?.close());
      const seed = backends.indexOf(backend) * 100 + workers;

      it("zeroPages and changedPages (with and without refresh): the single-thread bitmaps, counts and shadows", async () => {
        const rng = new SeededRandom(seed);
        for (let round = 0; round < 6; round++) {
          const pages = 1 + rng.int(1500);
          const ram = k.alloc(pages * P);
          fillMixedPages(k.u8, ram, pages, rng, P);
          const shadowA = k.alloc(pages * P);
          const shadowB = k.alloc(pages * P);
          k.u8.copyWithin(shadowA, ram, ram + pages * P);
          for (let i = 0; i < pages; i++) if (rng.int(3) === 0) k.u8[shadowA + i * P + rng.int(P)] ^= 1 + rng.int(255);
          k.u8.copyWithin(shadowB, shadowA, shadowA + pages * P);
          const bytes = Math.ceil(pages / 8);
          const bmA = k.alloc(bytes + 8);
          const bmB = k.alloc(bytes + 8);
          k.u8.fill(0xaa, bmA, bmA + bytes + 8);
          k.u8.fill(0xaa, bmB, bmB + bytes + 8);
          const rangePages = 64 * (1 + rng.int(8));
          expect(await pool.zeroPages(ram, pages, bmB, P, rangePages)).toBe(k.zeroPages(ram, pages, bmA));
          expect(equalBytes(k.u8.slice(bmA, bmA + bytes + 8), k.u8.slice(bmB, bmB + bytes + 8))).toBe(true);
          const refresh = round % 2 === 0;
          expect(await pool.changedPages(ram, shadowB, pages, bmB, refresh, P, rangePages)).toBe(k.changedPages(ram, shadowA, pages, bmA, refresh));
          expect(equalBytes(k.u8.slice(bmA, bmA + bytes + 8), k.u8.slice(bmB, bmB + bytes + 8))).toBe(true);
          expect(equalBytes(k.u8.slice(shadowA, shadowA + pages * P), k.u8.slice(shadowB, shadowB + pages * P))).toBe(true);
          for (const p of [ram, shadowA, shadowB, bmA, bmB]) k.free(p);
        }
      });

      it("ramEncode over random ranges (send bitmap, XBZRLE slots with aliasing, CONTINUE): the bytes and state of one call", async () => {
        const rng = new SeededRandom(seed + 1000);
        const name = enc.encode("pc.ram");
        for (let round = 0; round < 10; round++) {
          const pages = 64 + rng.int(2500);
          const ram = k.alloc(pages * P);
          fillMixedPages(k.u8, ram, pages, rng, P);
          const first = rng.int(pages);
          const end = first + rng.int(pages - first + 1);
          const options = (rng.int(4) ? RAM_ENCODE.ZERO_DETECT : 0) | (rng.int(2) ? RAM_ENCODE.CONTINUE : 0);
          // Send bitmap: none, random, or empty at the start (the first ranges write nothing).
          const mapKind = rng.int(3);
          const mapBytes = Math.ceil(pages / 8);
          const maps = [k.alloc(mapBytes), k.alloc(mapBytes)];
          for (let i = 0; i < mapBytes; i++) k.u8[maps[0]! + i] = mapKind === 2 && i * 8 < first + (end - first) / 2 ? 0 : rng.byte();
          k.u8.copyWithin(maps[1]!, maps[0]!, maps[0]! + mapBytes);
          // Cache: none, a per-page shadow (slot = page), or a small aliased cache (slot = page mod slots, inserts).
          const cacheKind = rng.int(3);
          const slots = cacheKind === 2 ? 2 ** (3 + rng.int(6)) : pages;
          const slotMap = k.alloc(pages * 4);
          const caches = [k.alloc(slots * P), k.alloc(slots * P)];
          const sm = new Uint32Array(k.memory.buffer, slotMap, pages);
          for (let p = 0; p < pages; p++) {
            const s = cacheKind === 2 ? p % slots : p;
            sm[p] = rng.int(4) === 0 ? 0 : cacheKind === 2 && rng.int(3) === 0 ? ((s + 1) | SLOT_INSERT) >>> 0 : s + 1;
          }
          fillMixedPages(k.u8, caches[0]!, slots, rng, P);
          if (cacheKind === 1) for (let p = 0; p < pages; p += 2) k.u8.copyWithin(caches[0]! + p * P, ram + p * P, ram + (p + 1) * P);
          k.u8.copyWithin(caches[1]!, caches[0]!, caches[0]! + slots * P);
          const args = (i: number) => ({
            block: ram,
            first,
            end,
            sendMap: mapKind ? maps[i]! : 0,
            slotMap: cacheKind ? slotMap : 0,
            cache: cacheKind ? caches[i]! : 0,
            name,
            options,
          });
          const want = encodeOnce(k, args(0));
          const chunks: Uint8Array[] = [];
          const rangePages = 64 * (1 + rng.int(10));
          const got = await pool.ramEncode(
            {
              blockPtr: ram,
              pageSize: P,
              firstPage: first,
              endPage: end,
              sendMapPtr: args(1).sendMap,
              slotMapPtr: args(1).slotMap,
              cachePtr: args(1).cache,
              ...(cacheKind ? { slotSpan: cacheKind === 2 ? slots : Number.POSITIVE_INFINITY } : {}),
              name,
              options,
              rangePages,
              windows: 1 + rng.int(5),
            },
            (c) => {
              // half the time the windows come back later (as after a socket write)
              for (const x of c) chunks.push(x.slice());
              return rng.int(2) ? new Promise((r) => setTimeout(r, 0)) : undefined;
            },
          );
          const label = `round ${round}: pages ${pages} [${first}, ${end}) map ${mapKind} cache ${cacheKind} (${slots} slots) options ${options} range ${rangePages}`;
          expect(equalBytes(concatAll(chunks), want.bytes), label).toBe(true);
          const s = want.state;
          expect(got, label).toEqual({
            bytes: s[ENC.BYTES],
            zero: s[ENC.ZERO],
            normal: s[ENC.NORMAL],
            xbzrle: s[ENC.XBZRLE],
            unchanged: s[ENC.UNCHANGED],
            overflow: s[ENC.OVERFLOW],
            xbzrleBytes: s[ENC.XBZRLE_BYTES],
            continue: s[ENC.CONTINUE] === 1,
          });
          expect(equalBytes(k.u8.slice(maps[0]!, maps[0]! + mapBytes), k.u8.slice(maps[1]!, maps[1]! + mapBytes)), label).toBe(true);
          expect(equalBytes(k.u8.slice(caches[0]!, caches[0]! + slots * P), k.u8.slice(caches[1]!, caches[1]! + slots * P)), label).toBe(true);
          for (const p of [ram, slotMap, ...maps, ...caches]) k.free(p);
        }
      });

      it("ramEncode: a slot map without slotSpan is refused", async () => {
        await expect(
          pool.ramEncode({ blockPtr: 0, pageSize: P, firstPage: 0, endPage: 1, slotMapPtr: 64, name: enc.encode("a"), options: 0 }, () => {}),
        ).rejects.toThrow(/slotSpan/);
      });

      it("ramDecode of one pass over RAM split into runs: the pages, counters, written bitmap, state and status of one call", async () => {
        const rng = new SeededRandom(seed + 2000);
        const names = [enc.encode("pc.ram"), enc.encode("vga.vram")];
        for (let round = 0; round < 8; round++) {
          const pages = 64 + rng.int(1500);
          const oldRam = k.alloc(pages * P);
          const newRam = k.alloc(pages * P);
          fillMixedPages(k.u8, oldRam, pages, rng, P);
          k.u8.copyWithin(newRam, oldRam, oldRam + pages * P);
          for (let p = 0; p < pages; p++) if (rng.int(2)) k.u8[newRam + p * P + rng.int(P)] = rng.byte();
          for (let p = 0; p < pages; p++) if (rng.int(8) === 0) k.u8.fill(0, newRam + p * P, newRam + (p + 1) * P);
          // The stream: block 0 pages [0, h) then block 1 (the same RAM under another name) pages [h, pages), XBZRLE
          // against the old pages (the destinations start as the old RAM), then an EOS and what `tail` says.
          const h = rng.int(pages);
          const cache = k.alloc(pages * P);
          k.u8.copyWithin(cache, oldRam, oldRam + pages * P);
          const slotMap = k.alloc(pages * 4);
          const sm = new Uint32Array(k.memory.buffer, slotMap, pages);
          for (let p = 0; p < pages; p++) sm[p] = rng.int(3) ? p + 1 : 0;
          const a = encodeOnce(k, { block: newRam, first: 0, end: h, sendMap: 0, slotMap, cache, name: names[0]!, options: RAM_ENCODE.ZERO_DETECT });
          const b = encodeOnce(k, { block: newRam, first: h, end: pages, sendMap: 0, slotMap, cache, name: names[1]!, options: RAM_ENCODE.ZERO_DETECT });
          const tail = rng.int(3); // 0: EOS + junk, 1: a partial record, 2: an unknown block in the middle of block 1
          let stream = concatAll([a.bytes, b.bytes]);
          if (tail === 0) stream = concatAll([stream, new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0x10]), rng.bytes(100)]);
          else if (tail === 1) stream = stream.subarray(0, stream.length - 1 - rng.int(Math.min(stream.length - 1, 3000)));
          else if (b.bytes.length > 0) {
            stream = stream.slice();
            const at = a.bytes.length; // the first record of block 1 names it: rename it
            stream[at + 9] = 0x5a;
          }
          const input = k.alloc(stream.length + 1);
          k.u8.set(stream, input);
          // Two destinations (old RAM), tables and states; a written-page bitmap (all set: the old pages are not zero) or none.
          const useWritten = rng.int(2) === 1;
          const side = () => {
            const dst = k.alloc(pages * P);
            k.u8.copyWithin(dst, oldRam, oldRam + pages * P);
            const nameBuf = k.alloc(512);
            k.u8.set(names[0]!, nameBuf);
            k.u8.set(names[1]!, nameBuf + 256);
            const written = k.alloc(Math.ceil(pages / 8));
            k.u8.fill(0xff, written, written + Math.ceil(pages / 8));
            const table = k.alloc(2 * BLK.WORDS * 4, 8);
            const t = new Uint32Array(k.memory.buffer, table, 2 * BLK.WORDS);
            t.set([nameBuf, names[0]!.length, dst, pages * P, useWritten ? written : 0, 7, 8, 9]);
            t.set([nameBuf + 256, names[1]!.length, dst, pages * P, 0, 1, 2, 3], BLK.WORDS);
            const state = k.alloc(DEC.SIZE * 4, 8);
            new Uint32Array(k.memory.buffer, state, DEC.SIZE).fill(0).set([0xffffffff]);
            return { dst, nameBuf, written, table, state };
          };
          const A = side();
          const B = side();
          const want = k.ramDecode(input, stream.length, A.table, 2, P, A.state);
          const runBytes = 2 * (267 + P) + rng.int(40000);
          const got = await pool.ramDecode(input, stream.length, B.table, 2, P, B.state, { runBytes, runs: 1 + rng.int(6) });
          const label = `round ${round}: ${stream.length} bytes, tail ${tail}, runs of ${runBytes}`;
          expect(got, label).toBe(want);
          if (tail === 0) expect(want).toBe(DEC_STATUS.EOS);
          if (tail === 2 && b.bytes.length > 0) expect(want).toBe(DEC_STATUS.ERR_UNKNOWN_BLOCK);
          const words = (p: number, n: number) => [...new Uint32Array(k.memory.buffer, p, n)];
          expect(words(B.state, DEC.SIZE), label).toEqual(words(A.state, DEC.SIZE));
          const counters = (t: number) => words(t, 2 * BLK.WORDS).filter((_, i) => i % BLK.WORDS >= BLK.ZERO);
          expect(counters(B.table), label).toEqual(counters(A.table));
          expect(equalBytes(k.u8.slice(A.dst, A.dst + pages * P), k.u8.slice(B.dst, B.dst + pages * P)), label).toBe(true);
          expect(equalBytes(k.u8.slice(A.written, A.written + pages / 8), k.u8.slice(B.written, B.written + pages / 8)), label).toBe(true);
          if (tail === 0) expect(equalBytes(k.u8.slice(A.dst, A.dst + pages * P), k.u8.slice(newRam, newRam + pages * P)), label).toBe(true);
          for (const p of [oldRam, newRam, cache, slotMap, input, A.dst, A.nameBuf, A.written, A.table, A.state, B.dst, B.nameBuf, B.written, B.table, B.state])
            k.free(p);
        }
      });

      it("ramDecode into fresh zeroed blocks with a written-page bitmap: bits set by different workers in one byte all stay", async () => {
        const rng = new SeededRandom(seed + 3000);
        const pages = 4096;
        const ram = k.alloc(pages * P);
        fillMixedPages(k.u8, ram, pages, rng, P);
        const name = enc.encode("pc.ram");
        const s = encodeOnce(k, { block: ram, first: 0, end: pages, sendMap: 0, slotMap: 0, cache: 0, name, options: RAM_ENCODE.ZERO_DETECT });
        const input = k.alloc(s.bytes.length);
        k.u8.set(s.bytes, input);
        const dst = k.alloc(pages * P);
        k.u8.fill(0, dst, dst + pages * P);
        const written = k.alloc(pages / 8);
        k.u8.fill(0, written, written + pages / 8);
        const np = k.alloc(256);
        k.u8.set(name, np);
        const table = k.alloc(64, 8);
        new Uint32Array(k.memory.buffer, table, BLK.WORDS).set([np, name.length, dst, pages * P, written, 0, 0, 0]);
        const state = k.alloc(DEC.SIZE * 4, 8);
        new Uint32Array(k.memory.buffer, state, DEC.SIZE).fill(0).set([0xffffffff]);
        // runs of about 3 pages: many runs end inside one bitmap byte
        expect(await pool.ramDecode(input, s.bytes.length, table, 1, P, state, { runBytes: 3 * P })).toBe(DEC_STATUS.NEED_MORE);
        expect(equalBytes(k.u8.slice(dst, dst + pages * P), k.u8.slice(ram, ram + pages * P))).toBe(true);
        const zeroBm = k.alloc(pages / 8);
        k.zeroPages(ram, pages, zeroBm);
        for (let i = 0; i < pages / 8; i++) expect(k.u8[written + i]).toBe(~k.u8[zeroBm + i]! & 0xff);
        for (const p of [ram, input, dst, written, np, table, state, zeroBm]) k.free(p);
      });

      it("copyPages and copyBytes: the pages of a shuffled list land where a loop of copies puts them", async () => {
        const rng = new SeededRandom(seed + 4000);
        const count = 700;
        const src = k.alloc(count * P);
        fillMixedPages(k.u8, src, count, rng, P);
        const dsts = [k.alloc(count * P), k.alloc(count * P)];
        const order = Array.from({ length: count }, (_, i) => i);
        for (let i = count - 1; i > 0; i--) {
          const j = rng.int(i + 1);
          [order[i], order[j]] = [order[j]!, order[i]!];
        }
        const list = k.alloc(count * 8, 8);
        const l = new Uint32Array(k.memory.buffer, list, count * 2);
        for (let i = 0; i < count; i++) {
          l[2 * i] = dsts[1]! + order[i]! * P;
          l[2 * i + 1] = src + i * P;
          k.u8.copyWithin(dsts[0]! + order[i]! * P, src + i * P, src + (i + 1) * P);
        }
        await pool.copyPages(list, count, P, 1 + rng.int(100));
        expect(equalBytes(k.u8.slice(dsts[0]!, dsts[0]! + count * P), k.u8.slice(dsts[1]!, dsts[1]! + count * P))).toBe(true);
        // copyBytes: a window into its place at an odd offset
        await pool.copyBytes(dsts[1]! + 3, src + 8, 5 * P + 1);
        k.u8.copyWithin(dsts[0]! + 3, src + 8, src + 8 + 5 * P + 1);
        expect(equalBytes(k.u8.slice(dsts[0]!, dsts[0]! + count * P), k.u8.slice(dsts[1]!, dsts[1]! + count * P))).toBe(true);
        l[7] = k.memory.buffer.byteLength - 100;
        await expect(pool.copyPages(list, count, P)).rejects.toThrow(/outside the kernels' memory/);
        for (const p of [src, ...dsts, list]) k.free(p);
      });

      it("a job the worker's kernels refuse rejects with their error, and the pool goes on", async () => {
        await expect(pool.run(POOL_OP.ZERO_PAGES, [k.memory.buffer.byteLength, 8, 0, P])).rejects.toThrow(/outside the kernels' memory/);
        await expect(pool.run(99, [])).rejects.toThrow(/unknown job/);
        const ram = k.alloc(8 * P);
        k.u8.fill(0, ram, ram + 8 * P);
        expect(await pool.zeroPages(ram, 8, ram)).toBe(8);
        expect(pool.failed).toBeUndefined();
        k.free(ram);
      });
    });
  }
}

describe("KernelPool life", () => {
  /** Wraps a factory: counts the workers started and the exits they reported. */
  function counting(base: WorkerFactory) {
    const seen = { started: 0, exited: 0, workers: [] as PoolWorker[] };
    const factory: WorkerFactory = (events) => {
      seen.started++;
      const w = base({ ...events, exit: (code) => (seen.exited++, events.exit(code)) });
      seen.workers.push(w);
      return w;
    };
    return { seen, factory };
  }
  /** A fake worker: answers init like a real one, then does what `onJob` says with the first job. */
  const fakeWorker = (onJob: string) =>
    new URL(
      `data:text/javascript,${encodeURIComponent(`import { parentPort } from "node:worker_threads";
parentPort.on("message", (m) => { if (m.kind === "init") parentPort.postMessage({ kind: "ready", backend: m.backend }); else { ${onJob} } });`)}`,
    );

  it("close() stops every worker; later calls reject; closing twice is harmless", async () => {
    const { seen, factory } = counting(tsWorkerFactory());
    const pool = await KernelPool.start({ memory: sharedKernelMemory(), factory: factory, workers: 3, backend: "wasm-scalar" });
    expect(pool.workers).toBe(3);
    const ram = pool.kernels.alloc(64 * P);
    expect(await pool.zeroPages(ram, 64, ram + 63 * P)).toBeGreaterThan(0);
    await pool.close();
    expect(seen).toMatchObject({ started: 3, exited: 3 });
    await expect(pool.zeroPages(ram, 64, ram)).rejects.toThrow(/closed/);
    await pool.close();
  });

  it("jobs still running when the pool closes reject", async () => {
    const pool = await KernelPool.start({ memory: sharedKernelMemory(), factory: tsWorkerFactory(), workers: 1, backend: "wasm-simd" });
    const ram = pool.kernels.alloc(4096 * P);
    const jobs = Array.from({ length: 6 }, () => pool.zeroPages(ram, 4096, ram, P, 64));
    const closing = pool.close();
    for (const j of jobs) await expect(j).rejects.toThrow(/closed/);
    await closing;
  });

  it("a worker that exits is an error for its job, the jobs waiting and every later call, not a hang", async () => {
    const { seen, factory } = counting((await import("../../src/kernels/node.js")).nodeWorkerFactory({ script: fakeWorker("process.exit(3);") }));
    const pool = await KernelPool.start({ memory: sharedKernelMemory(), factory, workers: 2, backend: "js" });
    const ram = pool.kernels.alloc(2048 * P);
    await expect(pool.zeroPages(ram, 2048, ram, P, 64)).rejects.toThrow(/exited \(code 3\)/);
    expect(pool.failed?.message).toMatch(/exited/);
    await expect(pool.run(POOL_OP.ZERO_PAGES, [ram, 8, ram, P])).rejects.toThrow(/exited/);
    await pool.close();
    expect(seen.exited).toBe(2);
  });

  it("a worker that throws outside a job is an error, and the other workers are stopped", async () => {
    const { seen, factory } = counting((await import("../../src/kernels/node.js")).nodeWorkerFactory({ script: fakeWorker(`throw new Error("boom");`) }));
    const pool = await KernelPool.start({ memory: sharedKernelMemory(), factory, workers: 2, backend: "js" });
    const ram = pool.kernels.alloc(64 * P);
    await expect(pool.ramEncode({ blockPtr: ram, pageSize: P, firstPage: 0, endPage: 64, name: enc.encode("x"), options: 1 }, () => {})).rejects.toThrow(
      /boom/,
    );
    await pool.close();
    expect(seen.exited).toBe(2);
  });

  it("webWorkerFactory: the browser entry (web-worker.ts) behind the Worker API runs the pool's jobs", async () => {
    const g = globalThis as { Worker?: unknown };
    const saved = g.Worker;
    g.Worker = WebWorkerShim;
    try {
      const pool = await KernelPool.start({
        memory: sharedKernelMemory(),
        factory: webWorkerFactory(new URL("../../src/kernels/web-worker.ts", import.meta.url)),
        workers: 2,
        backend: "wasm-simd",
      });
      const k = pool.kernels;
      const ram = k.alloc(1024 * P);
      k.u8.fill(0, ram, ram + 1024 * P);
      for (let p = 0; p < 1024; p += 3) k.u8[ram + p * P + 5] = 1;
      const bm = k.alloc(128);
      expect(await pool.zeroPages(ram, 1024, bm, P, 64)).toBe(1024 - 342);
      await expect(pool.run(POOL_OP.ZERO_PAGES, [k.memory.buffer.byteLength, 8, 0, P])).rejects.toThrow(/outside/);
      await pool.close();
    } finally {
      g.Worker = saved;
    }
  });

  it("a worker that cannot start fails start(), which stops the others; a plain memory is refused", async () => {
    const { seen, factory } = counting(
      (await import("../../src/kernels/node.js")).nodeWorkerFactory({
        script: new URL(
          `data:text/javascript,${encodeURIComponent(`import { parentPort } from "node:worker_threads"; parentPort.on("message", () => parentPort.postMessage({ kind: "failed", message: "no kernels here" }));`)}`,
        ),
      }),
    );
    await expect(KernelPool.start({ memory: sharedKernelMemory(), factory, workers: 2 })).rejects.toThrow(/no kernels here/);
    expect(seen.exited).toBe(2);
    await expect(KernelPool.start({ memory: new WebAssembly.Memory({ initial: 1 }), factory: tsWorkerFactory(), workers: 1 })).rejects.toThrow(/shared/);
  });

  it("a worker whose scratch region finds no room fails start(), and the workers already started are stopped", async () => {
    const { seen, factory } = counting(tsWorkerFactory());
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 3, shared: true }); // room for two scratch regions
    await expect(KernelPool.start({ memory, factory, workers: 3, backend: "wasm-simd" })).rejects.toThrow(/memory/i);
    expect(seen).toMatchObject({ started: 2, exited: 2 });
  });

  it("a worker that never answers fails start() after startTimeoutMs, and is stopped", async () => {
    const { seen, factory } = counting(
      (await import("../../src/kernels/node.js")).nodeWorkerFactory({
        script: new URL(`data:text/javascript,${encodeURIComponent(`import { parentPort } from "node:worker_threads"; parentPort.on("message", () => {});`)}`),
      }),
    );
    await expect(KernelPool.start({ memory: sharedKernelMemory(), factory, workers: 2, startTimeoutMs: 500 })).rejects.toThrow(/did not report ready/);
    expect(seen.exited).toBe(2);
  });
});
