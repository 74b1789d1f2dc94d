// Hostile input into a destination that writes RAM straight into a host's memory (what the v86 adapter does:
// the host block IS the emulator's guest RAM): mutated real streams, split at random, end either complete or
// failed with a located VmstreamError (never another exception, never INTERNAL), and never write a byte outside
// the host's blocks (guard regions around every block stay intact). Every backend.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";
import { createKernels } from "../../src/kernels/index.js";
import { MigrationDestination } from "../../src/migration/destination.js";
import { mutate } from "../helpers/mutate.js";
import { SeededRandom } from "../helpers/random.js";

const FIX = (f: string) => fileURLToPath(new URL(`../fixtures/${f}`, import.meta.url));
const fixture = (name: string): Uint8Array => new Uint8Array(gunzipSync(readFileSync(FIX(`${name}.mig.gz`))));
const GUARD = 64 * 1024;
const PATTERN = 0x5a;

describe("MigrationDestination into host memory, hostile input", () => {
  for (const [name, backend, runs] of [
    ["x86-pc-xbzrle", "wasm-simd", 120],
    ["x86-pc-xbzrle", "js", 40],
    ["x86-pc-64m", "wasm-scalar", 60],
  ] as const) {
    it(`${name}, ${backend}: ${runs} mutations (RAM records first): complete or a located error; guards around every host block intact`, () => {
      const input = fixture(name);
      const k = createKernels({ backend });
      const rng = new SeededRandom(0x1234 + runs);
      // mutate where the RAM records are (the first MiB holds MEM_SIZE, pages and XBZRLE records), sometimes anywhere
      const hot = Math.min(input.length, 1 << 20);
      let failed = 0;
      for (let i = 0; i < runs; i++) {
        const m = i % 4 === 3 ? mutate(input, rng) : mutate(input, rng, 0, hot);
        const blocks: { ptr: number; length: number; base: number }[] = [];
        const d = new MigrationDestination({
          kernels: k,
          materialize: false,
          ramBlock: (blockName, length) => {
            if (length > 256 << 20) return undefined; // the handler's own limits refuse it (materialize off)
            const base = k.alloc(GUARD + length + GUARD, 4096);
            k.u8.fill(PATTERN, base, base + GUARD);
            k.u8.fill(PATTERN, base + GUARD + length, base + GUARD + length + GUARD);
            blocks.push({ ptr: base + GUARD, length, base });
            return { name: blockName, ptr: base + GUARD, length };
          },
        });
        let o = 0;
        while (o < m.bytes.length) {
          const n = 1 + rng.int(256 * 1024);
          if (!d.push(m.bytes.subarray(o, o + n))) break;
          o += n;
        }
        const r = d.end();
        const what = `run ${i}: ${m.kind} at ${m.at}`;
        if (r.status !== "complete") {
          failed++;
          expect(r.error, what).toBeInstanceOf(VmstreamError);
          expect(r.error!.code, `${what}: ${r.error!.message}`).not.toBe("INTERNAL");
          expect(r.error!.offset, `${what}: ${r.error!.message}`).toBeTypeOf("number");
          expect(r.partial, what).toBe(true);
        }
        const u8 = k.u8;
        for (const b of blocks) {
          const before = u8.subarray(b.base, b.ptr);
          const after = u8.subarray(b.ptr + b.length, b.ptr + b.length + GUARD);
          expect(before.every((x) => x === PATTERN) && after.every((x) => x === PATTERN), `${what}: a guard region was written`).toBe(true);
          k.free(b.base);
        }
        r.dispose();
      }
      expect(failed).toBeGreaterThan(runs / 4); // the mutations do break streams (the check above ran)
    }, 120_000);
  }
});
