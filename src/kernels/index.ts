// createKernels: one Kernels interface over three backends with identical results.
import { LinearMemory } from "./arena.js";
import { instantiateKernels, simdSupported, type RawKernelExports } from "./wasm.js";
import { jsKernelFunctions } from "./js/index.js";
import type { BackendChoice, BackendName, Kernels } from "./types.js";

export * from "./types.js";
export { LinearMemory, MAX_MEMORY_BYTES } from "./arena.js";
export { simdSupported } from "./wasm.js";

export interface KernelOptions {
  /** 'auto' (default) = wasm-simd where WebAssembly.validate accepts it, else wasm-scalar. */
  backend?: BackendChoice;
  /**
   * A host-owned memory (for example an emulator's). The wasm backends then use the
   * import-memory build (no data segments), and every region the kernels allocate is claimed by
   * growing the memory, so host bytes below its current end are never handed out.
   */
  memory?: WebAssembly.Memory;
  /** Skip the warm-up calls (tests of first-call behaviour only). */
  noWarmup?: boolean;
}

/** The first 64 KiB stay unused: static data of the exported-memory build lives there. */
const OWN_MEMORY_BASE = 65536;

export function createKernels(options: KernelOptions = {}): Kernels {
  const choice = options.backend ?? "auto";
  const backend: BackendName = choice === "auto" ? (simdSupported() ? "wasm-simd" : "wasm-scalar") : choice;
  if (backend === "wasm-simd" && !simdSupported()) throw new Error("createKernels: this engine does not support WebAssembly SIMD");

  let raw: RawKernelExports;
  let lm: LinearMemory;
  if (backend === "js") {
    const memory = options.memory ?? new WebAssembly.Memory({ initial: 1 });
    lm = new LinearMemory(memory, options.memory ? memory.buffer.byteLength : OWN_MEMORY_BASE);
    raw = jsKernelFunctions(lm);
  } else {
    const flavour = backend === "wasm-simd" ? "simd" : "scalar";
    raw = instantiateKernels(flavour, options.memory);
    const memory = options.memory ?? raw.memory!;
    lm = new LinearMemory(memory, options.memory ? memory.buffer.byteLength : OWN_MEMORY_BASE);
  }
  const k = bind(backend, lm, raw);
  if (!options.noWarmup) warmUp(k);
  return k;
}

function bind(backend: BackendName, lm: LinearMemory, r: RawKernelExports): Kernels {
  return {
    backend,
    memory: lm.memory,
    get u8() {
      return lm.u8;
    },
    get view() {
      return lm.view;
    },
    alloc: (bytes, align) => lm.alloc(bytes, align),
    free: (ptr) => lm.free(ptr),
    zeroPages: (ptr, n, bm, pageSize = 4096) => r.zeroPages(ptr, n, bm, pageSize),
    changedPages: (ptr, shadow, n, bm, refresh, pageSize = 4096) => r.changedPages(ptr, shadow, n, bm, refresh ? 1 : 0, pageSize),
    xbzrleEncode: (oldPtr, newPtr, outPtr, limit, pageSize = 4096) => r.xbzrleEncode(oldPtr, newPtr, outPtr, limit, pageSize),
    xbzrleDecode: (src, len, page, pageSize = 4096) => r.xbzrleDecode(src, len, page, pageSize),
    ramEncode: (...a) => r.ramEncode(...a),
    ramDecode: (...a) => r.ramDecode(...a),
    bswap16: (ptr, count) => r.bswap16(ptr, count),
    bswap32: (ptr, count) => r.bswap32(ptr, count),
    bswap64: (ptr, count) => r.bswap64(ptr, count),
  };
}

/**
 * V8 does not tier up a wasm call that is already running: a long first call would stay in the
 * baseline tier. So every kernel runs once on a small input at load.
 */
function warmUp(k: Kernels): void {
  const P = 4096;
  const base = k.alloc(8 * P);
  const page0 = base, page1 = base + P, out = base + 2 * P, bm = base + 5 * P, state = base + 6 * P, table = base + 7 * P;
  const name = table + 64;
  const u8 = k.u8;
  u8.fill(0, base, base + 8 * P);
  u8[page1 + 100] = 1;
  for (let i = 0; i < 3; i++) {
    k.zeroPages(page0, 2, bm);
    k.changedPages(page0, page1, 1, bm, false);
    const n = k.xbzrleEncode(page0, page1, out, P);
    k.xbzrleDecode(out, Math.max(n, 0), page0);
    k.bswap16(out, 8);
    k.bswap32(out, 8);
    k.bswap64(out, 8);
    u8[page1 + 100] = 1;
    // A one-block RAM round trip: name "w", 2 pages.
    u8[name] = 0x77;
    const len = k.ramEncode(page0, P, 0, 2, 0, 0, 0, name, 1, out, 3 * P, 1, state);
    const t = new Uint32Array(k.memory.buffer, table, 8);
    t.set([name, 1, page0, 2 * P, 0, 0, 0, 0]);
    new Uint32Array(k.memory.buffer, state, 8).fill(0xffffffff, 0, 1);
    k.ramDecode(out, len, table, 1, P, state);
  }
  k.free(base);
}
