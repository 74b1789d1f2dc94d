// The browser half of kernel-pool-browser.test.ts, served to Chromium transpiled. One RAM scenario (old and new
// pages of known kinds), run by `runRamOps` either on a KernelPool or on single-thread kernels: zero and changed
// page scans, ramEncode with XBZRLE, ramDecode of that stream, copyPages. Each side reports SHA-256 digests and
// counts; Node runs the single-thread side too (vmstream's module is a parameter: dist/ in the page, src/ there).
import type * as Vmstream from "../../src/index.js";
import { fillMixedPages } from "../helpers/ram-pages.js";
import { SeededRandom } from "../helpers/random.js";

type Vm = typeof Vmstream;
type Kernels = Vmstream.Kernels;

const P = 4096;
const NAME = new TextEncoder().encode("pc.ram");

/** The scenario's inputs, in the kernels' memory: read-only for the operations. */
export interface RamScenario {
  readonly pages: number;
  /** The pages as last sent (XBZRLE cache, changed-page shadow, the destination before the pass). */
  readonly oldRam: number;
  /** The pages now. */
  readonly newRam: number;
  /** Which pages this pass sends (bit set = send). */
  readonly sendMap: number;
  /** The order copyPages puts the new pages in. */
  readonly order: readonly number[];
}

/** The same scenario for the same seed on any kernels: the new pages differ from the old in a few bytes, are zeroed or new. */
export function makeScenario(k: Kernels, pages: number, seed: number): RamScenario {
  const rng = new SeededRandom(seed);
  const oldRam = k.alloc(pages * P);
  const newRam = k.alloc(pages * P);
  fillMixedPages(k.u8, oldRam, pages, rng, P);
  k.u8.copyWithin(newRam, oldRam, oldRam + pages * P);
  for (let p = 0; p < pages; p++) {
    const change = rng.int(6);
    if (change === 1 || change === 2) for (let i = 1 + rng.int(30); i > 0; i--) k.u8[newRam + p * P + rng.int(P)] = rng.byte();
    else if (change === 3) k.u8.fill(0, newRam + p * P, newRam + (p + 1) * P);
    else if (change === 4) for (let i = 0; i < P; i++) k.u8[newRam + p * P + i] = rng.byte();
  }
  const sendMap = k.alloc(Math.ceil(pages / 8));
  for (let i = 0; i < Math.ceil(pages / 8); i++) k.u8[sendMap + i] = rng.int(4) === 0 ? rng.byte() : 0xff;
  const order = Array.from({ length: pages }, (_, i) => i);
  for (let i = pages - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return { pages, oldRam, newRam, sendMap, order };
}

/** What one side produced: counts, and SHA-256 (hex) of every byte it wrote. */
export interface RamOpsResult {
  zero: { count: number; bitmap: string };
  changed: { count: number; bitmap: string; shadow: string };
  /** ENC words BYTES, ZERO, NORMAL, XBZRLE, UNCHANGED, OVERFLOW, XBZRLE_BYTES, CONTINUE; the sent bitmap; the cache. */
  encode: { length: number; stream: string; state: number[]; sendMap: string; cache: string };
  decode: { status: number; pages: string; written: string; state: number[]; counters: number[] };
  copy: { pages: string };
}

async function sha256(k: Kernels, ptr: number, length: number): Promise<string> {
  // subtle.digest refuses views of a SharedArrayBuffer: hash a copy
  const digest = await crypto.subtle.digest("SHA-256", k.u8.slice(ptr, ptr + length));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function alloc(k: Kernels, bytes: number, fill: number, align = 64): number {
  const ptr = k.alloc(bytes, align);
  k.u8.fill(fill, ptr, ptr + bytes);
  return ptr;
}

/**
 * The scenario's operations on `pool` (its workers) or, without one, on `k` alone. Every region an operation
 * writes is this call's own (freed before it returns), so the two sides can run on one memory.
 */
export async function runRamOps(vm: Vm, k: Kernels, s: RamScenario, pool?: Vmstream.KernelPool): Promise<RamOpsResult> {
  const { ENC, DEC, BLK, RAM_ENCODE } = vm;
  const bytes = s.pages * P;
  const mapBytes = Math.ceil(s.pages / 8);
  const owned: number[] = [];
  const own = (ptr: number) => (owned.push(ptr), ptr);
  const words = (ptr: number, n: number) => [...new Uint32Array(k.memory.buffer, ptr, n)];
  try {
    // Page scans: zero pages of the new RAM; pages changed against a shadow of the old, refreshing the shadow.
    const zeroMap = own(alloc(k, mapBytes + 8, 0xaa));
    const zeroCount = pool ? await pool.zeroPages(s.newRam, s.pages, zeroMap) : k.zeroPages(s.newRam, s.pages, zeroMap);
    const shadow = own(k.alloc(bytes));
    k.u8.copyWithin(shadow, s.oldRam, s.oldRam + bytes);
    const changedMap = own(alloc(k, mapBytes + 8, 0x55));
    const changedCount = pool
      ? await pool.changedPages(s.newRam, shadow, s.pages, changedMap, true)
      : k.changedPages(s.newRam, shadow, s.pages, changedMap, true);

    // ramEncode of the pages the send bitmap names, XBZRLE against a cache of the old pages (a slot per page).
    const sendMap = own(k.alloc(mapBytes));
    k.u8.copyWithin(sendMap, s.sendMap, s.sendMap + mapBytes);
    const slotMap = own(k.alloc(s.pages * 4, 8));
    new Uint32Array(k.memory.buffer, slotMap, s.pages).forEach((_, p, a) => (a[p] = p % 7 === 0 ? 0 : p + 1));
    const cache = own(k.alloc(bytes));
    k.u8.copyWithin(cache, s.oldRam, s.oldRam + bytes);
    let stream: Uint8Array;
    let encState: number[];
    if (pool) {
      const chunks: Uint8Array[] = [];
      const r = await pool.ramEncode(
        {
          blockPtr: s.newRam,
          pageSize: P,
          firstPage: 0,
          endPage: s.pages,
          sendMapPtr: sendMap,
          slotMapPtr: slotMap,
          cachePtr: cache,
          slotSpan: Infinity,
          name: NAME,
          options: RAM_ENCODE.ZERO_DETECT,
        },
        (c) => void chunks.push(...c.map((x) => x.slice())),
      );
      stream = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      chunks.reduce((at, c) => (stream.set(c, at), at + c.length), 0);
      encState = [r.bytes, r.zero, r.normal, r.xbzrle, r.unchanged, r.overflow, r.xbzrleBytes, r.continue ? 1 : 0];
    } else {
      const cap = vm.encodeWindowBytes(s.pages, P);
      const out = own(k.alloc(cap));
      const st = own(alloc(k, ENC.SIZE * 4, 0, 8));
      const name = own(k.alloc(256));
      k.u8.set(NAME, name);
      const n = k.ramEncode(s.newRam, P, 0, s.pages, sendMap, slotMap, cache, name, NAME.length, out, cap, RAM_ENCODE.ZERO_DETECT, st);
      stream = k.u8.slice(out, out + n);
      const w = words(st, ENC.SIZE);
      encState = [ENC.BYTES, ENC.ZERO, ENC.NORMAL, ENC.XBZRLE, ENC.UNCHANGED, ENC.OVERFLOW, ENC.XBZRLE_BYTES, ENC.CONTINUE].map((i) => w[i]!);
    }
    const input = own(k.alloc(stream.length + 1));
    k.u8.set(stream, input);

    // ramDecode of that stream onto the old pages (runs of 256 KiB: many runs per worker), with a written-page bitmap.
    const dst = own(k.alloc(bytes));
    k.u8.copyWithin(dst, s.oldRam, s.oldRam + bytes);
    const written = own(alloc(k, mapBytes, 0));
    const name = own(k.alloc(256));
    k.u8.set(NAME, name);
    const table = own(alloc(k, BLK.WORDS * 4, 0, 8));
    new Uint32Array(k.memory.buffer, table, BLK.WORDS).set([name, NAME.length, dst, bytes, written]);
    const decState = own(alloc(k, DEC.SIZE * 4, 0, 8));
    new Uint32Array(k.memory.buffer, decState, 1)[0] = 0xffffffff;
    const status = pool
      ? await pool.ramDecode(input, stream.length, table, 1, P, decState, { runBytes: 256 << 10 })
      : k.ramDecode(input, stream.length, table, 1, P, decState);

    // copyPages: the new pages into a fresh region in the scenario's order.
    const copied = own(alloc(k, bytes, 0));
    const list = own(k.alloc(s.pages * 8, 8));
    const pairs = new Uint32Array(k.memory.buffer, list, s.pages * 2);
    s.order.forEach((to, from) => pairs.set([copied + to * P, s.newRam + from * P], 2 * from));
    if (pool) await pool.copyPages(list, s.pages, P);
    else for (let i = 0; i < s.pages; i++) k.copy(pairs[2 * i]!, pairs[2 * i + 1]!, P);

    return {
      zero: { count: zeroCount, bitmap: await sha256(k, zeroMap, mapBytes + 8) },
      changed: { count: changedCount, bitmap: await sha256(k, changedMap, mapBytes + 8), shadow: await sha256(k, shadow, bytes) },
      encode: {
        length: stream.length,
        stream: await sha256(k, input, stream.length),
        state: encState,
        sendMap: await sha256(k, sendMap, mapBytes),
        cache: await sha256(k, cache, bytes),
      },
      decode: {
        status,
        pages: await sha256(k, dst, bytes),
        written: await sha256(k, written, mapBytes),
        state: words(decState, DEC.SIZE),
        counters: words(table, BLK.WORDS).slice(BLK.ZERO),
      },
      copy: { pages: await sha256(k, copied, bytes) },
    };
  } finally {
    for (const ptr of owned) k.free(ptr);
  }
}

/** What the page reports: where it ran, the pool it started, and both sides on one scenario. */
export interface PoolCheckReport {
  crossOriginIsolated: boolean;
  /** Each worker the factory made was a standard `Worker`. */
  browserWorkers: boolean[];
  workers: number;
  backend: string;
  pool: RamOpsResult;
  singleThread: RamOpsResult;
}

/** In the page: a KernelPool of `workers` standard Workers (webWorkerFactory) and the same scenario on its main-thread kernels. */
export async function poolCheck(vm: Vm, pages: number, seed: number, workers: number): Promise<PoolCheckReport> {
  const base = vm.webWorkerFactory();
  const browserWorkers: boolean[] = [];
  const factory: Vmstream.WorkerFactory = (events) => {
    const w = base(events);
    browserWorkers.push(w instanceof Worker);
    return w;
  };
  const pool = await vm.KernelPool.start({ memory: vm.sharedKernelMemory(), factory, workers });
  try {
    const scenario = makeScenario(pool.kernels, pages, seed);
    return {
      crossOriginIsolated: globalThis.crossOriginIsolated,
      browserWorkers,
      workers: pool.workers,
      backend: pool.backend,
      pool: await runRamOps(vm, pool.kernels, scenario, pool),
      singleThread: await runRamOps(vm, pool.kernels, scenario),
    };
  } finally {
    await pool.close();
  }
}

/** In a page without cross-origin isolation: what starting a pool throws. */
export async function poolStartError(vm: Vm): Promise<string> {
  try {
    const pool = await vm.KernelPool.start({ memory: vm.sharedKernelMemory(), factory: vm.webWorkerFactory(), workers: 1 });
    await pool.close();
    return "started";
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}
