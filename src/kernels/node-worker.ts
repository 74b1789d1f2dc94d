// Entry script of a KernelPool worker under Node (node:worker_threads), started by nodeWorkerFactory (node.ts).
import { parentPort } from "node:worker_threads";
import { serveKernels } from "./worker.js";

const port = parentPort;
if (!port) throw new Error("node-worker.js runs as a worker thread of a KernelPool");
serveKernels({ post: (message) => port.postMessage(message), listen: (handler) => port.on("message", handler) });
