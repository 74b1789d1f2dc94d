// createKernels: one Kernels interface over three backends with identical results.
import { LinearMemory } from "./arena.js";
import { jsKernelFunctions } from "./js/index.js";
import { type BackendChoice, type BackendName, BLK, DEC, ENC, type Kernels } from "./types.js";
import { instantiateKernels, type RawKernelExports, simdSupported } from "./wasm.js";

export { LinearMemory, MAX_MEMORY_BYTES } from "./arena.js";
export * from "./types.js";
export { simdSupported } from "./wasm.js";

export interface KernelOptions {
  /** 'auto' (default) = wasm-simd where WebAssembly.validate accepts it, else wasm-scalar. */
  backend?: BackendChoice;
  /**
   * A host-owned memory (for example an emulator's). The wasm backends then use the
   * import-memory build (no data segments; the shared-memory build when `memory` is shared), and
   * every region the kernels allocate is claimed by growing the memory, so host bytes below its
   * current end are never handed out.
   */
  memory?: WebAssembly.Memory;
  /**
   * With `memory`: allocate only inside [ptr, ptr + bytes) of it, a region another instance reserved with
   * `alloc`, and never grow it. Instances on one shared memory in several threads (a KernelPool's workers)
   * each get a region of their own, so no two hand out the same bytes. The warm-up takes 36 KiB of it.
   */
  scratch?: { readonly ptr: number; readonly bytes: number };
  /**
   * The wasm backend's build already compiled, by another thread (a KernelPool passes its own to its workers,
   * which then run the code the main thread's engine has optimised). It must be the build this call would pick.
   */
  module?: WebAssembly.Module;
  /** Skip the warm-up calls (tests of first-call behaviour only). */
  noWarmup?: boolean;
}

/**
 * One allocator per host memory, shared by every Kernels instance on it: two instances with
 * allocators of their own would hand out the same bytes twice.
 */
const hostArenas = new WeakMap<WebAssembly.Memory, LinearMemory>();
function hostArena(memory: WebAssembly.Memory): LinearMemory {
  let lm = hostArenas.get(memory);
  if (!lm) {
    lm = new LinearMemory(memory, memory.buffer.byteLength, true);
    hostArenas.set(memory, lm);
  }
  return lm;
}

/** The first 64 KiB stay unused: static data of the exported-memory build lives there. */
const OWN_MEMORY_BASE = 65536;

export function createKernels(options: KernelOptions = {}): Kernels {
  const choice = options.backend ?? "auto";
  const backend: BackendName = choice === "auto" ? (simdSupported() ? "wasm-simd" : "wasm-scalar") : choice;
  if (backend === "wasm-simd" && !simdSupported()) throw new Error("createKernels: this engine does not support WebAssembly SIMD");

  const scratch = options.scratch;
  if (scratch && !options.memory) throw new RangeError("createKernels: a scratch region needs the memory it lies in");
  const arenaOf = (memory: WebAssembly.Memory): LinearMemory =>
    scratch ? new LinearMemory(memory, scratch.ptr, false, scratch.ptr + scratch.bytes) : hostArena(memory);
  let raw: RawKernelExports;
  let lm: LinearMemory;
  if (backend === "js") {
    const memory = options.memory ?? new WebAssembly.Memory({ initial: 1 });
    lm = options.memory ? arenaOf(memory) : new LinearMemory(memory, OWN_MEMORY_BASE);
    raw = jsKernelFunctions(lm);
  } else {
    const flavour = backend === "wasm-simd" ? "simd" : "scalar";
    raw = instantiateKernels(flavour, options.memory, options.module);
    lm = options.memory ? arenaOf(options.memory) : new LinearMemory(raw.memory!, OWN_MEMORY_BASE);
  }
  const k = bind(backend, lm, raw);
  if (!options.noWarmup) warmUp(k);
  return k;
}

function bind(backend: BackendName, lm: LinearMemory, r: RawKernelExports): Kernels {
  // Kernels trust their arguments (no checks per page), so every call is checked once here: the
  // same misuse gives the same RangeError on every backend instead of a trap or silent garbage.
  const range = (what: string, ptr: number, len: number): void => {
    const size = lm.memory.buffer.byteLength;
    if (!Number.isInteger(ptr) || !Number.isInteger(len) || ptr < 0 || len < 0 || ptr + len > size) {
      throw new RangeError(`${what}: [${ptr}, ${ptr}+${len}) is outside the kernels' memory (${size} bytes)`);
    }
  };
  const pages = (pageSize: number): void => {
    if (!Number.isInteger(pageSize) || pageSize < 64 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
      throw new RangeError(`page size ${pageSize} is not a power of two in 64..65536`);
    }
  };
  // RAM record headers keep flags up to 0x100 in the low bits of the page offset.
  const ramPages = (pageSize: number): void => {
    pages(pageSize);
    if (pageSize < 1024) throw new RangeError(`page size ${pageSize}: RAM records need pages of at least 1024 bytes`);
  };
  const count = (what: string, n: number): void => {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`${what}: bad count ${n}`);
  };
  return {
    backend,
    memory: lm.memory,
    get u8() {
      return lm.u8;
    },
    get view() {
      return lm.view;
    },
    alloc: (bytes, align, zeroed) => lm.alloc(bytes, align, zeroed),
    free: (ptr, clean) => lm.free(ptr, clean),
    zeroPages(ptr, n, bm, pageSize = 4096) {
      pages(pageSize);
      count("zeroPages", n);
      range("zeroPages RAM", ptr, n * pageSize);
      range("zeroPages bitmap", bm, Math.ceil(n / 8));
      return r.zeroPages(ptr, n, bm, pageSize);
    },
    changedPages(ptr, shadow, n, bm, refresh, pageSize = 4096) {
      pages(pageSize);
      count("changedPages", n);
      range("changedPages RAM", ptr, n * pageSize);
      range("changedPages shadow", shadow, n * pageSize);
      range("changedPages bitmap", bm, Math.ceil(n / 8));
      return r.changedPages(ptr, shadow, n, bm, refresh ? 1 : 0, pageSize);
    },
    xbzrleEncode(oldPtr, newPtr, outPtr, limit, pageSize = 4096) {
      pages(pageSize);
      count("xbzrleEncode limit", limit);
      range("xbzrleEncode old page", oldPtr, pageSize);
      range("xbzrleEncode new page", newPtr, pageSize);
      range("xbzrleEncode output", outPtr, limit);
      return r.xbzrleEncode(oldPtr, newPtr, outPtr, limit, pageSize);
    },
    xbzrleDecode(src, len, page, pageSize = 4096) {
      pages(pageSize);
      count("xbzrleDecode length", len);
      range("xbzrleDecode input", src, len);
      range("xbzrleDecode page", page, pageSize);
      return r.xbzrleDecode(src, len, page, pageSize);
    },
    ramEncode(blockPtr, pageSize, firstPage, endPage, sendMapPtr, slotMapPtr, cachePtr, namePtr, nameLen, outPtr, outCap, options, statePtr) {
      ramPages(pageSize);
      count("ramEncode firstPage", firstPage);
      count("ramEncode endPage", endPage);
      if (firstPage > endPage) throw new RangeError(`ramEncode: firstPage ${firstPage} > endPage ${endPage}`);
      if (!Number.isInteger(nameLen) || nameLen < 0 || nameLen > 255) throw new RangeError(`ramEncode: block name length ${nameLen} is not 0..255`);
      range("ramEncode block", blockPtr, endPage * pageSize);
      if (sendMapPtr !== 0) range("ramEncode send bitmap", sendMapPtr, Math.ceil(endPage / 8));
      if (slotMapPtr !== 0) range("ramEncode slot map", slotMapPtr, endPage * 4);
      range("ramEncode name", namePtr, nameLen);
      range("ramEncode output", outPtr, outCap);
      range("ramEncode state", statePtr, ENC.SIZE * 4);
      return r.ramEncode(blockPtr, pageSize, firstPage, endPage, sendMapPtr, slotMapPtr, cachePtr, namePtr, nameLen, outPtr, outCap, options, statePtr);
    },
    ramDecode(inPtr, inLen, tablePtr, blockCount, pageSize, statePtr) {
      ramPages(pageSize);
      count("ramDecode block count", blockCount);
      range("ramDecode input", inPtr, inLen);
      range("ramDecode block table", tablePtr, blockCount * BLK.WORDS * 4);
      range("ramDecode state", statePtr, DEC.SIZE * 4);
      const t = new Uint32Array(lm.memory.buffer, tablePtr, blockCount * BLK.WORDS);
      for (let b = 0; b < blockCount; b++) {
        const e = b * BLK.WORDS;
        range("ramDecode block name", t[e + BLK.NAME_PTR]!, t[e + BLK.NAME_LEN]!);
        if (t[e + BLK.BASE] !== 0) {
          range("ramDecode block", t[e + BLK.BASE]!, t[e + BLK.LEN_LO]!);
          // word 4 of a materialised block: its written-page bitmap (BLK.WRITTEN), or 0
          if (t[e + BLK.WRITTEN] !== 0) range("ramDecode written-page bitmap", t[e + BLK.WRITTEN]!, Math.ceil(Math.floor(t[e + BLK.LEN_LO]! / pageSize) / 8));
        }
      }
      return r.ramDecode(inPtr, inLen, tablePtr, blockCount, pageSize, statePtr);
    },
    bswap16(ptr, n) {
      count("bswap16", n);
      range("bswap16", ptr, n * 2);
      r.bswap16(ptr, n);
    },
    bswap32(ptr, n) {
      count("bswap32", n);
      range("bswap32", ptr, n * 4);
      r.bswap32(ptr, n);
    },
    bswap64(ptr, n) {
      count("bswap64", n);
      range("bswap64", ptr, n * 8);
      r.bswap64(ptr, n);
    },
    copy(dst, src, length) {
      count("copy", length);
      range("copy source", src, length);
      range("copy destination", dst, length);
      r.copyBytes(dst, src, length);
    },
    copyPages(list, n, pageSize = 4096) {
      count("copyPages", n);
      if (!Number.isInteger(pageSize) || pageSize < 1) throw new RangeError(`copyPages: bad page size ${pageSize}`);
      range("copyPages list", list, n * 8);
      const v = lm.view;
      for (let i = 0; i < n; i++) {
        range("copyPages destination page", v.getUint32(list + i * 8, true), pageSize);
        range("copyPages source page", v.getUint32(list + i * 8 + 4, true), pageSize);
      }
      r.copyPages(list, n, pageSize);
    },
  };
}

/**
 * V8 does not tier up a wasm call that is already running: a long first call would stay in the
 * baseline tier. So every kernel runs once on a small input at load.
 */
function warmUp(k: Kernels): void {
  const P = 4096;
  const base = k.alloc(8 * P);
  const page0 = base,
    page1 = base + P,
    out = base + 2 * P,
    bm = base + 5 * P,
    state = base + 6 * P,
    table = base + 7 * P;
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
    k.copy(out, page1, 64);
    new Uint32Array(k.memory.buffer, state + 64, 2).set([out, page1]);
    k.copyPages(state + 64, 1, P);
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
