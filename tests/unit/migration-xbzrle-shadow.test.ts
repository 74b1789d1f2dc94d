// XBZRLE against the dirty scan's shadow copy (xbzrleShadow; what the v86 adapter uses): after the first pass every
// re-sent page is a delta against exactly what the destination holds, the decoded destination equals the source
// at the pause for every backend, and it sends far fewer bytes than full pages; guests writing into pages that
// are still waiting to be sent, zero pages, and pages rewritten completely (XBZRLE overflow -> PAGE) included.
import { describe, expect, it } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";
import { createKernels } from "../../src/kernels/index.js";
import { MigrationSource, type MigrationSourceOptions } from "../../src/migration/source.js";
import { decodeBytes, ramOf } from "../../src/sections/stream.js";
import { concat } from "../helpers/bytes.js";
import { SeededRandom } from "../helpers/random.js";

const PS = 4096;

function migrate(backend: "js" | "wasm-scalar" | "wasm-simd", extra: Partial<MigrationSourceOptions>, seed = 3) {
  const k = createKernels({ backend });
  const pages = 256;
  const len = pages * PS;
  const ptr = k.alloc(len, 4096);
  const rnd = new SeededRandom(seed);
  const u8 = () => k.u8.subarray(ptr, ptr + len);
  u8().fill(0);
  for (let i = 0; i < len; i += 7) u8()[i] = rnd.byte();
  const chunks: Uint8Array[] = [];
  let round = 0;
  const src = new MigrationSource(
    {
      kernels: k,
      blocks: [{ name: "pc.ram", ptr, length: len }],
      bandwidth: 64 * PS * 10, // 64 pages per 0.1 s round: the first pass takes 4 rounds
      downtimeTarget: 0,
      maxRounds: 10,
      ...extra,
    },
    (c) => chunks.push(c.slice()),
  );
  // the guest: a few bytes in 12 pages per round, one page rewritten whole, one page zeroed
  const out = src.run(() => {
    round++;
    const ram = u8();
    for (let j = 0; j < 12; j++) {
      const p = rnd.int(pages);
      for (let b = 0; b < 8; b++) ram[p * PS + rnd.int(PS)] = rnd.byte();
    }
    const whole = rnd.int(pages);
    for (let i = 0; i < PS; i++) ram[whole * PS + i] = rnd.byte();
    ram.fill(0, ((round * 37) % pages) * PS, ((round * 37) % pages) * PS + PS);
  });
  const expected = u8().slice();
  src.dispose();
  const stream = concat(chunks);
  const r = decodeBytes(stream, { materialize: { ram: true } });
  const ram = ramOf(r)!;
  const got = ram.blocks[0]!.data!.slice();
  const records = { ...ram.records };
  r.dispose();
  return { out, expected, got, records, bytes: stream.length };
}

describe("xbzrleShadow: the scan's shadow copy is the XBZRLE cache", () => {
  for (const backend of ["js", "wasm-scalar", "wasm-simd"] as const) {
    it(`${backend}: the destination equals the source at the pause; re-sent pages go as deltas`, () => {
      const m = migrate(backend, { xbzrleShadow: true });
      expect(m.out.rounds.length).toBeGreaterThan(5);
      expect(m.records.xbzrle).toBeGreaterThan(20);
      expect(Buffer.compare(m.got, m.expected)).toBe(0);
    });
  }

  it("sends fewer bytes than the same migration without XBZRLE (same guest, same seed)", () => {
    const on = migrate("wasm-scalar", { xbzrleShadow: true });
    const off = migrate("wasm-scalar", {});
    expect(Buffer.compare(off.got, off.expected)).toBe(0);
    expect(off.records.xbzrle).toBe(0);
    const bytesAfterRound4 = (m: typeof on) => m.out.rounds.slice(4).reduce((n, r) => n + r.bytes, 0) + m.out.final.bytes;
    expect(bytesAfterRound4(on)).toBeLessThan(bytesAfterRound4(off) / 2);
  });

  it("counts pages still waiting to be sent once as dirtied", () => {
    const m = migrate("js", { xbzrleShadow: true });
    // the guest touches at most 14 pages per round; a page left dirty must not be counted again by the next scan
    for (const r of m.out.rounds) expect(r.dirtied).toBeLessThanOrEqual(14);
  });

  it("needs scan mode and no separate cache", () => {
    const k = createKernels({ backend: "js" });
    const ptr = k.alloc(PS * 4, 4096);
    const base = { kernels: k, blocks: [{ name: "pc.ram", ptr, length: PS * 4 }], bandwidth: 1e6, downtimeTarget: 0, maxRounds: 1, xbzrleShadow: true };
    expect(() => new MigrationSource({ ...base, xbzrleCacheBytes: PS * 4 }, () => {})).toThrow(VmstreamError);
    expect(() => new MigrationSource({ ...base, dirtyLog: () => undefined }, () => {})).toThrow(VmstreamError);
  });
});
