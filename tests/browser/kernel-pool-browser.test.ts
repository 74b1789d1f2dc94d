// KernelPool in a real browser: headless Chromium loads the built dist/ from a cross-origin-isolated page, starts
// a pool of standard module Workers (webWorkerFactory, dist/kernels/web-worker.js) on a shared WebAssembly.Memory
// and runs its RAM operations on one scenario (kernel-pool-page.ts); every result must be the single-thread
// kernels' (in the page, and in Node on a plain memory). Without COOP/COEP, starting a pool says what is missing.
// Needs dist/ (`npm test` builds first) and chromium (tests/helpers/requires.ts decides skip or fail).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import * as vm from "../../src/index.js";
import { type BrowserTestServer, chromiumRequirement, launchChromium, serveForBrowser } from "../helpers/browser.js";
import { describeIfInstalled } from "../helpers/requires.js";
import { makeScenario, type PoolCheckReport, runRamOps } from "./kernel-pool-page.js";

const PAGES = 2048; // 8 MiB of guest RAM: 8 page ranges and about 20 decode runs over two workers
const SEED = 12;
const WORKERS = 2;

// The page loads vmstream as a user's page would (dist/index.js) and hands it to the test's browser half.
const pageHtml = `<!doctype html>
<script type="module">
import * as vm from "/dist/index.js";
import { poolCheck, poolStartError } from "/tests/browser/kernel-pool-page.js";
window.poolCheck = (pages, seed, workers) => poolCheck(vm, pages, seed, workers);
window.poolStartError = () => poolStartError(vm);
window.pageReady = true;
</script>`;

interface PageApi {
  poolCheck(pages: number, seed: number, workers: number): Promise<PoolCheckReport>;
  poolStartError(): Promise<string>;
  pageReady?: boolean;
}

describeIfInstalled(chromiumRequirement, "KernelPool in headless Chromium (webWorkerFactory, shared WebAssembly.Memory)", () => {
  let browser: Browser | undefined;
  let server: BrowserTestServer | undefined;
  const errors: string[] = [];

  beforeAll(async () => {
    const built = fileURLToPath(new URL("../../dist/kernels/web-worker.js", import.meta.url));
    if (!existsSync(built)) throw new Error("dist/ is not built: run `npm run build` (npm test does)");
    server = await serveForBrowser({
      "/isolated.html": { html: pageHtml, isolated: true },
      "/not-isolated.html": { html: pageHtml, isolated: false },
    });
    browser = await launchChromium();
  }, 30_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  /** A page at `path`, and the dedicated workers it starts as the browser reports them: script path, closed yet. */
  async function open(path: string): Promise<{ page: Page; workers: Array<{ path: string; closed: boolean }> }> {
    const page = await browser!.newPage();
    const workers: Array<{ path: string; closed: boolean }> = [];
    page.on("pageerror", (e) => errors.push(`${path}: ${e.message}`));
    page.on("worker", (w) => {
      const seen = { path: new URL(w.url()).pathname, closed: false };
      workers.push(seen);
      w.on("close", () => (seen.closed = true));
    });
    await page.goto(`${server!.origin}${path}`);
    await page.waitForFunction(() => (window as unknown as PageApi).pageReady === true, undefined, { timeout: 10_000 });
    return { page, workers };
  }

  it("a pool of two browser Workers: every RAM operation gives the single-thread kernels' bytes", async () => {
    const { page, workers } = await open("/isolated.html");
    const report = await page.evaluate(([pages, seed, n]) => (window as unknown as PageApi).poolCheck(pages, seed, n), [PAGES, SEED, WORKERS]);
    await expect.poll(() => workers.every((w) => w.closed), { timeout: 5_000 }).toBe(true);
    await page.close();
    expect(errors).toEqual([]);

    expect(report.crossOriginIsolated).toBe(true);
    expect(report).toMatchObject({ workers: WORKERS, backend: "wasm-simd", browserWorkers: [true, true] });
    // The browser started the pool's module workers on the built entry, and pool.close() ended them.
    const entry = { path: "/dist/kernels/web-worker.js", closed: true };
    expect(workers).toEqual([entry, entry]);

    // The scenario exercises what it should: zero, changed and XBZRLE pages, a stream ending in a whole record.
    const single = report.singleThread;
    expect(single.zero.count).toBeGreaterThan(PAGES / 8);
    expect(single.changed.count).toBeGreaterThan(PAGES / 4);
    const [bytes, zero, normal, xbzrle, unchanged] = single.encode.state;
    expect(bytes).toBe(single.encode.length);
    for (const n of [zero, normal, xbzrle, unchanged]) expect(n).toBeGreaterThan(50);
    expect(single.decode.status).toBe(vm.DEC_STATUS.NEED_MORE);
    expect(single.decode.state[vm.DEC.CONSUMED]).toBe(single.encode.length);

    // The pool's results are the single-thread kernels' in the same page, byte for byte (SHA-256 of every region).
    expect(report.pool).toEqual(single);

    // And the browser's shared-memory build gives what Node's plain-memory build gives.
    const k = vm.createKernels({ backend: "wasm-simd" });
    expect(await runRamOps(vm, k, makeScenario(k, PAGES, SEED))).toEqual(single);
  }, 45_000);

  it("a page without cross-origin isolation: starting a pool says the page needs COOP/COEP", async () => {
    const { page, workers } = await open("/not-isolated.html");
    const isolated = await page.evaluate(() => globalThis.crossOriginIsolated);
    const message = await page.evaluate(() => (window as unknown as PageApi).poolStartError());
    await page.close();
    expect(errors).toEqual([]);
    expect(isolated).toBe(false);
    expect(message).toMatch(/^sharedKernelMemory: shared memory is not available here .*crossOriginIsolated is false.*cross-origin isolated/);
    expect(message).toContain("Cross-Origin-Opener-Policy: same-origin");
    expect(message).toContain("Cross-Origin-Embedder-Policy: require-corp");
    expect(workers).toEqual([]);
  }, 20_000);
});
