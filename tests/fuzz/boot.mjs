// The fuzz worker's entry: a worker thread starts without its parent's module hooks, so it registers the
// repository's TypeScript loader itself (tools/ts-loader.mjs) before importing the worker proper.
import { register } from "node:module";

const loader = new URL("../../tools/ts-loader.mjs", import.meta.url).href;
register(loader, loader);
await import("./worker.ts");
