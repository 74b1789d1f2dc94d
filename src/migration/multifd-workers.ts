// multifd channels on worker threads (Node): one worker per channel owns its TCP connection and compression
// stream and reads its packets' pages out of the shared kernels' memory, so the page copies, the compression
// and the socket writes leave the main thread (QEMU runs one thread per channel). The engine hands packets over
// as descriptions (MultifdPacketPort). docs/live-migration.md, "multifd on worker threads".
import { Worker } from "node:worker_threads";
import { VmstreamError } from "../io/errors.js";
import { isSharedMemory } from "../kernels/wasm.js";
import type { MultifdCompression } from "../sections/ram/multifd.js";
import type { MultifdPacketJob, MultifdPortSetup } from "../sections/ram/multifd-source.js";
import type { LiveChannelPort } from "./live.js";

/** Main thread -> channel worker. */
export type ChannelWorkerRequest =
  | {
      readonly kind: "init";
      readonly memory: WebAssembly.Memory;
      readonly pageSize: number;
      readonly compression: MultifdCompression;
      readonly level?: number;
    }
  | { readonly kind: "connect"; readonly host: string; readonly port: number; readonly timeoutMs?: number }
  | { readonly kind: "raw"; readonly bytes: Uint8Array }
  | { readonly kind: "packet"; readonly job: MultifdPacketJob }
  | { readonly kind: "end" };

/** Channel worker -> main thread. `written`: one posted item's bytes are in the socket. */
export type ChannelWorkerReply =
  | { readonly kind: "idle" }
  | { readonly kind: "connected" }
  | { readonly kind: "written"; readonly bytes: number }
  | { readonly kind: "ended" }
  | { readonly kind: "error"; readonly message: string };

export interface MultifdChannelWorkersOptions {
  /** The worker's entry script (default: multifd-channel-worker.js beside this file). */
  readonly script?: string | URL;
}

interface ChannelThread {
  readonly worker: Worker;
  /** Resolves once the thread's script is loaded (it says "idle"). */
  readonly loaded: Promise<void>;
  posted: number;
  done: number;
  wire: number;
  connected?: { resolve(): void; reject(e: Error): void };
  ended?: { resolve(): void; reject(e: Error): void };
}

/**
 * One worker thread per channel. The threads outlive a migration: start() them ahead (a thread takes tens of ms
 * to come up, more than a fast migration of a small guest) and reuse them for the next migration; close() stops
 * them. A failed migration stops its threads (the next one starts fresh ones).
 */
export class MultifdChannelWorkers implements LiveChannelPort {
  private threads: ChannelThread[] = [];
  /** The current migration's threads (the first `channels`). */
  private active: ChannelThread[] = [];
  private failure: VmstreamError | undefined;
  private lastBytes = 0;
  private waiters: Array<{ targets: number[]; resolve(): void; reject(e: Error): void }> = [];

  constructor(private readonly options: MultifdChannelWorkersOptions = {}) {}

  /** Have `channels` threads up and loaded (starting the missing ones). */
  async start(channels: number): Promise<void> {
    while (this.threads.length < channels) this.spawn();
    const threads = [...this.threads];
    for (const t of threads) t.worker.ref(); // keep the process up while they come up
    try {
      await Promise.all(threads.map((t) => t.loaded));
    } finally {
      for (const t of threads) if (!this.active.includes(t)) t.worker.unref();
    }
  }

  /** The engine's setup: the threads of `setup.channels` channels, each told the memory and its compression. */
  open(setup: MultifdPortSetup): void {
    if (this.active.length > 0) throw new VmstreamError("STATE", "multifd channel workers are open already");
    if (!isSharedMemory(setup.memory))
      throw new VmstreamError("RANGE", "multifd channel workers read the guest's pages from a shared memory", {
        detail: "create the kernels on sharedKernelMemory()",
      });
    this.failure = undefined;
    while (this.threads.length < setup.channels) this.spawn();
    this.active = this.threads.slice(0, setup.channels);
    for (const t of this.active) {
      t.worker.ref(); // a migration in progress keeps the process up
      t.posted = t.done = t.wire = 0;
      t.worker.postMessage({
        kind: "init",
        memory: setup.memory,
        pageSize: setup.pageSize,
        compression: setup.compression,
        ...(setup.level !== undefined ? { level: setup.level } : {}),
      } satisfies ChannelWorkerRequest);
    }
  }

  /** Connect channel 0, 1, ... to HOST:PORT, one after another (after the main stream's connection). */
  async connect(target: { host: string; port: number }, options: { timeoutMs?: number } = {}): Promise<void> {
    for (const t of this.active) {
      this.check();
      const up = new Promise<void>((resolve, reject) => (t.connected = { resolve, reject }));
      t.worker.postMessage({
        kind: "connect",
        ...target,
        ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      } satisfies ChannelWorkerRequest);
      await up;
    }
    this.check();
  }

  raw(channel: number, bytes: Uint8Array): void {
    this.post(channel, { kind: "raw", bytes });
  }

  packet(channel: number, job: MultifdPacketJob): void {
    this.post(channel, { kind: "packet", job });
  }

  /** Resolves once every item posted so far is in its socket. */
  settled(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const targets = this.active.map((t) => t.posted);
    if (this.active.every((t, i) => t.done >= targets[i]!)) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ targets, resolve, reject }));
  }

  /** Every channel's bytes written and its connection ended; the threads stay for the next migration. */
  async end(): Promise<void> {
    await this.settled();
    await Promise.all(
      this.active.map((t) => {
        const ended = new Promise<void>((resolve, reject) => (t.ended = { resolve, reject }));
        t.worker.postMessage({ kind: "end" } satisfies ChannelWorkerRequest);
        return ended;
      }),
    );
    this.lastBytes = this.bytes;
    for (const t of this.active) t.worker.unref();
    this.active = [];
  }

  /** Stop every thread (an unfinished connection is cut: the destination sees the migration fail). */
  async close(): Promise<void> {
    const threads = this.threads;
    this.threads = [];
    this.active = [];
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }

  /** Bytes the current (or last) migration's channels wrote. */
  get bytes(): number {
    return this.active.length > 0 ? this.active.reduce((n, t) => n + t.wire, 0) : this.lastBytes;
  }

  get error(): VmstreamError | undefined {
    return this.failure;
  }

  private spawn(): void {
    const worker = new Worker(this.options.script ?? new URL("./multifd-channel-worker.js", import.meta.url));
    let loaded!: () => void;
    const t: ChannelThread = { worker, loaded: new Promise((r) => (loaded = r)), posted: 0, done: 0, wire: 0 };
    worker.on("message", (m: ChannelWorkerReply) => (m.kind === "idle" ? loaded() : this.onReply(t, m)));
    worker.on("error", (e) => this.fail(t, e.message));
    worker.on("exit", (code) => {
      if (this.threads.includes(t)) this.fail(t, `its thread exited (code ${code})`);
    });
    worker.unref(); // an idle thread does not keep the process alive
    this.threads.push(t);
  }

  private post(channel: number, m: ChannelWorkerRequest): void {
    const t = this.active[channel];
    if (!t) throw new VmstreamError("RANGE", "no such multifd channel", { detail: `${channel} of ${this.active.length}` });
    this.check();
    t.posted++;
    t.worker.postMessage(m);
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  private onReply(t: ChannelThread, m: ChannelWorkerReply): void {
    switch (m.kind) {
      case "connected":
        t.connected?.resolve();
        t.connected = undefined;
        return;
      case "written":
        t.done++;
        t.wire += m.bytes;
        this.wake();
        return;
      case "ended":
        t.ended?.resolve();
        t.ended = undefined;
        return;
      case "error":
        this.fail(t, m.message);
    }
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => {
      if (!this.active.every((t, i) => t.done >= w.targets[i]!)) return true;
      w.resolve();
      return false;
    });
  }

  private fail(t: ChannelThread, message: string): void {
    if (this.failure) return;
    const channel = this.active.indexOf(t);
    this.failure = new VmstreamError("IO", channel >= 0 ? `multifd channel ${channel} failed` : "a multifd channel thread failed", { detail: message });
    const e = this.failure;
    for (const w of this.waiters.splice(0)) w.reject(e);
    for (const x of this.active) {
      x.connected?.reject(e);
      x.ended?.reject(e);
    }
    // the threads of a failed migration are not reused: their sockets and streams are in an unknown state
    void this.close();
  }
}
