// The Node side of KernelPool: workers are node:worker_threads threads running node-worker.js. Node-only
// (exported from vmstream/node); the browser uses webWorkerFactory (pool.ts).
import { Worker } from "node:worker_threads";
import type { WorkerFactory } from "./pool.js";

export interface NodeWorkerOptions {
  /** The worker's entry script (default: node-worker.js beside this file). */
  readonly script?: string | URL;
  /** Node options of the worker thread (`execArgv` of node:worker_threads). */
  readonly execArgv?: string[];
}

/** Starts each KernelPool worker as a worker thread. */
export function nodeWorkerFactory(options: NodeWorkerOptions = {}): WorkerFactory {
  const script = options.script ?? new URL("./node-worker.js", import.meta.url);
  return (events) => {
    const w = new Worker(script, options.execArgv ? { execArgv: options.execArgv } : {});
    w.on("message", events.message);
    w.on("error", events.error);
    w.on("messageerror", events.error);
    w.on("exit", events.exit);
    return {
      postMessage: (message) => w.postMessage(message),
      terminate: () => w.terminate(),
      ref: () => w.ref(),
      unref: () => w.unref(),
    };
  };
}
