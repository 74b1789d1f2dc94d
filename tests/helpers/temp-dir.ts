// TEST-ONLY: a temporary directory for one suite, made in beforeAll and removed in afterAll, so that a file whose
// tests are all filtered out (`vitest run -t NAME`) leaves nothing behind.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";

/** Register the hooks of the enclosing suite (a file or a describe); the returned function gives the path. */
export function suiteTempDir(prefix: string): () => string {
  let dir: string | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
  });
  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });
  return () => {
    if (dir === undefined) throw new Error(`the ${prefix}* directory exists only while its suite runs`);
    return dir;
  };
}
