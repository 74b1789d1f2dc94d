// The RAM source engine on a virtual clock against a simulated guest: deterministic from the seed, converges
// for a low dirty rate, stops at maxRounds / forceSwitch otherwise, respects the per-round byte budget, uses
// XBZRLE after the first pass, uses a host dirty log when given; every stream decodes to the source RAM.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it, vi } from "vitest";
import { createKernels } from "../../src/kernels/index.js";
import { simulate } from "../../src/migration/simulate.js";
import { MigrationSource, type RoundProgress } from "../../src/migration/source.js";
import { decodeBytes, ramOf } from "../../src/sections/stream.js";
import { timers } from "../../src/vmstate/devices/index.js";
import { concat } from "../helpers/bytes.js";
import { SeededRandom } from "../helpers/random.js";

const PS = 4096;
const MiB = 1048576;
const RECORD = 8 + 1 + "pc.ram".length + PS; // one page record with its block name

describe("simulate", () => {
  it("is deterministic from the seed", () => {
    const o = { ramMiB: 16, dirtyRate: 4000, bandwidth: 64 * MiB, downtimeTarget: 0.002, maxRounds: 6, seed: 42, xbzrleCacheBytes: 2 * MiB };
    const a = simulate(o);
    const b = simulate(o);
    expect(a.rounds).toEqual(b.rounds);
    expect(a.final).toEqual(b.final);
    expect(a.totalBytes).toBe(b.totalBytes);
    const c = simulate({ ...o, seed: 43 });
    expect(c.rounds).not.toEqual(a.rounds);
  });

  it("a low dirty rate converges within a few rounds; the destination RAM equals the source's at the pause", () => {
    const r = simulate({ ramMiB: 32, dirtyRate: 500, bandwidth: 100 * MiB, downtimeTarget: 0.03, maxRounds: 20, seed: 7, verify: true });
    expect(r.reason).toBe("converged");
    expect(r.converged).toBe(true);
    expect(r.rounds.length).toBeLessThanOrEqual(4);
    expect(r.expectedDowntime).toBeLessThanOrEqual(0.03);
    expect(r.verified).toBe(true);
    expect(r.rounds[0]!.dirtySource).toBe("scan");
    // the first pass sends every page: zero pages as ZERO records
    const sent = r.rounds.reduce((a, p) => a + p.pages.zero + p.pages.normal, 0);
    expect(sent).toBeGreaterThanOrEqual(r.ramBytes / PS);
    expect(r.records!.zero).toBeGreaterThan(0);
  });

  it("a dirty rate above the bandwidth does not converge: stops at maxRounds with a complete, correct stream", () => {
    // 100000 pages/s (~390 MiB/s) against 50 MiB/s, writes spread over all of RAM
    const r = simulate({ ramMiB: 16, dirtyRate: 100000, locality: 0, bandwidth: 50 * MiB, downtimeTarget: 0.001, maxRounds: 5, seed: 3, verify: true });
    expect(r.reason).toBe("max-rounds");
    expect(r.converged).toBe(false);
    expect(r.rounds).toHaveLength(5);
    expect(r.rounds[4]!.expectedDowntime).toBeGreaterThan(0.001);
    expect(r.verified).toBe(true);
    expect(r.final.phase).toBe("complete");
    expect(r.final.pages.normal).toBeGreaterThan(0);
  });

  it("forceSwitch() switches over after the current round", () => {
    const r = simulate({
      ramMiB: 16,
      dirtyRate: 100000,
      locality: 0,
      bandwidth: 50 * MiB,
      downtimeTarget: 0.001,
      maxRounds: 50,
      forceAfterRounds: 2,
      seed: 3,
      verify: true,
    });
    expect(r.reason).toBe("forced");
    expect(r.rounds).toHaveLength(2);
    expect(r.verified).toBe(true);
  });

  it("respects the bandwidth cap per round (budget + at most one page record)", () => {
    const rounds: RoundProgress[] = [];
    const r = simulate({
      ramMiB: 16,
      dirtyRate: 20000,
      locality: 0.5,
      bandwidth: 20 * MiB,
      roundTime: 0.05,
      downtimeTarget: 0.001,
      maxRounds: 8,
      seed: 11,
      onProgress: (p) => rounds.push(p),
    });
    expect(rounds).toHaveLength(r.rounds.length + 1);
    const iterate = rounds.filter((p) => p.phase === "iterate");
    expect(iterate.length).toBe(8);
    for (const p of iterate) {
      expect(p.budget).toBe(20 * MiB * 0.05);
      expect(p.bytes).toBeLessThanOrEqual(p.budget + RECORD);
    }
    // the first pass needs several rounds at this budget, each using most of it
    expect(iterate[0]!.bytes).toBeGreaterThan(iterate[0]!.budget * 0.95);
  });

  it("XBZRLE: with a cache and a few-words workload, later rounds carry XBZRLE records and fewer bytes", () => {
    const o = {
      ramMiB: 16,
      workingSetMiB: 4,
      dirtyRate: 5000,
      locality: 0.9,
      writeBytes: 16,
      bandwidth: 64 * MiB,
      downtimeTarget: 0,
      maxRounds: 6,
      seed: 5,
      verify: true,
    };
    const plain = simulate(o);
    const x = simulate({ ...o, xbzrleCacheBytes: 8 * MiB });
    expect(plain.verified).toBe(true);
    expect(x.verified).toBe(true);
    expect(plain.rounds.every((p) => p.pages.xbzrle === 0)).toBe(true);
    // the first pass (and the first visit after it) send whole pages
    expect(x.rounds[0]!.pages.xbzrle).toBe(0);
    const late = (r: typeof x) => r.rounds.slice(3).reduce((a, p) => a + p.bytes, 0);
    expect(x.rounds.slice(3).every((p) => p.pages.xbzrle > 0)).toBe(true);
    expect(late(x)).toBeLessThan(late(plain) / 2);
    expect(x.totalBytes).toBeLessThan(plain.totalBytes);
    expect(x.records!.xbzrle).toBeGreaterThan(0);
  });

  it("estimate: measured uses the record bytes per page sent so far (zero pages are cheap)", () => {
    const o = { ramMiB: 16, zeroFraction: 0.9, dirtyRate: 200000, locality: 0, bandwidth: 64 * MiB, downtimeTarget: 0, maxRounds: 1, seed: 2 };
    const page = simulate(o);
    const measured = simulate({ ...o, estimate: "measured" });
    expect(measured.rounds[0]!.dirtyPages).toBe(page.rounds[0]!.dirtyPages);
    expect(page.rounds[0]!.pendingBytes).toBe(page.rounds[0]!.dirtyPages * PS);
    expect(measured.rounds[0]!.pendingBytes).toBeLessThan(page.rounds[0]!.pendingBytes / 2);
  });

  it("uses the host-supplied dirty log instead of the scan", () => {
    const k = createKernels({ backend: "js" });
    const spy = vi.spyOn(k, "changedPages");
    const r = simulate({
      kernels: k,
      dirtyLog: true,
      ramMiB: 16,
      dirtyRate: 3000,
      bandwidth: 64 * MiB,
      downtimeTarget: 0.002,
      maxRounds: 10,
      seed: 9,
      verify: true,
    });
    expect(spy).not.toHaveBeenCalled();
    expect(r.rounds.every((p) => p.dirtySource === "log")).toBe(true);
    expect(r.verified).toBe(true);
    spy.mockRestore();
  });
});

describe("MigrationSource", () => {
  it("sends exactly the pages the dirty log names (not what a scan would find); devices, EOF and vmdesc follow the ram END", () => {
    const k = createKernels({ backend: "js" });
    const pages = 64;
    const ptr = k.alloc(pages * PS, 4096);
    k.u8.fill(0, ptr, ptr + pages * PS);
    for (let p = 0; p < pages; p++) k.u8[ptr + p * PS + 7] = p + 1;
    const chunks: Uint8Array[] = [];
    let pausedAt = -1;
    const logs: (Uint8Array | undefined)[] = [Uint8Array.of(0b0010_0000)]; // after round 1: page 5; then nothing
    const block = { name: "pc.ram", ptr, length: pages * PS };
    const src = new MigrationSource(
      {
        kernels: k,
        blocks: [block],
        bandwidth: 10 * pages * PS,
        downtimeTarget: 0,
        maxRounds: 3,
        dirtyLog: () => logs.shift(),
        devices: [{ idstr: "timer", description: timers, state: { cpu_ticks_offset: 5n, cpu_clock_offset: -7n } }],
        pause: () => {
          pausedAt = src.rounds.length;
        },
      },
      (c) => chunks.push(c.slice()),
    );
    let round = 0;
    const out = src.run(() => {
      round++;
      if (round === 1) {
        // the guest writes pages 5 and 7; the host reports only page 5
        k.u8[ptr + 5 * PS + 100] = 0xaa;
        k.u8[ptr + 7 * PS + 100] = 0xbb;
      }
    });
    expect(pausedAt).toBe(2);
    expect(out.reason).toBe("converged");
    expect(out.rounds).toHaveLength(2);
    expect(out.rounds[1]!.dirtySource).toBe("log");
    expect(out.rounds[0]!.pages).toMatchObject({ normal: pages });
    expect(out.rounds[0]!.dirtied).toBe(1);
    expect(out.rounds[1]!.pages).toMatchObject({ normal: 1, zero: 0 });
    expect(out.final.pages).toMatchObject({ normal: 0, zero: 0 });
    const bytes = concat(chunks);
    const r = decodeBytes(bytes, { materialize: { ram: true } });
    const dst = ramOf(r)!.blocks[0]!.data!;
    expect(dst[5 * PS + 100]).toBe(0xaa);
    expect(dst[7 * PS + 100]).toBe(0); // not in the log: never re-sent
    expect(r.sections.map((x) => `${x.type}:${x.idstr}`)).toEqual(["start:ram", "part:ram", "part:ram", "end:ram", "full:timer"]);
    expect(r.devices[0]!.state).toMatchObject({ cpu_ticks_offset: 5n, cpu_clock_offset: -7n });
    expect(r.eof).toBe(true);
    expect(r.completeness.complete).toBe(true);
    expect(r.configuration?.machine).toBe("pc-i440fx-7.2");
    r.dispose();
    src.dispose();
  });
});

describe("MigrationSource (step API, several blocks)", () => {
  it.each(["js", "wasm-scalar"] as const)("two blocks, XBZRLE, writes between any steps: the destination equals the source (%s)", (backend) => {
    const k = createKernels({ backend });
    const mk = (name: string, pages: number, seed: number) => {
      const ptr = k.alloc(pages * PS, 4096);
      k.u8.fill(0, ptr, ptr + pages * PS);
      for (let p = 0; p < pages; p += 2) k.u8.fill((p * seed) & 0xff, ptr + p * PS, ptr + (p + 1) * PS);
      return { name, ptr, length: pages * PS };
    };
    const blocks = [mk("pc.ram", 256, 3), mk("vga.vram", 64, 5)];
    const chunks: Uint8Array[] = [];
    const src = new MigrationSource(
      { kernels: k, blocks, bandwidth: 100 * PS * 10, roundTime: 0.1, downtimeTarget: 0, maxRounds: 10, xbzrleCacheBytes: 64 * PS },
      (c) => chunks.push(c.slice()),
    );
    const random = new SeededRandom(1);
    const poke = (n: number) => {
      for (let i = 0; i < n; i++) {
        const x = random.u32();
        const b = blocks[x % 2]!;
        const page = (x % 2) * 20 + ((x >>> 8) % 16); // hot pages: 0..15 of pc.ram, 20..35 of vga.vram (distinct cache slots)
        k.u8[b.ptr + page * PS + ((x >>> 3) % PS)] = x >>> 24;
      }
    };
    src.setup();
    for (let i = 0; i < 6; i++) {
      poke(5); // after the sync, before the round's pages go out
      src.iterate();
      poke(20); // the guest runs during the round
      src.sync();
      poke(3); // and between the sync and the next round
    }
    expect(src.shouldSwitch()).toBeUndefined();
    src.forceSwitch();
    expect(src.shouldSwitch()).toBe("forced");
    const final = src.complete();
    expect(final.phase).toBe("complete");
    expect(src.rounds.slice(3).some((p) => p.pages.xbzrle > 0)).toBe(true);
    const bytes = concat(chunks);
    expect(bytes.length).toBe(src.bytesWritten);
    const r = decodeBytes(bytes, { materialize: { ram: true } });
    const ram = ramOf(r)!;
    expect(ram.blocks.map((b) => b.name)).toEqual(["pc.ram", "vga.vram"]);
    for (let i = 0; i < 2; i++) {
      const want = Buffer.from(k.u8.slice(blocks[i]!.ptr, blocks[i]!.ptr + blocks[i]!.length));
      expect(Buffer.from(ram.blocks[i]!.data!).equals(want), blocks[i]!.name).toBe(true);
    }
    r.dispose();
    src.dispose();
  });
});

describe("vmstream simulate", () => {
  const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
  const run = (args: string[]) => {
    const r = spawnSync(process.execPath, [MAIN, ...args], { maxBuffer: 16 << 20 });
    return { status: r.status, stdout: r.stdout.toString("utf8"), stderr: r.stderr.toString("utf8") };
  };

  it("prints the rounds as a table and a summary", () => {
    expect(existsSync(MAIN)).toBe(true);
    const r = run(["simulate", "--ram-mib", "16", "--dirty-rate", "3000", "--bandwidth", "64", "--downtime-ms", "5", "--xbzrle-cache-mib", "4", "--seed", "1"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^round\s+phase\s+time_s\s+bytes\s+zero\s+normal\s+xbzrle\s+unchanged\s+dirty_pages\s+dirty_rate\s+expected_downtime_ms$/);
    expect(lines[1]).toMatch(/^\s+1\s+iterate\s/);
    expect(lines[lines.length - 2]).toMatch(/\scomplete\s/);
    expect(lines[lines.length - 1]).toMatch(
      /^converged after \d+ rounds: [\d.]+ MB in [\d.]+ s; downtime expected [\d.]+ ms, actual [\d.]+ ms; destination RAM verified$/,
    );
    // deterministic
    expect(
      run(["simulate", "--ram-mib", "16", "--dirty-rate", "3000", "--bandwidth", "64", "--downtime-ms", "5", "--xbzrle-cache-mib", "4", "--seed", "1"]).stdout,
    ).toBe(r.stdout);
  });

  it("--csv prints CSV; a dirty rate above the bandwidth is forced at --max-rounds", () => {
    const r = run([
      "simulate",
      "--ram-mib",
      "16",
      "--dirty-rate",
      "100000",
      "--locality",
      "0",
      "--bandwidth",
      "32",
      "--downtime-ms",
      "1",
      "--max-rounds",
      "3",
      "--csv",
    ]);
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("round,phase,time_s,bytes,zero,normal,xbzrle,unchanged,dirty_pages,dirty_rate,expected_downtime_ms");
    expect(lines.slice(1, 4).map((l) => l.split(",").slice(0, 2).join(","))).toEqual(["1,iterate", "2,iterate", "3,iterate"]);
    expect(lines[4]!.split(",")[1]).toBe("complete");
    for (const l of lines.slice(1, 5)) expect(l.split(",")).toHaveLength(11);
    expect(lines[5]).toMatch(/^# forced \(max rounds\) after 3 rounds: .* destination RAM verified$/);
  });

  it("rejects bad options", () => {
    const r = run(["simulate", "--locality", "2"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--locality must be 0\.\.1/);
  });
});
