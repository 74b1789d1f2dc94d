// multifd channels on worker threads (MultifdChannelWorkers through runLiveSourceTcp): over real loopback
// sockets, every connection's bytes are the bytes the single-thread path (runLiveSource with writeChannel) makes
// for the same guest, for every compression (differential); with the guest writing between PARTs, with a dirty
// log and with the scan, the joined stream decodes to the RAM at the pause; a destination that cuts a channel
// fails the migration; threads started ahead serve migration after migration (a failed one replaced); a memory
// that is not shared is refused before anything is sent.
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { nodeStreamCodecs, zstdUnavailable } from "../../src/io/codecs-node.js";
import { createKernels } from "../../src/kernels/index.js";
import { sharedKernelMemory } from "../../src/kernels/pool.js";
import type { Kernels } from "../../src/kernels/types.js";
import { runLiveSource } from "../../src/migration/live.js";
import { runLiveSourceTcp } from "../../src/migration/multifd-out.js";
import { MultifdChannelWorkers } from "../../src/migration/multifd-workers.js";
import { GuestWorkload } from "../../src/migration/simulate.js";
import { MigrationSource, type MigrationSourceOptions } from "../../src/migration/source.js";
import type { MultifdCompression } from "../../src/sections/ram/multifd.js";
import { decodeBytes, ramOf } from "../../src/sections/stream.js";
import { concat } from "../helpers/bytes.js";
import { tsWorkerScript } from "../helpers/kernel-workers.js";
import { joinConnections } from "../helpers/multifd-join.js";
import { SeededRandom } from "../helpers/random.js";

const MiB = 1 << 20;
const PS = 4096;
const COMPRESSIONS: MultifdCompression[] = zstdUnavailable() ? ["none", "zlib"] : ["none", "zlib", "zstd"];
const script = tsWorkerScript(new URL("../../src/migration/multifd-channel-worker.ts", import.meta.url));

interface Guest {
  k: Kernels;
  ptr: number;
  bytes: number;
  workload: GuestWorkload;
}

function guest(mib: number, seed: number, shared = true): Guest {
  const k = createKernels(shared ? { memory: sharedKernelMemory((mib + 16) * MiB) } : {});
  const bytes = mib * MiB;
  const ptr = k.alloc(bytes, 4096);
  const workload = new GuestWorkload(k, ptr, { ramBytes: bytes, dirtyRate: 1, workingSetPages: 512, hotPages: 64, seed, zeroFraction: 0.4 });
  workload.init();
  return { k, ptr, bytes, workload };
}

function sourceOptions(g: Guest, compression: MultifdCompression, extra: Partial<MigrationSourceOptions> = {}): MigrationSourceOptions {
  return {
    kernels: g.k,
    blocks: [{ name: "pc.ram", ptr: g.ptr, length: g.bytes }],
    bandwidth: 1 << 30,
    roundTime: 0.05,
    downtimeTarget: 0,
    maxRounds: 3,
    multifd: { channels: 2, compression, codecs: nodeStreamCodecs },
    ...extra,
  };
}

/** A destination that keeps every connection's bytes, in connection order (the main stream first). */
class Recorder {
  readonly server: Server;
  readonly conns: { socket: Socket; chunks: Buffer[]; ended: Promise<void> }[] = [];
  cutAfter: number | undefined;

  constructor() {
    this.server = createServer((socket) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      const ended = new Promise<void>((r) => socket.on("close", () => r()));
      socket.on("error", () => undefined);
      socket.on("data", (c) => {
        chunks.push(c);
        bytes += c.length;
        // cut the second channel (third connection) once it carried some bytes
        if (this.cutAfter !== undefined && this.conns.length >= 3 && this.conns[2]!.socket === socket && bytes > this.cutAfter) socket.destroy();
      });
      this.conns.push({ socket, chunks, ended });
    });
  }

  listen(): Promise<number> {
    return new Promise((r) => this.server.listen(0, "127.0.0.1", () => r((this.server.address() as { port: number }).port)));
  }

  async bytes(): Promise<Uint8Array[]> {
    await Promise.all(this.conns.map((c) => c.ended));
    return this.conns.map((c) => concat(c.chunks));
  }
}

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** The connections joined (tests/helpers/multifd-join.ts) and decoded: the RAM of the one block. */
function ramOfJoined(conns: Uint8Array[]): Uint8Array {
  const r = decodeBytes(joinConnections(conns, new SeededRandom(9)), { materialize: { ram: true } });
  try {
    expect(r.completeness.complete).toBe(true);
    return ramOf(r)!.blocks[0]!.data!.slice();
  } finally {
    r.dispose();
  }
}

async function recorder(): Promise<{ rec: Recorder; port: number }> {
  const rec = new Recorder();
  servers.push(rec.server);
  return { rec, port: await rec.listen() };
}

/** The single-thread path: every connection's bytes, main first. */
async function inThread(
  g: Guest,
  compression: MultifdCompression,
  letGuestRun?: () => void,
  extra: Partial<MigrationSourceOptions> = {},
): Promise<Uint8Array[]> {
  const main: Uint8Array[] = [];
  const chans: Uint8Array[][] = [[], []];
  await runLiveSource((sink, ch) => new MigrationSource(sourceOptions(g, compression, extra), sink, ch), {
    write: (c) => void main.push(c.slice()),
    writeChannel: (i, c) => void chans[i]!.push(c.slice()),
    ...(letGuestRun ? { letGuestRun } : {}),
    partBytes: 256 << 10,
  });
  return [concat(main), ...chans.map((c) => concat(c))];
}

describe("MultifdChannelWorkers", () => {
  for (const compression of COMPRESSIONS) {
    it(`2 channels on worker threads, ${compression}: every connection's bytes = the single-thread path's`, async () => {
      const a = guest(8, 1);
      const b = guest(8, 1);
      const expected = await inThread(a, compression);
      const { rec, port } = await recorder();
      await runLiveSourceTcp({ port }, (sink, ch) => new MigrationSource(sourceOptions(b, compression), sink, ch), {
        channelWorkers: { script },
        partBytes: 256 << 10,
      });
      const got = await rec.bytes();
      expect(got.length).toBe(3);
      for (let i = 0; i < 3; i++) {
        expect(got[i]!.length, `connection ${i}`).toBe(expected[i]!.length);
        expect(Buffer.compare(Buffer.from(got[i]!), Buffer.from(expected[i]!)), `connection ${i}`).toBe(0);
      }
    });
  }
});

describe("runLiveSourceTcp with channel workers, a guest writing between PARTs", () => {
  for (const mode of ["dirty log", "scan"] as const) {
    it(`${mode}, zlib: the joined stream = the RAM at the pause`, async () => {
      const g = guest(8, 7);
      const { rec, port } = await recorder();
      let atPause: Uint8Array | undefined;
      const r = await runLiveSourceTcp(
        { port },
        (sink, ch) =>
          new MigrationSource(
            sourceOptions(g, "zlib", { maxRounds: 6, ...(mode === "dirty log" ? { dirtyLog: () => g.workload.takeDirtyLog() } : {}) }),
            sink,
            ch,
          ),
        {
          channelWorkers: { script },
          letGuestRun: () => g.workload.run(40),
          partBytes: 512 << 10,
          downtimeTarget: 0.0005,
          maxRounds: 6,
          pause: () => {
            g.workload.paused = true;
            atPause = g.k.u8.slice(g.ptr, g.ptr + g.bytes);
          },
        },
      );
      expect(r.rounds.length).toBeGreaterThan(1);
      expect(r.rounds[0]!.parts).toBeGreaterThan(1);
      const conns = await rec.bytes();
      expect(conns.length).toBe(3);
      expect(r.totalBytes).toBe(conns.reduce((n, c) => n + c.length, 0));
      expect(Buffer.compare(ramOfJoined(conns), atPause!)).toBe(0);
    });
  }
});

describe("standing channel threads", () => {
  it("started ahead and reused: three migrations in a row on the same threads, one of them cut, all others byte-exact", async () => {
    const workers = new MultifdChannelWorkers({ script });
    try {
      await workers.start(2);
      const a = guest(8, 21);
      const expected = await inThread(a, "zstd");
      const b = guest(8, 21);
      const once = async (cut: boolean) => {
        const { rec, port } = await recorder();
        if (cut) rec.cutAfter = 1000;
        const big = cut ? guest(48, 5) : b;
        const r = await runLiveSourceTcp({ port }, (sink, ch) => new MigrationSource(sourceOptions(big, "zstd"), sink, ch), {
          channelWorkers: workers,
          partBytes: 256 << 10,
        }).catch((x: unknown) => x);
        return { r, conns: await rec.bytes() };
      };
      for (const cut of [false, true, false]) {
        const { r, conns } = await once(cut);
        if (cut) {
          expect(r).toMatchObject({ name: "LiveMigrationError" });
          continue;
        }
        expect(r).toMatchObject({ totalBytes: conns.reduce((n, c) => n + c.length, 0) });
        for (let i = 0; i < 3; i++) expect(Buffer.compare(Buffer.from(conns[i]!), Buffer.from(expected[i]!)), `connection ${i}`).toBe(0);
      }
    } finally {
      await workers.close();
    }
  });
});

describe("channel workers that cannot work", () => {
  it("a destination that cuts a channel: the migration fails naming the channel, every connection closed", async () => {
    const g = guest(48, 3); // more than the loopback socket buffers take without a reader
    const { rec, port } = await recorder();
    rec.cutAfter = 100_000;
    const e = await runLiveSourceTcp({ port }, (sink, ch) => new MigrationSource(sourceOptions(g, "none"), sink, ch), {
      channelWorkers: { script },
      partBytes: 256 << 10,
    }).catch((x: unknown) => x);
    expect(e).toMatchObject({ name: "LiveMigrationError" });
    expect(String((e as Error).message)).toMatch(/multifd channel 1 failed/);
    await rec.bytes(); // every connection closes
  });

  it("a guest memory that is not shared: a RANGE error before any connection", async () => {
    const g = guest(1, 4, false);
    const { rec, port } = await recorder();
    const e = await runLiveSourceTcp({ port }, (sink, ch) => new MigrationSource(sourceOptions(g, "none"), sink, ch), {
      channelWorkers: { script },
    }).catch((x: unknown) => x);
    expect(e).toMatchObject({ name: "VmstreamError", code: "RANGE" });
    expect(String((e as Error).message)).toMatch(/shared memory/);
    await new Promise((r) => setTimeout(r, 50));
    expect(rec.conns.length).toBe(0);
  });

  it("a port used twice, or a channel it does not have, is refused", () => {
    const w = new MultifdChannelWorkers({ script });
    const memory = sharedKernelMemory(1 << 20);
    expect(() => w.open({ channels: 1, pageSize: PS, compression: "none", memory: new WebAssembly.Memory({ initial: 1 }) })).toThrow(/shared memory/);
    w.open({ channels: 1, pageSize: PS, compression: "none", memory });
    expect(() => w.open({ channels: 1, pageSize: PS, compression: "none", memory })).toThrow(/open already/);
    expect(() => w.raw(1, new Uint8Array(64))).toThrow(/no such multifd channel/);
    return w.close();
  });
});
