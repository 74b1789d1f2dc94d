// Loads the AssemblyScript kernels from the bytes embedded at build time (no fs, no fetch):
// SIMD where WebAssembly.validate accepts it, else scalar; exported memory, or the import-memory
// build when a host passes its own memory (the shared-memory build when that memory is shared).
import type { RamEncodeArgs } from "./types.js";
import { wasmBase64 } from "./wasm-bytes.generated.js";

export type WasmFlavour = "simd" | "scalar";
/** Which memory a build uses: its own (exported), an imported one, or an imported shared one. */
export type WasmMemoryKind = "own" | "import" | "shared";

/** Whether `memory` is a shared WebAssembly.Memory (its buffer a SharedArrayBuffer). */
export function isSharedMemory(memory: WebAssembly.Memory): boolean {
  return typeof SharedArrayBuffer !== "undefined" && memory.buffer instanceof SharedArrayBuffer;
}

/** The numeric exports of assembly/index.ts. */
export interface RawKernelExports {
  readonly memory?: WebAssembly.Memory;
  zeroPages(ptr: number, pageCount: number, bitmapPtr: number, pageSize: number): number;
  changedPages(ptr: number, shadowPtr: number, pageCount: number, bitmapPtr: number, refresh: number, pageSize: number): number;
  xbzrleEncode(oldPtr: number, newPtr: number, outPtr: number, limit: number, pageSize: number): number;
  xbzrleDecode(srcPtr: number, len: number, pagePtr: number, pageSize: number): number;
  ramEncode(...args: RamEncodeArgs): number;
  ramDecode(inPtr: number, inLen: number, tablePtr: number, blockCount: number, pageSize: number, statePtr: number): number;
  bswap16(ptr: number, count: number): void;
  bswap32(ptr: number, count: number): void;
  bswap64(ptr: number, count: number): void;
  copyBytes(dstPtr: number, srcPtr: number, length: number): void;
  copyPages(listPtr: number, count: number, pageSize: number): void;
}

const decoded = new Map<string, Uint8Array>();

/** The embedded bytes of one build (`true` / `false`: "import" / "own"). */
export function wasmBytes(flavour: WasmFlavour, memory: boolean | WasmMemoryKind): Uint8Array {
  const kind = memory === true ? "import" : memory === false ? "own" : memory;
  const key = (kind === "own" ? flavour : `${flavour}-${kind}`) as keyof typeof wasmBase64;
  let bytes = decoded.get(key);
  if (!bytes) {
    const bin = atob(wasmBase64[key]);
    bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    decoded.set(key, bytes);
  }
  return bytes;
}

let simdOk: boolean | undefined;
/** Whether this engine accepts the SIMD build. */
export function simdSupported(): boolean {
  if (simdOk === undefined) simdOk = WebAssembly.validate(wasmBytes("simd", false) as BufferSource);
  return simdOk;
}

const modules = new Map<string, WebAssembly.Module>();

/**
 * The compiled module of one build (compiled once per thread). Another thread can instantiate it (postMessage
 * carries a Module) and then runs the code this thread's engine already optimised, instead of compiling and
 * tiering up its own copy.
 */
export function kernelModule(flavour: WasmFlavour, kind: WasmMemoryKind): WebAssembly.Module {
  const key = `${flavour}-${kind}`;
  let mod = modules.get(key);
  if (!mod) {
    mod = new WebAssembly.Module(wasmBytes(flavour, kind) as BufferSource);
    modules.set(key, mod);
  }
  return mod;
}

/**
 * Instantiate one build; `memory` selects the import-memory variant (shared or not, as `memory` is); `module`
 * is that build compiled elsewhere (kernelModule of another thread).
 */
export function instantiateKernels(flavour: WasmFlavour, memory?: WebAssembly.Memory, module?: WebAssembly.Module): RawKernelExports {
  const kind: WasmMemoryKind = !memory ? "own" : isSharedMemory(memory) ? "shared" : "import";
  if (module) modules.set(`${flavour}-${kind}`, module);
  const mod = kernelModule(flavour, kind);
  const imports: WebAssembly.Imports = {
    env: {
      ...(memory ? { memory } : {}),
      abort() {
        throw new Error("vmstream kernel abort");
      },
    },
  };
  return new WebAssembly.Instance(mod, imports).exports as unknown as RawKernelExports;
}
