// Loads the AssemblyScript kernels from the bytes embedded at build time (no fs, no fetch):
// SIMD where WebAssembly.validate accepts it, else scalar; exported memory, or the import-memory
// build when a host passes its own memory.
import type { RamEncodeArgs } from "./types.js";
import { wasmBase64 } from "./wasm-bytes.generated.js";

export type WasmFlavour = "simd" | "scalar";

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
}

const decoded = new Map<string, Uint8Array>();

/** The embedded bytes of one build. */
export function wasmBytes(flavour: WasmFlavour, importMemory: boolean): Uint8Array {
  const key = (importMemory ? `${flavour}-import` : flavour) as keyof typeof wasmBase64;
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

/** Instantiate one build; `memory` selects the import-memory variant. */
export function instantiateKernels(flavour: WasmFlavour, memory?: WebAssembly.Memory): RawKernelExports {
  const key = `${flavour}${memory ? "-import" : ""}`;
  let mod = modules.get(key);
  if (!mod) {
    mod = new WebAssembly.Module(wasmBytes(flavour, memory !== undefined) as BufferSource);
    modules.set(key, mod);
  }
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
