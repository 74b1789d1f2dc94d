// TEST-ONLY: guest RAM of mixed pages for the kernel tests (in Node and in the browser page): zero pages, zero
// but one word, random, and near-copies of the page before (a few bytes changed), chosen by a seeded generator.
import type { SeededRandom } from "./random.js";

/** `pages` pages at `ptr` in `u8`, each of one of the four kinds, picked by `rng`. */
export function fillMixedPages(u8: Uint8Array, ptr: number, pages: number, rng: SeededRandom, pageSize = 4096): void {
  const P = pageSize;
  const w = new Uint32Array(u8.buffer, ptr, (pages * P) / 4);
  w.fill(0);
  for (let p = 0; p < pages; p++) {
    const kind = rng.int(4);
    const at = (p * P) / 4;
    if (kind === 1) w[at + rng.int(P / 4)] = rng.u32();
    else if (kind === 2) for (let i = 0; i < P / 4; i++) w[at + i] = rng.u32();
    else if (kind === 3 && p > 0) {
      u8.copyWithin(ptr + p * P, ptr + (p - 1) * P, ptr + p * P);
      for (let i = rng.int(40); i > 0; i--) u8[ptr + p * P + rng.int(P)] = rng.byte();
    }
  }
}
