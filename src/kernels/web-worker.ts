// Entry script of a KernelPool worker in a standard (module) Worker: new Worker(url of this file, { type: "module" }).
import { serveKernels } from "./worker.js";

const scope = globalThis as unknown as { postMessage(message: unknown): void; onmessage: ((event: { data: unknown }) => void) | null };
serveKernels({
  post: (message) => scope.postMessage(message),
  listen: (handler) => {
    scope.onmessage = (event) => handler(event.data);
  },
});
