// runLiveSource in one process: an async transport with backpressure, a guest that writes RAM in the guest hook
// (between PARTs and rounds), async pause, abort, transport failure before and after the pause (the guest is
// resumed), views of the kernels' memory copied before they are handed over, the bandwidth cap, bad options.
// Every completed stream is decoded and its RAM compared with the source RAM at the pause.
import { describe, expect, it } from "vitest";
import { createKernels } from "../../src/kernels/index.js";
import type { Kernels } from "../../src/kernels/types.js";
import { LiveMigrationError, type LiveSourceOptions, runLiveSource } from "../../src/migration/live.js";
import { GuestWorkload } from "../../src/migration/simulate.js";
import { MigrationSource, type MigrationSourceOptions } from "../../src/migration/source.js";
import { decodeBytes, ramOf } from "../../src/sections/stream.js";
import { concat } from "../helpers/bytes.js";
import { thrownByAsync } from "../helpers/errors.js";

const PS = 4096;
const MiB = 1048576;

interface Rig {
  k: Kernels;
  ptr: number;
  ram: number;
  guest: GuestWorkload;
  create: (sink: (c: Uint8Array) => void) => MigrationSource;
  /** The guest hook: the guest writes `writesPerTurn` pages each time. */
  run: () => void;
}

function rig(o: { ramMiB?: number; writesPerTurn?: number; seed?: number; source?: Partial<MigrationSourceOptions> } = {}): Rig {
  const k = createKernels();
  const ram = (o.ramMiB ?? 4) * MiB;
  const ptr = k.alloc(ram, 4096);
  // dirtyRate 1 page per virtual second: run(n) writes n pages
  const guest = new GuestWorkload(k, ptr, { ramBytes: ram, dirtyRate: 1, workingSetPages: 256, hotPages: 32, seed: o.seed ?? 1 });
  guest.init();
  const create = (sink: (c: Uint8Array) => void) =>
    new MigrationSource(
      {
        kernels: k,
        blocks: [{ name: "pc.ram", ptr, length: ram }],
        bandwidth: 1e9,
        downtimeTarget: 0,
        maxRounds: 6,
        dirtyLog: () => guest.takeDirtyLog(),
        ...o.source,
      },
      sink,
    );
  return { k, ptr, ram, guest, create, run: () => guest.run(o.writesPerTurn ?? 20) };
}

/** A transport that keeps every chunk (by reference) and resolves each write on a later turn. */
function collector() {
  const chunks: Uint8Array[] = [];
  return {
    chunks,
    write: (c: Uint8Array) => {
      chunks.push(c);
      return new Promise<void>((r) => setImmediate(r));
    },
    bytes: () => concat(chunks),
  };
}

/** Decode the stream; the destination's RAM as bytes. */
function destRam(stream: Uint8Array): Uint8Array {
  const r = decodeBytes(stream, { materialize: { ram: true } });
  try {
    expect(r.completeness.complete).toBe(true);
    const b = ramOf(r)!.blocks;
    expect(b).toHaveLength(1);
    return b[0]!.data!.slice();
  } finally {
    r.dispose();
  }
}

describe("runLiveSource", () => {
  it("a guest writing between PARTs: rounds > 1, later rounds send dirty pages, the destination RAM equals the source's at the pause", async () => {
    const g = rig({ ramMiB: 8, writesPerTurn: 30 });
    const t = collector();
    let atPause: Uint8Array | undefined;
    const events: string[] = [];
    const r = await runLiveSource(g.create, {
      write: (c) => (events.push(atPause ? "write-after-pause" : "write"), t.write(c)),
      letGuestRun: g.run,
      partBytes: 256 << 10,
      downtimeTarget: 0.0005,
      maxRounds: 8,
      pause: async () => {
        await new Promise((res) => setTimeout(res, 5)); // an async stop, like v86's
        g.guest.paused = true;
        atPause = g.k.u8.slice(g.ptr, g.ptr + g.ram);
        events.push("paused");
      },
    });
    expect(r.rounds.length).toBeGreaterThan(1);
    expect(r.rounds[0]!.parts).toBeGreaterThan(1); // the first pass went out in bounded PARTs
    expect(r.rounds[0]!.pagesSent).toBe(g.ram / PS);
    expect(r.rounds.slice(1).reduce((a, x) => a + x.pagesSent, 0)).toBeGreaterThan(0);
    expect(r.rounds[0]!.dirtied).toBeGreaterThan(0);
    expect(r.totalBytes).toBe(t.bytes().length);
    // nothing of the complete phase is written before the (async) pause has finished
    expect(events.indexOf("write-after-pause")).toBeGreaterThan(events.indexOf("paused"));
    expect(events.lastIndexOf("write")).toBeLessThan(events.indexOf("paused"));
    expect(r.final.bytes).toBeGreaterThan(0);
    expect(r.downtime).toBeGreaterThanOrEqual(r.pauseSeconds);
    expect(Buffer.compare(destRam(t.bytes()), atPause!)).toBe(0);
    // the source RAM did not change after the pause
    expect(Buffer.compare(g.k.u8.subarray(g.ptr, g.ptr + g.ram), atPause!)).toBe(0);
  });

  it("a dirty rate above what one round can send stops at maxRounds with a correct stream", async () => {
    const g = rig({ ramMiB: 4, writesPerTurn: 200 });
    const t = collector();
    const r = await runLiveSource(g.create, {
      write: t.write,
      letGuestRun: g.run,
      partBytes: 64 << 10,
      roundBytes: 128 << 10,
      downtimeTarget: 0,
      maxRounds: 3,
      pause: () => void (g.guest.paused = true),
    });
    expect(r.reason).toBe("max-rounds");
    expect(r.converged).toBe(false);
    expect(r.rounds).toHaveLength(3);
    for (const x of r.rounds) expect(x.bytes).toBeLessThanOrEqual((128 << 10) + 64 + PS + 16 + 18); // round budget + one record + framing
    expect(Buffer.compare(destRam(t.bytes()), g.k.u8.subarray(g.ptr, g.ptr + g.ram))).toBe(0);
  });

  it("a scan slower than the target while the pending pages fit: switches as sync-bound, not after maxRounds; with a dirty log it does not", async () => {
    const busy = (ms: number) => {
      const end = performance.now() + ms;
      while (performance.now() < end);
    };
    // no dirty log: the sync is a scan against the shadow, made to take 30 ms like a scan of a large RAM; the 4
    // pages the guest writes per turn go out in far less
    const slow = rig({ ramMiB: 4, writesPerTurn: 4, source: { dirtyLog: undefined } });
    const inner = slow.create;
    const t2 = collector();
    const r2 = await runLiveSource(
      (sink) => {
        const src = inner(sink);
        const sync = src.sync.bind(src);
        src.sync = (e?: number) => (busy(30), sync(e));
        return src;
      },
      { write: t2.write, letGuestRun: slow.run, partBytes: 256 << 10, downtimeTarget: 0.02, maxRounds: 20, pause: () => void (slow.guest.paused = true) },
    );
    expect(r2.reason).toBe("sync-bound");
    expect(r2.converged).toBe(false);
    expect(r2.rounds.length).toBeLessThan(20);
    const last = r2.rounds[r2.rounds.length - 1]!;
    expect(last.syncSeconds).toBeGreaterThan(0.02);
    expect(last.pendingBytes / last.throughput).toBeLessThanOrEqual(0.02);
    expect(Buffer.compare(destRam(t2.bytes()), slow.k.u8.subarray(slow.ptr, slow.ptr + slow.ram))).toBe(0);
    // with a dirty log the same slow sync is not taken for a floor (a log's sync is cheap; slowness is noise)
    const logged = rig({ ramMiB: 4, writesPerTurn: 4 });
    const r3 = await runLiveSource(
      (sink) => {
        const src = logged.create(sink);
        const sync = src.sync.bind(src);
        src.sync = (e?: number) => (busy(30), sync(e));
        return src;
      },
      {
        write: collector().write,
        letGuestRun: logged.run,
        partBytes: 256 << 10,
        downtimeTarget: 0.02,
        maxRounds: 3,
        pause: () => void (logged.guest.paused = true),
      },
    );
    expect(r3.reason).toBe("max-rounds");
  });

  it("forceSwitch() on the source switches over after the current round", async () => {
    const g = rig({ ramMiB: 4, writesPerTurn: 200 });
    const t = collector();
    let src: MigrationSource | undefined;
    const r = await runLiveSource((s) => (src = g.create(s)), {
      write: t.write,
      letGuestRun: g.run,
      partBytes: 64 << 10,
      downtimeTarget: 0,
      maxRounds: 50,
      onRound: (x) => x.round === 2 && src!.forceSwitch(),
      pause: () => void (g.guest.paused = true),
    });
    expect(r.reason).toBe("forced");
    expect(r.rounds).toHaveLength(2);
    expect(Buffer.compare(destRam(t.bytes()), g.k.u8.subarray(g.ptr, g.ptr + g.ram))).toBe(0);
  });

  it("views of the kernels' memory are copied before write (copy: auto); with copy: never the kept chunks go stale", async () => {
    // An encoder that hands out views of one scratch window in the kernels' memory, rewritten for every chunk
    // (what a zero-copy encoder borrowing guest RAM or its output window does).
    const run = async (copy: LiveSourceOptions["copy"]) => {
      const g = rig({ ramMiB: 2, writesPerTurn: 10, seed: 9 });
      const scratch = g.k.alloc(8 << 20, 64);
      const t = collector();
      const r = await runLiveSource(
        (sink) =>
          g.create((c) => {
            const v = g.k.u8.subarray(scratch, scratch + c.length);
            v.set(c);
            sink(v);
          }),
        { write: t.write, letGuestRun: g.run, partBytes: 128 << 10, downtimeTarget: 0.001, maxRounds: 4, copy, pause: () => void (g.guest.paused = true) },
      );
      return { r, t, g };
    };
    const auto = await run("auto");
    expect(auto.r.copiedBytes).toBe(auto.r.totalBytes);
    expect(auto.t.chunks.every((c) => c.buffer !== auto.g.k.memory.buffer)).toBe(true);
    expect(Buffer.compare(destRam(auto.t.bytes()), auto.g.k.u8.subarray(auto.g.ptr, auto.g.ptr + auto.g.ram))).toBe(0);
    const never = await run("never");
    expect(never.r.copiedBytes).toBe(0);
    expect(() => destRam(never.t.bytes())).toThrow(); // the chunks all show the last chunk's bytes now
  });

  it("chunks of the encoder's own buffers are not copied in auto mode", async () => {
    const g = rig({ ramMiB: 2 });
    const t = collector();
    const r = await runLiveSource(g.create, {
      write: t.write,
      letGuestRun: g.run,
      downtimeTarget: 0.001,
      maxRounds: 3,
      pause: () => void (g.guest.paused = true),
    });
    expect(r.copiedBytes).toBe(0);
    expect(Buffer.compare(destRam(t.bytes()), g.k.u8.subarray(g.ptr, g.ptr + g.ram))).toBe(0);
  });

  it("the bandwidth cap holds: every PART waits until the bytes before it fit the budget of the wall time so far", async () => {
    const g = rig({ ramMiB: 1 });
    const bw = 8 * MiB;
    const log: { t: number; before: number }[] = [];
    let n = 0;
    let paused = false;
    let sameBatch = false;
    const t0 = performance.now();
    await runLiveSource(g.create, {
      write: (c) => {
        // the complete phase is not capped (as QEMU's completion): the guest is stopped. A PART may be several
        // chunks, written in one synchronous batch: the first one of each batch is the PART's start.
        if (!paused && !sameBatch) log.push({ t: (performance.now() - t0) / 1000, before: n });
        sameBatch = true;
        queueMicrotask(() => (sameBatch = false));
        n += c.length;
      },
      bandwidth: bw,
      downtimeTarget: 0.001,
      maxRounds: 2,
      letGuestRun: g.run,
      pause: () => void (paused = g.guest.paused = true),
    });
    expect(n).toBeGreaterThan(600 << 10);
    expect(log.length).toBeGreaterThan(2);
    // the pacing sleeps at least until `before / bw` seconds since the start (the driver's clock starts after t0)
    for (const x of log) expect(x.t).toBeGreaterThanOrEqual(x.before / bw - 64 / bw - 0.002);
  });

  it("a transport failure before the pause: rejects, the guest was never paused", async () => {
    const g = rig({ ramMiB: 2 });
    let n = 0;
    let paused = 0;
    const p = runLiveSource(g.create, {
      write: () => (++n === 5 ? Promise.reject(new Error("connection reset")) : undefined),
      letGuestRun: g.run,
      partBytes: 64 << 10,
      downtimeTarget: 0.001,
      maxRounds: 5,
      pause: () => void paused++,
      resume: () => void paused--,
    });
    const e = await thrownByAsync(p, LiveMigrationError);
    expect(e.code).toBe("MIGRATION_FAILED");
    expect(e.stage).toBe("iterate");
    expect(e.paused).toBe(false);
    expect(e.message).toContain("connection reset");
    expect(paused).toBe(0);
  });

  it("a transport failure after the pause: the guest is resumed and the error says so", async () => {
    const g = rig({ ramMiB: 2 });
    let paused = false;
    let resumed = 0;
    const e = await thrownByAsync(
      runLiveSource(g.create, {
        write: () => (paused ? Promise.reject(new Error("broken pipe")) : undefined),
        letGuestRun: g.run,
        downtimeTarget: 0.001,
        maxRounds: 3,
        pause: async () => void (paused = g.guest.paused = true),
        resume: async () => void (resumed++, (g.guest.paused = false)),
      }),
      LiveMigrationError,
    );
    expect(e.stage).toBe("complete");
    expect(e.paused).toBe(true);
    expect(e.resumed).toBe(true);
    expect(resumed).toBe(1);
    expect(g.guest.paused).toBe(false);
    expect(e.message).toContain("guest resumed");
  });

  it("a failing end() (the last bytes never left) is a failure too, with the guest resumed", async () => {
    const g = rig({ ramMiB: 1 });
    let resumed = false;
    const e = await thrownByAsync(
      runLiveSource(g.create, {
        write: () => undefined,
        end: () => Promise.reject(new Error("socket closed")),
        downtimeTarget: 1,
        maxRounds: 2,
        resume: () => void (resumed = true),
        pause: () => undefined,
      }),
      LiveMigrationError,
    );
    expect(e.stage).toBe("complete");
    expect(resumed).toBe(true);
  });

  it("abort: rejects with ABORTED while waiting on the transport, resumes a paused guest", async () => {
    const g = rig({ ramMiB: 2 });
    const ac = new AbortController();
    let n = 0;
    const e = await thrownByAsync(
      runLiveSource(g.create, {
        // the 3rd write never completes (a stuck peer): only the abort ends the wait
        write: () => (++n === 3 ? (setTimeout(() => ac.abort(new Error("user")), 5), new Promise<void>(() => {})) : undefined),
        letGuestRun: g.run,
        partBytes: 64 << 10,
        downtimeTarget: 0.001,
        maxRounds: 5,
        signal: ac.signal,
      }),
      LiveMigrationError,
    );
    expect(e.code).toBe("ABORTED");

    const g2 = rig({ ramMiB: 1 });
    const ac2 = new AbortController();
    let resumed = false;
    const e2 = await thrownByAsync(
      runLiveSource(g2.create, {
        write: () => undefined,
        downtimeTarget: 1,
        maxRounds: 2,
        signal: ac2.signal,
        pause: () => ac2.abort(),
        resume: () => void (resumed = true),
      }),
      LiveMigrationError,
    );
    expect(e2.code).toBe("ABORTED");
    expect(e2.paused).toBe(true);
    expect(resumed).toBe(true);
  });

  /** Counts chunks whose buffer came back after chunks of other buffers (a buffer used again, not just continued). */
  function reuseCounter() {
    const seen = new Set<ArrayBufferLike>();
    let last: ArrayBufferLike | undefined;
    const r = {
      count: 0,
      see(c: Uint8Array) {
        if (c.buffer !== last && seen.has(c.buffer)) r.count++;
        seen.add(c.buffer);
        last = c.buffer;
      },
    };
    return r;
  }

  /**
   * A socket-like transport: a write is "sent" (its bytes taken into the stream) a few turns later; `written()`
   * is called after the send, or (`early`) at once, as a broken transport would. Records the bytes each chunk
   * had when it was written, to tell whether anything changed them before they were sent.
   */
  function delayedTransport(early = false) {
    const sent: Uint8Array[] = [];
    let changed = 0;
    const reuse = reuseCounter();
    const write = (c: Uint8Array, written: () => void) => {
      const atWrite = c.slice();
      reuse.see(c);
      if (early) written();
      return new Promise<void>((ok) => {
        setTimeout(() => {
          if (Buffer.compare(c, atWrite) !== 0) changed++;
          sent.push(c.slice());
          if (!early) written();
          ok();
        }, 1);
      });
    };
    const bytes = () => Buffer.concat(sent);
    return { write, bytes, changed: () => changed, reused: () => reuse.count };
  }

  it("buffers come back once the transport reports them written: reused, and no byte changes before it is sent", async () => {
    const g = rig({ ramMiB: 8, writesPerTurn: 30, seed: 5 });
    const t = delayedTransport();
    let atPause: Uint8Array | undefined;
    const r = await runLiveSource(g.create, {
      write: t.write,
      letGuestRun: g.run,
      partBytes: 512 << 10,
      downtimeTarget: 0.0005,
      maxRounds: 6,
      pause: () => {
        g.guest.paused = true;
        atPause = g.k.u8.slice(g.ptr, g.ptr + g.ram);
      },
    });
    expect(r.copiedBytes).toBe(0);
    expect(t.changed()).toBe(0);
    expect(t.reused()).toBeGreaterThan(0); // the encoder wrote into buffers it had sent before
    expect(t.bytes().length).toBe(r.totalBytes);
    expect(Buffer.compare(destRam(t.bytes()), atPause!)).toBe(0);
  });

  it("a transport that reports chunks written before it sends them gets them changed under it (what the check above catches)", async () => {
    const g = rig({ ramMiB: 8, writesPerTurn: 30, seed: 5 });
    const t = delayedTransport(true);
    await runLiveSource(g.create, {
      write: t.write,
      letGuestRun: g.run,
      partBytes: 512 << 10,
      downtimeTarget: 0.0005,
      maxRounds: 6,
      pause: () => void (g.guest.paused = true),
    });
    expect(t.changed()).toBeGreaterThan(0);
  });

  it("copy: always gives the encoder's buffers back at once (the copies go to the transport)", async () => {
    const g = rig({ ramMiB: 4, writesPerTurn: 10, seed: 6 });
    const t = collector(); // keeps every chunk and never reports one written
    const reuse = reuseCounter();
    const r = await runLiveSource((sink) => g.create((c) => (reuse.see(c), sink(c))), {
      write: t.write,
      letGuestRun: g.run,
      partBytes: 256 << 10,
      downtimeTarget: 0.001,
      maxRounds: 3,
      copy: "always",
      pause: () => void (g.guest.paused = true),
    });
    expect(r.copiedBytes).toBe(r.totalBytes);
    expect(new Set(t.chunks.map((c) => c.buffer)).size).toBe(t.chunks.length); // each a copy of its own
    expect(reuse.count).toBeGreaterThan(0); // the encoder's buffers served again
    expect(Buffer.compare(destRam(t.bytes()), g.k.u8.subarray(g.ptr, g.ptr + g.ram))).toBe(0);
  });

  it("bad options: a RANGE VmstreamError, nothing written", async () => {
    const g = rig({ ramMiB: 1 });
    let n = 0;
    for (const bad of [
      { bandwidth: 0 },
      { bandwidth: -1 },
      { maxRounds: 0 },
      { maxRounds: 1.5 },
      { partBytes: 0 },
      { downtimeTarget: -1 },
      { roundBytes: 0 },
      { roundSeconds: Number.NaN },
    ]) {
      const e = await runLiveSource(g.create, { write: () => void n++, ...bad }).catch((x: unknown) => x);
      expect(e, JSON.stringify(bad)).toMatchObject({ name: "VmstreamError", code: "RANGE" });
    }
    expect(n).toBe(0);
  });
});
