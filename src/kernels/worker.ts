// The worker side of a KernelPool (pool.ts): kernels instantiated on the pool's shared memory, in a scratch
// region of their own, running the jobs the pool posts. Jobs and replies are arrays of numbers (pointers,
// lengths, counts): page bytes never go through postMessage. Browser-safe; the entry scripts are
// web-worker.ts (a standard Worker) and node-worker.ts (node:worker_threads).
import { createKernels } from "./index.js";
import type { BackendName, Kernels } from "./types.js";

/** Job codes: the first number after the job id. */
export const POOL_OP = {
  ZERO_PAGES: 0, // ptr, pageCount, bitmapPtr, pageSize
  CHANGED_PAGES: 1, // ptr, shadowPtr, pageCount, bitmapPtr, refresh, pageSize
  RAM_ENCODE: 2, // the 13 RamEncodeArgs
  RAM_DECODE: 3, // inPtr, inLen, tablePtr, blockCount, pageSize, statePtr
  COPY_PAGES: 4, // listPtr, count, pageSize: count (dstPtr, srcPtr) u32 pairs at listPtr
  COPY_BYTES: 5, // dstPtr, srcPtr, length
} as const;

/** The first message a worker gets. */
export interface PoolInit {
  readonly kind: "init";
  readonly memory: WebAssembly.Memory;
  readonly backend: BackendName;
  readonly scratchPtr: number;
  readonly scratchBytes: number;
  /** The main thread's compiled build (wasm backends). */
  readonly module?: WebAssembly.Module;
}

/** What a worker posts back: ready (or not) after init; per job `[id, result]` or an error. */
export type PoolReply =
  | { readonly kind: "ready"; readonly backend: BackendName }
  | { readonly kind: "failed"; readonly message: string }
  | { readonly kind: "error"; readonly id: number; readonly message: string }
  | readonly [id: number, result: number];

/** The two ends of a worker's message channel, whatever the platform calls them. */
export interface WorkerPort {
  post(message: PoolReply): void;
  listen(handler: (message: unknown) => void): void;
}

function run(k: Kernels, job: readonly number[]): number {
  const a = job;
  switch (a[1]) {
    case POOL_OP.ZERO_PAGES:
      return k.zeroPages(a[2]!, a[3]!, a[4]!, a[5]!);
    case POOL_OP.CHANGED_PAGES:
      return k.changedPages(a[2]!, a[3]!, a[4]!, a[5]!, a[6]! !== 0, a[7]!);
    case POOL_OP.RAM_ENCODE:
      return k.ramEncode(a[2]!, a[3]!, a[4]!, a[5]!, a[6]!, a[7]!, a[8]!, a[9]!, a[10]!, a[11]!, a[12]!, a[13]!, a[14]!);
    case POOL_OP.RAM_DECODE:
      return k.ramDecode(a[2]!, a[3]!, a[4]!, a[5]!, a[6]!, a[7]!);
    case POOL_OP.COPY_PAGES:
      k.copyPages(a[2]!, a[3]!, a[4]!);
      return a[3]!;
    case POOL_OP.COPY_BYTES:
      k.copy(a[2]!, a[3]!, a[4]!);
      return a[4]!;
    default:
      throw new RangeError(`kernel pool: unknown job ${a[1]}`);
  }
}

const messageOf = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

/** Serve one pool: the first message is the PoolInit, every later one a job. */
export function serveKernels(port: WorkerPort): void {
  let k: Kernels | undefined;
  port.listen((message) => {
    if (!k) {
      const init = message as PoolInit;
      try {
        const scratch = { ptr: init.scratchPtr, bytes: init.scratchBytes };
        k = createKernels({ backend: init.backend, memory: init.memory, scratch, ...(init.module ? { module: init.module } : {}) });
        port.post({ kind: "ready", backend: k.backend });
      } catch (e) {
        port.post({ kind: "failed", message: messageOf(e) });
      }
      return;
    }
    const job = message as readonly number[];
    try {
      port.post([job[0]!, run(k, job)]);
    } catch (e) {
      port.post({ kind: "error", id: job[0]!, message: messageOf(e) });
    }
  });
}
