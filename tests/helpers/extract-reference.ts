// What `vmstream extract` and `receive --extract` write, checked against a fixture's reference: every RAM block
// and disk the patched analyze-migration.py extracted (tests/fixtures/NAME.reference.json) has the same size and
// sha256 under DIR (ram/SAFE.bin, disk/DEVICE.img), and state.json is there.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { sha256 } from "./bytes.js";

/** Check DIR against the reference of fixture `name`; returns how many files were compared. */
export function checkExtract(dir: string, name: string): number {
  const ref = JSON.parse(readFileSync(new URL(`../fixtures/${name}.reference.json`, import.meta.url), "utf8"));
  const files = ref.analyze_migration.extract_patched.extracted_files as Record<string, { bytes: number; sha256: string }>;
  let checked = 0;
  for (const [block, want] of Object.entries(files)) {
    if (block.endsWith(".json")) continue;
    const disk = /^block-(.+)\.img$/.exec(block);
    // the CLI's safe file name for a RAM block (src/cli/streams.ts safeName, without de-duplication)
    const safe = disk ? `disk/${disk[1]}.img` : `ram/${block.replace(/[^A-Za-z0-9._@+-]/g, "_").replace(/^[._]+/, "")}.bin`;
    const got = readFileSync(join(dir, safe));
    expect(got.length, safe).toBe(want.bytes);
    expect(sha256(got), safe).toBe(want.sha256);
    checked++;
  }
  expect(existsSync(join(dir, "state.json"))).toBe(true);
  return checked;
}
