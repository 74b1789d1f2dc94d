// TEST-ONLY: a real headless browser for the code that runs in browsers: Debian's `chromium` driven by
// playwright-core, and a static HTTP server on 127.0.0.1 for it. The server serves the built dist/ and the
// tests' TypeScript (transpiled on the way out), with the cross-origin-isolation headers (COOP/COEP) a page needs
// for SharedArrayBuffer and shared WebAssembly.Memory, except on the pages asked for without them.
import { spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium } from "playwright-core";
import ts from "typescript";
import { type Requirement, requireTool } from "./requires.js";

const root = fileURLToPath(new URL("../../", import.meta.url));

/** Debian's chromium (`apt-get install chromium`). */
export const chromiumRequirement: Requirement = requireTool("chromium", "chromium");

/** Headless Chromium from the PATH; close it in afterAll. */
export function launchChromium(): Promise<Browser> {
  const found = spawnSync("sh", ["-c", "command -v chromium"], { encoding: "utf8" });
  const executablePath = found.stdout.trim();
  if (found.status !== 0 || !executablePath) throw new Error("chromium not on the PATH");
  return chromium.launch({ executablePath, headless: true });
}

/** The headers that make a page cross-origin isolated (crossOriginIsolated === true). */
export const CROSS_ORIGIN_ISOLATION = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" } as const;

const MIME: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".map": "application/json; charset=utf-8",
  ".html": "text/html; charset=utf-8",
};

/** An HTML page the server answers at its path, with or without the cross-origin-isolation headers. */
export interface TestPage {
  readonly html: string;
  readonly isolated: boolean;
}

export interface BrowserTestServer {
  /** `http://127.0.0.1:PORT` */
  readonly origin: string;
  close(): Promise<void>;
}

/**
 * Serves `pages` (path -> page) and the repository's files under /dist/ and /tests/: a tests/ `.js` that does not
 * exist is its `.ts`, transpiled (type-only imports vanish), so a page can import the tests' TypeScript helpers.
 * Every response but a page asked for without isolation carries CROSS_ORIGIN_ISOLATION.
 */
export async function serveForBrowser(pages: Readonly<Record<string, TestPage>>): Promise<BrowserTestServer> {
  const server = createServer(async (req, res) => {
    const path = posix.normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
    const page = pages[path];
    const headers: Record<string, string> = page && !page.isolated ? {} : { ...CROSS_ORIGIN_ISOLATION };
    try {
      let body: string | Buffer;
      let type: string;
      if (page) {
        body = page.html;
        type = MIME[".html"]!;
      } else if (path.startsWith("/dist/") || path.startsWith("/tests/")) {
        body = await readFile(join(root, path)).catch(async (e: NodeJS.ErrnoException) => {
          if (e.code !== "ENOENT" || !path.startsWith("/tests/") || !path.endsWith(".js")) throw e;
          const source = await readFile(join(root, path.replace(/\.js$/, ".ts")), "utf8");
          const options = { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ES2022 };
          return ts.transpileModule(source, { compilerOptions: options, fileName: path }).outputText;
        });
        type = MIME[extname(path)] ?? "application/octet-stream";
      } else {
        res.writeHead(404, headers).end();
        return;
      }
      res.writeHead(200, { ...headers, "Content-Type": type, "Cache-Control": "no-store" }).end(body);
    } catch (e) {
      res.writeHead((e as NodeJS.ErrnoException).code === "ENOENT" ? 404 : 500, headers).end(String(e));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
