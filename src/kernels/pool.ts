// KernelPool: worker threads running the same kernels on one shared WebAssembly.Memory, and the RAM operations
// split over them (page scans, page copies here; ramEncode / ramDecode in parallel-ram.ts). Jobs carry only
// numbers; every result is the single-thread kernel's, byte for byte. docs/kernels.md, "Every core".
// Browser-safe: workers come from an injected factory (webWorkerFactory here, nodeWorkerFactory in node.ts).
import { createKernels } from "./index.js";
import {
  type ParallelRamDecodeOptions,
  type ParallelRamEncode,
  parallelRamDecode,
  parallelRamEncode,
  type RamEncodeResult,
  type RamEncodeSink,
} from "./parallel-ram.js";
import type { BackendChoice, BackendName, Kernels } from "./types.js";
import { isSharedMemory, kernelModule } from "./wasm.js";
import { POOL_OP, type PoolInit, type PoolReply } from "./worker.js";

/** What a worker reports to the pool (the factory wires its platform's events to these). */
export interface WorkerEvents {
  message(data: unknown): void;
  /** An uncaught error in the worker, or a message it could not deserialize. */
  error(error: unknown): void;
  /** The worker stopped (Node only; a browser Worker has no such event). */
  exit(code: number): void;
}

/** The part of a Worker the pool uses. */
export interface PoolWorker {
  postMessage(message: unknown): void;
  terminate(): unknown;
  /** Node: let the process exit while the worker idles (unref), keep it alive while jobs run (ref). */
  ref?(): void;
  unref?(): void;
}

export type WorkerFactory = (events: WorkerEvents) => PoolWorker;

/** Workers as standard module Workers running web-worker.js (browsers, Deno, Bun). */
export function webWorkerFactory(script: string | URL = new URL("./web-worker.js", import.meta.url)): WorkerFactory {
  return (events) => {
    const w = new Worker(script, { type: "module" });
    w.onmessage = (e) => events.message(e.data);
    w.onerror = (e) => events.error(e.message || "worker error");
    w.onmessageerror = () => events.error("a message from the worker could not be deserialized");
    return w;
  };
}

/**
 * Why this context cannot share memory with workers, or undefined when it can. A browser hides SharedArrayBuffer
 * from a page that is not cross-origin isolated, yet still makes a "shared" WebAssembly.Memory that no worker
 * can be sent: say so before anything is started.
 */
function sharedMemoryUnavailable(): string | undefined {
  if (typeof SharedArrayBuffer !== "undefined") return undefined;
  const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated;
  return (
    "shared memory is not available here (no SharedArrayBuffer" +
    (isolated === false ? ", crossOriginIsolated is false" : "") +
    "): a browser page must be cross-origin isolated, served with the headers " +
    'Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp (docs/kernels.md, "Every core")'
  );
}

/** A shared memory for a KernelPool: `maximumBytes` (default 4 GiB, the wasm32 limit) is reserved, not committed. */
export function sharedKernelMemory(initialBytes = 65536, maximumBytes = 2 ** 32): WebAssembly.Memory {
  const unavailable = sharedMemoryUnavailable();
  if (unavailable) throw new Error(`sharedKernelMemory: ${unavailable}`);
  const page = 65536;
  return new WebAssembly.Memory({ initial: Math.ceil(initialBytes / page), maximum: Math.ceil(maximumBytes / page), shared: true });
}

export interface KernelPoolOptions {
  /** A shared memory (sharedKernelMemory): guest RAM and every buffer the jobs touch live in it. */
  readonly memory: WebAssembly.Memory;
  readonly factory: WorkerFactory;
  /** Worker count (default: navigator.hardwareConcurrency, else 2). */
  readonly workers?: number;
  /** Backend of every worker (default 'auto'); the main thread's kernels use the same one. */
  readonly backend?: BackendChoice;
  /** The main thread's kernels on `memory` (default: created); the pool allocates its buffers with them. */
  readonly kernels?: Kernels;
  /** Jobs posted to a worker before earlier ones finish (default 2: the next job waits in its queue, no idle gap). */
  readonly depth?: number;
  /** A worker that has not reported ready after this long fails start() (default 30 s). */
  readonly startTimeoutMs?: number;
}

/** Per worker: its scratch region (warm-up) is allocated by the pool. */
const WORKER_SCRATCH = 64 << 10;

interface Job {
  readonly message: number[];
  resolve(value: number): void;
  reject(error: Error): void;
}

interface Slot {
  readonly index: number;
  worker: PoolWorker | undefined;
  scratch: number;
  readonly running: Map<number, Job>;
  ready?: { resolve(): void; reject(error: Error): void };
}

/** Page ranges covering [first, end), about `size` pages each, inner boundaries at multiples of `align` pages. */
export function splitPages(first: number, end: number, size: number, align = 64): Array<[number, number]> {
  const step = Math.max(align, Math.ceil(size / align) * align);
  const out: Array<[number, number]> = [];
  for (let a = first; a < end; ) {
    const b = Math.min(end, Math.floor(a / align) * align + step);
    out.push([a, b]);
    a = b;
  }
  return out;
}

export class KernelPool {
  /** The main thread's kernels on the shared memory: allocate RAM blocks and buffers with them. */
  readonly kernels: Kernels;
  readonly memory: WebAssembly.Memory;
  readonly backend: BackendName;
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private readonly depth: number;
  private nextId = 1;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  /** Regions the RAM operations keep between calls (output windows, control blocks), freed by close(). */
  readonly cache = new Map<string, number[]>();

  private constructor(options: KernelPoolOptions, kernels: Kernels) {
    this.memory = options.memory;
    this.kernels = kernels;
    this.backend = kernels.backend;
    this.depth = Math.max(1, options.depth ?? 2);
  }

  /** Start the workers; resolves once every one has its kernels instantiated and warmed up. */
  static async start(options: KernelPoolOptions): Promise<KernelPool> {
    const unavailable = sharedMemoryUnavailable();
    if (unavailable) throw new Error(`KernelPool: ${unavailable}`);
    if (!isSharedMemory(options.memory)) throw new RangeError("KernelPool: the memory must be shared (sharedKernelMemory)");
    const kernels = options.kernels ?? createKernels({ memory: options.memory, backend: options.backend ?? "auto" });
    if (kernels.memory !== options.memory) throw new RangeError("KernelPool: the kernels must be on the pool's memory");
    const n = options.workers ?? (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 2;
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`KernelPool: bad worker count ${n}`);
    const pool = new KernelPool(options, kernels);
    const ready: Promise<void>[] = [];
    const ms = options.startTimeoutMs ?? 30_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`KernelPool: a worker did not report ready within ${ms} ms`)), ms);
    });
    try {
      // Inside the try: a spawn that throws (no room for its scratch region) stops the workers already started.
      for (let i = 0; i < n; i++) ready.push(pool.spawn(i, options.factory));
      await Promise.race([Promise.all(ready), late]);
    } catch (e) {
      for (const r of ready) r.catch(() => {}); // close() rejects them; the error reported is `e`
      await pool.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return pool;
  }

  get workers(): number {
    return this.slots.length;
  }

  /** Set once a worker died or failed; every later call rejects with it. */
  get failed(): Error | undefined {
    return this.failure;
  }

  private spawn(index: number, factory: WorkerFactory): Promise<void> {
    const slot: Slot = { index, worker: undefined, scratch: this.kernels.alloc(WORKER_SCRATCH), running: new Map() };
    this.slots.push(slot);
    return new Promise<void>((resolve, reject) => {
      slot.ready = { resolve, reject };
      slot.worker = factory({
        message: (data) => this.onMessage(slot, data as PoolReply),
        error: (e) => this.fail(new Error(`kernel worker ${index} failed: ${e instanceof Error ? e.message : String(e)}`)),
        exit: (code) => {
          slot.worker = undefined;
          if (!this.closing) this.fail(new Error(`kernel worker ${index} exited (code ${code})`));
        },
      });
      const backend = this.kernels.backend;
      const init: PoolInit = {
        kind: "init",
        memory: this.memory,
        backend,
        scratchPtr: slot.scratch,
        scratchBytes: WORKER_SCRATCH,
        ...(backend === "js" ? {} : { module: kernelModule(backend === "wasm-simd" ? "simd" : "scalar", "shared") }),
      };
      slot.worker.postMessage(init);
    });
  }

  private onMessage(slot: Slot, reply: PoolReply): void {
    if (Array.isArray(reply)) {
      const [id, result] = reply as readonly [number, number];
      const job = slot.running.get(id);
      if (!job) return;
      slot.running.delete(id);
      if (slot.running.size === 0) slot.worker?.unref?.();
      job.resolve(result);
      this.pump();
      return;
    }
    const r = reply as Exclude<PoolReply, readonly [number, number]>;
    if (r.kind === "ready") {
      slot.worker?.unref?.();
      slot.ready?.resolve();
      slot.ready = undefined;
    } else if (r.kind === "failed") {
      this.fail(new Error(`kernel worker ${slot.index} could not start: ${r.message}`));
    } else if (r.kind === "error") {
      const job = slot.running.get(r.id);
      if (!job) return;
      slot.running.delete(r.id);
      if (slot.running.size === 0) slot.worker?.unref?.();
      job.reject(new Error(`kernel worker ${slot.index}: ${r.message}`));
      this.pump();
    }
  }

  /** A worker died: the pool is unusable; every job waiting or running rejects, every worker stops. */
  private fail(error: Error): void {
    if (this.failure || this.closing) return;
    this.failure = error;
    for (const s of this.slots) {
      s.ready?.reject(error);
      s.ready = undefined;
      for (const job of s.running.values()) job.reject(error);
      s.running.clear();
    }
    for (const job of this.queue.splice(0)) job.reject(error);
    void this.close();
  }

  /** Run one job on the first worker with room in its queue: `op` is a POOL_OP, `args` its numbers. */
  run(op: number, args: readonly number[]): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new Error("KernelPool is closed"));
    return new Promise<number>((resolve, reject) => {
      this.queue.push({ message: [this.nextId++, op, ...args], resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let best: Slot | undefined;
      for (const s of this.slots) {
        if (s.worker && !s.ready && s.running.size < this.depth && (!best || s.running.size < best.running.size)) best = s;
      }
      if (!best) return;
      const job = this.queue.shift()!;
      if (best.running.size === 0) best.worker!.ref?.();
      best.running.set(job.message[0]!, job);
      best.worker!.postMessage(job.message);
    }
  }

  /** Stop every worker (jobs not finished reject) and free the pool's regions. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = this.failure ?? new Error("KernelPool is closed");
      for (const job of this.queue.splice(0)) job.reject(closed);
      const stops: unknown[] = [];
      for (const s of this.slots) {
        s.ready?.reject(closed);
        s.ready = undefined;
        for (const job of s.running.values()) job.reject(closed);
        s.running.clear();
        if (s.worker) stops.push(s.worker.terminate());
      }
      await Promise.allSettled(stops);
      // The workers have stopped: nothing writes into these regions any more.
      for (const s of this.slots) this.kernels.free(s.scratch);
      for (const list of this.cache.values()) for (const ptr of list) this.kernels.free(ptr);
      this.cache.clear();
    })();
    return this.closing;
  }

  /** A region of `bytes` from the pool's cache under `key`, or newly allocated; give it back with `release`. */
  take(key: string, bytes: number, align = 64): number {
    const list = this.cache.get(key);
    return list?.pop() ?? this.kernels.alloc(bytes, align);
  }

  release(key: string, ptr: number): void {
    const list = this.cache.get(key);
    if (list) list.push(ptr);
    else this.cache.set(key, [ptr]);
  }

  /** Ranges of a page operation: `rangePages` (default: about 4 per worker, 256..16384 pages) aligned to 64 pages. */
  pageRanges(first: number, end: number, rangePages?: number): Array<[number, number]> {
    const size = rangePages ?? Math.min(16384, Math.max(256, Math.ceil((end - first) / (4 * this.workers))));
    return splitPages(first, end, size);
  }

  /** Kernels.zeroPages split over the workers: the same bitmap bytes and count. */
  async zeroPages(ptr: number, pageCount: number, bitmapPtr: number, pageSize = 4096, rangePages?: number): Promise<number> {
    const jobs = this.pageRanges(0, pageCount, rangePages).map(([a, b]) =>
      this.run(POOL_OP.ZERO_PAGES, [ptr + a * pageSize, b - a, bitmapPtr + a / 8, pageSize]),
    );
    return sum(await Promise.all(jobs));
  }

  /** Kernels.changedPages split over the workers: the same bitmap bytes, count and shadow. */
  async changedPages(
    ptr: number,
    shadowPtr: number,
    pageCount: number,
    bitmapPtr: number,
    refresh: boolean,
    pageSize = 4096,
    rangePages?: number,
  ): Promise<number> {
    const jobs = this.pageRanges(0, pageCount, rangePages).map(([a, b]) =>
      this.run(POOL_OP.CHANGED_PAGES, [ptr + a * pageSize, shadowPtr + a * pageSize, b - a, bitmapPtr + a / 8, refresh ? 1 : 0, pageSize]),
    );
    return sum(await Promise.all(jobs));
  }

  /**
   * Copy `count` pages listed as (dstPtr, srcPtr) u32 pairs at `listPtr` (4-aligned), split over the workers:
   * the page data of a multifd packet, say. Destination pages must be distinct (and not sources of another pair).
   */
  async copyPages(listPtr: number, count: number, pageSize = 4096, pairsPerJob?: number): Promise<void> {
    const per = pairsPerJob ?? Math.max(64, Math.ceil(count / (4 * this.workers)));
    const jobs: Promise<number>[] = [];
    for (let i = 0; i < count; i += per) jobs.push(this.run(POOL_OP.COPY_PAGES, [listPtr + i * 8, Math.min(per, count - i), pageSize]));
    await Promise.all(jobs);
  }

  /** Copy `length` bytes from `srcPtr` to `dstPtr` in a worker (memmove): a window into its place in a stream, say. */
  async copyBytes(dstPtr: number, srcPtr: number, length: number): Promise<void> {
    await this.run(POOL_OP.COPY_BYTES, [dstPtr, srcPtr, length]);
  }

  /** Kernels.ramEncode of a whole page range split over the workers; the records go to `sink` in order (parallel-ram.ts). */
  ramEncode(args: ParallelRamEncode, sink: RamEncodeSink): Promise<RamEncodeResult> {
    return parallelRamEncode(this, args, sink);
  }

  /** Kernels.ramDecode of a window split into runs decoded by the workers (parallel-ram.ts). */
  ramDecode(
    inPtr: number,
    inLen: number,
    tablePtr: number,
    blockCount: number,
    pageSize: number,
    statePtr: number,
    options?: ParallelRamDecodeOptions,
  ): Promise<number> {
    return parallelRamDecode(this, inPtr, inLen, tablePtr, blockCount, pageSize, statePtr, options);
  }
}

function sum(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}
