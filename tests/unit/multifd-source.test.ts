// The source engine in multifd mode (MigrationSource / RamSection `multifd`, runLiveSource `writeChannel`): the
// main stream and the channels it writes, joined by MultifdJoin (connections fed in pieces, in random order, as
// sockets would) and decoded, give the source's RAM at the pause for 1-3 channels and every compression; the same
// guest migrated over one stream and over channels ends with the same RAM; the main stream carries no PAGE
// record; packets are numbered across channels from 0, open with the init message, every RAM EOS is a sync
// point; the live driver copies the guest-memory views it gets into a few large chunks; bad combinations refuse.
import { describe, expect, it } from "vitest";
import { nodeStreamCodecs, zstdUnavailable } from "../../src/io/codecs-node.js";
import { VmstreamError } from "../../src/io/errors.js";
import { createKernels } from "../../src/kernels/index.js";
import type { Kernels } from "../../src/kernels/types.js";
import { runLiveSource } from "../../src/migration/live.js";
import { GuestWorkload } from "../../src/migration/simulate.js";
import { MigrationSource, type MigrationSourceOptions } from "../../src/migration/source.js";
import { MULTIFD_INIT_SIZE, MultifdChannelReader, type MultifdCompression, multifdHeaderSize } from "../../src/sections/ram/multifd.js";
import { decodeBytes, ramOf } from "../../src/sections/stream.js";
import { concat } from "../helpers/bytes.js";
import { joinConnections } from "../helpers/multifd-join.js";
import { SeededRandom } from "../helpers/random.js";

const PS = 4096;
const MiB = 1 << 20;
const COMPRESSIONS: MultifdCompression[] = zstdUnavailable() ? ["none", "zlib"] : ["none", "zlib", "zstd"];

interface Guest {
  k: Kernels;
  ptr: number;
  bytes: number;
  workload: GuestWorkload;
  /** The guest runs: page writes, and `zeroed` pages cleared (dirty pages that became zero pages). */
  run: (writes: number, zeroed?: number) => void;
  ram: () => Uint8Array;
}

function guest(mib: number, seed: number): Guest {
  const k = createKernels();
  const bytes = mib * MiB;
  const ptr = k.alloc(bytes, 4096);
  const workload = new GuestWorkload(k, ptr, { ramBytes: bytes, dirtyRate: 1, workingSetPages: 512, hotPages: 64, seed, zeroFraction: 0.4 });
  workload.init();
  const rnd = new SeededRandom(seed);
  return {
    k,
    ptr,
    bytes,
    workload,
    run: (writes, zeroed = 0) => {
      workload.run(writes);
      for (let i = 0; i < zeroed; i++) {
        const p = rnd.int(bytes / PS);
        k.u8.fill(0, ptr + p * PS, ptr + (p + 1) * PS);
      }
    },
    ram: () => k.u8.slice(ptr, ptr + bytes),
  };
}

interface Outputs {
  main: Uint8Array[];
  channels: Uint8Array[][];
}

/** A whole MigrationSource run (scan mode: no dirty log) with the guest running between rounds; RAM at the pause. */
function runSource(g: Guest, extra: Partial<MigrationSourceOptions>, zeroed = 3): { out: Outputs; atPause: Uint8Array; source: { rounds: number } } {
  const out: Outputs = { main: [], channels: [] };
  let atPause: Uint8Array | undefined;
  const src = new MigrationSource(
    {
      kernels: g.k,
      blocks: [{ name: "pc.ram", ptr: g.ptr, length: g.bytes }],
      bandwidth: 64 * MiB,
      roundTime: 0.05,
      downtimeTarget: 0,
      maxRounds: 5,
      pause: () => {
        atPause = g.ram();
      },
      ...extra,
    },
    (c) => out.main.push(c.slice()),
    (i, c) => (out.channels[i] ??= []).push(c.slice()),
  );
  try {
    const o = src.run(() => g.run(40, zeroed));
    return { out, atPause: atPause!, source: { rounds: o.rounds.length } };
  } finally {
    src.dispose();
  }
}

/** Main stream and channels joined as sockets would feed them (tests/helpers/multifd-join.ts). */
const join = (out: Outputs, rnd: SeededRandom): Uint8Array => joinConnections([concat(out.main), ...out.channels.map((c) => concat(c))], rnd);

/** The decoded stream's RAM (complete, one block). */
function ramOfStream(stream: Uint8Array): { ram: Uint8Array; records: { zero: number; normal: number; xbzrle: number } } {
  const r = decodeBytes(stream, { materialize: { ram: true } });
  try {
    expect(r.completeness.complete).toBe(true);
    const ram = ramOf(r)!;
    const b = ram.blocks[0]!;
    return { ram: b.data!.slice(), records: { ...ram.records } };
  } finally {
    r.dispose();
  }
}

/** Every channel's packets: init first, packet numbers, pages and SYNC packets. */
function readChannels(out: Outputs, compression: MultifdCompression) {
  const nums: number[] = [];
  const syncs: number[] = [];
  let pages = 0;
  out.channels.forEach((chunks, i) => {
    const r = new MultifdChannelReader({ pageSize: PS, codecs: nodeStreamCodecs, compression });
    r.push(concat(chunks));
    expect(r.next()).toEqual({ type: "init", init: { channel: i, uuid: new Uint8Array(16) } });
    let n = 0;
    for (let ev = r.next(); ev; ev = r.next()) {
      if (ev.type !== "packet") throw new Error("a second init message");
      nums.push(Number(ev.packet.packetNum));
      pages += ev.packet.pageOffsets.length;
      if (ev.packet.sync) n++;
      // a packet holds one block's pages, at most 128
      expect(ev.packet.pageOffsets.length).toBeLessThanOrEqual(128);
    }
    r.finish();
    syncs.push(n);
  });
  return { nums: nums.sort((a, b) => a - b), syncs, pages };
}

describe("MigrationSource in multifd mode", () => {
  for (const compression of COMPRESSIONS) {
    for (const channels of [1, 2, 3]) {
      it(`${channels} channel(s), ${compression}: main stream + channels joined and decoded = the source's RAM at the pause`, () => {
        const g = guest(4, 7 + channels);
        const { out, atPause, source } = runSource(g, { multifd: { channels, compression, codecs: nodeStreamCodecs } });
        expect(source.rounds).toBeGreaterThan(1);
        expect(out.channels).toHaveLength(channels);
        // the main stream alone: no PAGE record (zero pages only), and it decodes as a stream
        const main = ramOfStream(concat(out.main));
        expect(main.records.normal).toBe(0);
        expect(main.records.xbzrle).toBe(0);
        expect(main.records.zero).toBeGreaterThan(0);
        // every RAM EOS (START, each PART, END) is a sync point on every channel; numbers 0.. across channels
        const eos = decodeBytes(concat(out.main), {}).sections.filter((s) => s.idstr === "ram").length;
        const ch = readChannels(out, compression);
        expect(ch.syncs).toEqual(Array(channels).fill(eos));
        expect(ch.nums).toEqual([...ch.nums.keys()]);
        expect(ch.pages).toBeGreaterThan((g.bytes / PS) * 0.5);
        const joined = ramOfStream(join(out, new SeededRandom(channels * 31 + compression.length)));
        expect(joined.records.normal).toBe(ch.pages);
        expect(Buffer.compare(joined.ram, atPause)).toBe(0);
      });
    }
  }

  it("the same guest over one stream and over 2 channels: the same RAM at the destination, the same page counts", () => {
    const single = guest(4, 99);
    const a = runSource(single, {});
    const multi = guest(4, 99);
    const b = runSource(multi, { multifd: { channels: 2 } });
    expect(Buffer.compare(a.atPause, b.atPause)).toBe(0); // same guest, same writes
    const ra = ramOfStream(concat(a.out.main));
    const rb = ramOfStream(join(b.out, new SeededRandom(5)));
    expect(Buffer.compare(ra.ram, a.atPause)).toBe(0);
    expect(Buffer.compare(rb.ram, ra.ram)).toBe(0);
    expect(rb.records.zero + rb.records.normal).toBe(ra.records.zero + ra.records.normal);
  });

  it("three RAM blocks (one all zero): packets never mix blocks, every block = the source's at the pause", () => {
    const k = createKernels();
    const sizes = [3 * MiB, 64 << 10, 2 * MiB];
    const blocks = sizes.map((length, i) => ({ name: ["pc.ram", "vga.vram", "/rom@etc/acpi/tables"][i]!, ptr: k.alloc(length, 4096), length }));
    const rnd = new SeededRandom(77);
    const scribble = (n: number) => {
      for (let i = 0; i < n; i++) {
        const b = blocks[rnd.pick([0, 2])]!;
        k.u8[b.ptr + rnd.int(b.length)] = 1 + rnd.int(255);
      }
    };
    for (const b of blocks) k.u8.fill(0, b.ptr, b.ptr + b.length);
    scribble(3000);
    const out: Outputs = { main: [], channels: [] };
    let atPause: Uint8Array[] = [];
    const src = new MigrationSource(
      {
        kernels: k,
        blocks,
        bandwidth: 16 * MiB,
        roundTime: 0.05,
        downtimeTarget: 0,
        maxRounds: 4,
        multifd: { channels: 3 },
        pause: () => {
          atPause = blocks.map((b) => k.u8.slice(b.ptr, b.ptr + b.length));
        },
      },
      (c) => out.main.push(c.slice()),
      (i, c) => (out.channels[i] ??= []).push(c.slice()),
    );
    try {
      src.run(() => scribble(200));
    } finally {
      src.dispose();
    }
    const names = new Set<string>();
    for (const chunks of out.channels) {
      const r = new MultifdChannelReader({ pageSize: PS });
      r.push(concat(chunks));
      for (let ev = r.next(); ev; ev = r.next()) if (ev.type === "packet" && ev.packet.pageOffsets.length > 0) names.add(ev.packet.block);
    }
    expect([...names].sort()).toEqual(["/rom@etc/acpi/tables", "pc.ram"]); // vga.vram is all zero: main stream only
    const r = decodeBytes(join(out, new SeededRandom(3)), { materialize: { ram: true } });
    try {
      expect(r.completeness.complete).toBe(true);
      const got = ramOf(r)!.blocks;
      expect(got.map((b) => b.name)).toEqual(blocks.map((b) => b.name));
      got.forEach((b, i) => expect(Buffer.compare(b.data!, atPause[i]!), b.name).toBe(0));
    } finally {
      r.dispose();
    }
  });

  it("a dirty log instead of the scan, and a uuid in the init messages", () => {
    const g = guest(2, 3);
    const uuid = new Uint8Array(16).map((_, i) => i + 1);
    // (only the workload's own writes: they are what its log reports)
    const { out, atPause, source } = runSource(g, { dirtyLog: () => g.workload.takeDirtyLog(), multifd: { channels: 2, uuid } }, 0);
    expect(source.rounds).toBeGreaterThan(1);
    for (const c of out.channels) expect(c[0]!.subarray(8, 24)).toEqual(uuid);
    const joined = ramOfStream(join(out, new SeededRandom(1)));
    expect(Buffer.compare(joined.ram, atPause)).toBe(0);
  });

  it("refuses XBZRLE, a missing channel sink, bad channel counts and a short uuid", () => {
    const g = guest(1, 1);
    const base: MigrationSourceOptions = {
      kernels: g.k,
      blocks: [{ name: "pc.ram", ptr: g.ptr, length: g.bytes }],
      bandwidth: MiB,
      downtimeTarget: 0,
      maxRounds: 1,
    };
    const sink = () => undefined;
    const refused = (o: Partial<MigrationSourceOptions>, withChannelSink = true) => {
      try {
        new MigrationSource({ ...base, ...o }, sink, withChannelSink ? sink : undefined).dispose();
      } catch (e) {
        expect(e).toBeInstanceOf(VmstreamError);
        return (e as VmstreamError).message;
      }
      throw new Error("accepted");
    };
    expect(refused({ multifd: { channels: 2 }, xbzrleCacheBytes: MiB })).toMatch(/XBZRLE is not used with multifd/);
    expect(refused({ multifd: { channels: 2 }, xbzrleShadow: true })).toMatch(/XBZRLE is not used with multifd/);
    expect(refused({ multifd: { channels: 2 } }, false)).toMatch(/channel sink/);
    expect(refused({ multifd: { channels: 0 } })).toMatch(/channels/);
    expect(refused({ multifd: { channels: 256 } })).toMatch(/channels/);
    expect(refused({ multifd: { channels: 2, uuid: new Uint8Array(4) } })).toMatch(/uuid/);
    expect(refused({ multifd: { channels: 2, compression: "zlib" } })).toMatch(/no zlib compressor/);
  });
});

describe("runLiveSource with multifd channels", () => {
  /** A transport per connection: keeps every chunk, resolves each write on a later turn, reports it written. */
  function transport() {
    const main: Uint8Array[] = [];
    const channels: Uint8Array[][] = [];
    const later = (written: () => void) => new Promise<void>((r) => setImmediate(() => (written(), r())));
    return {
      main,
      channels,
      write: (c: Uint8Array, written: () => void) => (main.push(c.slice()), later(written)),
      writeChannel: (i: number, c: Uint8Array, written: () => void) => ((channels[i] ??= []).push(c), later(written)),
    };
  }

  for (const compression of COMPRESSIONS) {
    it(`2 channels, ${compression}, a guest writing between PARTs: joined stream = RAM at the pause; guest-memory views copied into a few chunks`, async () => {
      const g = guest(8, 11);
      const t = transport();
      let atPause: Uint8Array | undefined;
      const r = await runLiveSource(
        (sink, channelSink) =>
          new MigrationSource(
            {
              kernels: g.k,
              blocks: [{ name: "pc.ram", ptr: g.ptr, length: g.bytes }],
              bandwidth: 1e9,
              downtimeTarget: 0,
              maxRounds: 6,
              dirtyLog: () => g.workload.takeDirtyLog(),
              multifd: { channels: 2, compression, codecs: nodeStreamCodecs },
            },
            sink,
            channelSink,
          ),
        {
          write: t.write,
          writeChannel: (i, c, written) => {
            // nothing handed over views guest memory (it changes while the chunk waits)
            expect(c.buffer).not.toBe(g.k.memory.buffer);
            // the driver's copy buffers come back only once written: a chunk never changes before that
            const copy = c.slice();
            return t.writeChannel(i, copy, written);
          },
          letGuestRun: () => g.workload.run(30),
          partBytes: 512 << 10,
          downtimeTarget: 0.0005,
          maxRounds: 6,
          pause: () => {
            g.workload.paused = true;
            atPause = g.ram();
          },
        },
      );
      expect(r.rounds.length).toBeGreaterThan(1);
      expect(r.rounds[0]!.parts).toBeGreaterThan(1);
      // the first round sends every page, however much compression shrinks what goes out
      expect(r.rounds[0]!.pagesSent).toBe(g.bytes / PS);
      const wire = concat(t.main).length + t.channels.reduce((n, c) => n + concat(c).length, 0);
      expect(r.totalBytes).toBe(wire);
      if (compression === "none") expect(r.copiedBytes).toBeGreaterThan(g.bytes * 0.5);
      // a few chunks per channel and PART, not one per run of pages
      const parts = r.rounds.reduce((n, x) => n + x.parts, 0) + 2;
      for (const c of t.channels) expect(c.length).toBeLessThan(parts * 8);
      const joined = ramOfStream(join({ main: t.main, channels: t.channels }, new SeededRandom(17)));
      expect(Buffer.compare(joined.ram, atPause!)).toBe(0);
    });
  }

  it("a multifd source without writeChannel: a RANGE error, nothing written", async () => {
    const g = guest(1, 2);
    let n = 0;
    const e = await runLiveSource(
      (sink, channelSink) =>
        new MigrationSource(
          {
            kernels: g.k,
            blocks: [{ name: "pc.ram", ptr: g.ptr, length: g.bytes }],
            bandwidth: 1e9,
            downtimeTarget: 0,
            maxRounds: 1,
            multifd: { channels: 2 },
          },
          sink,
          channelSink,
        ),
      { write: () => void n++ },
    ).catch((x: unknown) => x);
    expect(e).toMatchObject({ name: "VmstreamError", code: "RANGE" });
    expect(n).toBe(0);
  });

  it("a failing channel connection fails the migration (stage and offset), the guest resumed after the pause", async () => {
    const g = guest(2, 4);
    let paused = false;
    let resumed = false;
    const e = await runLiveSource(
      (sink, channelSink) =>
        new MigrationSource(
          {
            kernels: g.k,
            blocks: [{ name: "pc.ram", ptr: g.ptr, length: g.bytes }],
            bandwidth: 1e9,
            downtimeTarget: 1,
            maxRounds: 2,
            multifd: { channels: 2 },
          },
          sink,
          channelSink,
        ),
      {
        write: () => undefined,
        writeChannel: (i) => (paused && i === 1 ? Promise.reject(new Error("channel 1 reset")) : undefined),
        pause: () => void (paused = true),
        resume: () => void (resumed = true),
      },
    ).catch((x: unknown) => x);
    expect(e).toMatchObject({ name: "LiveMigrationError", stage: "complete", paused: true, resumed: true });
    expect(String((e as Error).message)).toContain("channel 1 reset");
  });
});

// the packet header layout the engine writes is the one the reader checks (header size for 4 KiB pages)
it("a SYNC packet is exactly one header", () => {
  const g = guest(1, 5);
  const chans: Uint8Array[][] = [];
  const src = new MigrationSource(
    { kernels: g.k, blocks: [{ name: "pc.ram", ptr: g.ptr, length: g.bytes }], bandwidth: 1e9, downtimeTarget: 0, maxRounds: 1, multifd: { channels: 1 } },
    () => undefined,
    (i, c) => (chans[i] ??= []).push(c.slice()),
  );
  src.setup();
  src.dispose();
  expect(concat(chans[0]!).length).toBe(MULTIFD_INIT_SIZE + multifdHeaderSize(PS));
});
