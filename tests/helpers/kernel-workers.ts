// TEST-ONLY: KernelPool workers that run the TypeScript sources (src/kernels/node-worker.ts) through
// tools/ts-loader.mjs, so the pool tests need no build. A worker thread does not inherit the main thread's
// loader hooks: a small data: module registers them, then imports the entry.
import { nodeWorkerFactory } from "../../src/kernels/node.js";
import type { WorkerFactory } from "../../src/kernels/pool.js";

const loader = new URL("../../tools/ts-loader.mjs", import.meta.url).href;
const entry = new URL("../../src/kernels/node-worker.ts", import.meta.url).href;
const bootstrap = `import { register } from "node:module"; register(${JSON.stringify(loader)}, ${JSON.stringify(loader)}); await import(${JSON.stringify(entry)});`;

export const TS_WORKER_SCRIPT = new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`);

export function tsWorkerFactory(): WorkerFactory {
  return nodeWorkerFactory({ script: TS_WORKER_SCRIPT });
}
