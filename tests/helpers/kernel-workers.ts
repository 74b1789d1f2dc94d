// TEST-ONLY: KernelPool workers that run the TypeScript sources through tools/ts-loader.mjs, so the pool tests
// need no build. A worker thread does not inherit the main thread's loader hooks: a small data: module registers
// them, then imports the entry. `WebWorkerShim` stands in for a browser's Worker (onmessage, onerror,
// postMessage, terminate) around a worker thread whose global scope gets postMessage / onmessage, so the browser
// entry (src/kernels/web-worker.ts) and webWorkerFactory run under Node.
import { Worker as NodeWorker } from "node:worker_threads";
import { nodeWorkerFactory } from "../../src/kernels/node.js";
import type { WorkerFactory } from "../../src/kernels/pool.js";

const loader = new URL("../../tools/ts-loader.mjs", import.meta.url).href;

function bootstrap(entry: string, webScope: boolean): URL {
  const scope = webScope
    ? `import { parentPort } from "node:worker_threads";
globalThis.postMessage = (m) => parentPort.postMessage(m);
// as in a browser, messages wait until the script has set onmessage
const early = [];
let handler = null;
Object.defineProperty(globalThis, "onmessage", {
  get: () => handler,
  set: (h) => { handler = h; for (const data of early.splice(0)) h({ data }); },
});
parentPort.on("message", (data) => (handler ? handler({ data }) : early.push(data)));`
    : "";
  const code = `${scope}
import { register } from "node:module";
register(${JSON.stringify(loader)}, ${JSON.stringify(loader)});
await import(${JSON.stringify(entry)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}

/** A worker-thread entry that runs the TypeScript module `entry` (for workers this project starts itself). */
export function tsWorkerScript(entry: URL): URL {
  return bootstrap(entry.href, false);
}

export function tsWorkerFactory(): WorkerFactory {
  return nodeWorkerFactory({ script: bootstrap(new URL("../../src/kernels/node-worker.ts", import.meta.url).href, false) });
}

/** The browser Worker API over a worker thread running `script` with a browser-like global scope. */
export class WebWorkerShim {
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onerror: ((e: { message: string }) => void) | null = null;
  onmessageerror: (() => void) | null = null;
  private readonly w: NodeWorker;
  constructor(script: string | URL, options?: { type?: string }) {
    if (options?.type !== "module") throw new Error("the kernel pool's web worker is a module worker");
    this.w = new NodeWorker(bootstrap(String(script), true));
    this.w.on("message", (data) => this.onmessage?.({ data }));
    this.w.on("error", (e) => this.onerror?.({ message: e.message }));
  }
  postMessage(message: unknown): void {
    this.w.postMessage(message);
  }
  terminate(): void {
    void this.w.terminate();
  }
}
