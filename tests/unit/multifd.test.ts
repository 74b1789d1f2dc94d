// multifd without QEMU: every fixture split into a main stream and N channels (MultifdSplit), then joined back
// (MultifdJoin) with the connections' bytes arriving in random pieces and random order: the joined stream is an
// ordinary stream with the same RAM and device states as the original; the sync rules hold (no input is ever
// blocked for good); and broken channels fail with the channel and its byte offset.
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { MultifdJoin, type MultifdJoinOptions } from "../../src/convert/multifd-join.js";
import { MultifdSplit, type MultifdSplitOptions } from "../../src/convert/multifd-split.js";
import { joinChunks } from "../../src/io/chunks.js";
import { VmstreamError } from "../../src/io/errors.js";
import { nodeInflate } from "../../src/io/node.js";
import type { DecodeResult } from "../../src/savevm/types.js";
import { MULTIFD_INIT_SIZE, MultifdChannelReader, multifdHeaderSize } from "../../src/sections/ram/multifd.js";
import { decodeBytes, ramOf } from "../../src/sections/stream.js";
import { sha256 } from "../helpers/bytes.js";
import { SeededRandom } from "../helpers/random.js";

const dir = new URL("../fixtures/", import.meta.url);
const load = (name: string) => new Uint8Array(gunzipSync(readFileSync(new URL(name, dir))));
const FIXTURES = ["x86-pc-64m.mig.gz", "x86-pc-xbzrle.mig.gz", "x86-pc-block.mig.gz", "ppc64-pseries.mig.gz"];
const decode = { inflate: nodeInflate };

interface Split {
  main: Uint8Array;
  channels: Uint8Array[];
  report: ReturnType<MultifdSplit["end"]>["report"];
}

function split(input: Uint8Array, o: MultifdSplitOptions): Split {
  const s = new MultifdSplit({ decode, ...o });
  const main: Uint8Array[] = [];
  const channels: Uint8Array[][] = [];
  const take = () => {
    const out = s.output();
    main.push(...out.main);
    out.channels.forEach((c, i) => {
      (channels[i] ??= []).push(...c);
    });
  };
  for (let at = 0; at < input.length; at += 1 << 20) {
    s.push(input.subarray(at, at + (1 << 20)));
    take();
  }
  const end = s.end();
  main.push(...end.chunks);
  take();
  return { main: joinChunks(main), channels: channels.map((c) => joinChunks(c)), report: end.report };
}

/**
 * Feed the join the way sockets would: a random connection that is not told to wait gets its next random piece.
 * Channels connect in random order, some before the main stream's first bytes. Returns the joined bytes.
 */
function join(parts: Split, rnd: SeededRandom, o: MultifdJoinOptions = {}): { bytes: Uint8Array; report: ReturnType<MultifdJoin["end"]>["report"] } {
  const j = new MultifdJoin({ decode, ...o });
  const out: Uint8Array[] = [];
  const inputs = [parts.main, ...parts.channels].map((bytes, i) => ({ bytes, at: 0, conn: i === 0 ? undefined : j.channel(), main: i === 0 }));
  try {
    for (;;) {
      const ready = inputs.filter((x) => x.at < x.bytes.length && !(x.main ? j.mainWaiting : x.conn!.waiting));
      if (ready.length === 0) break;
      const x = rnd.pick(ready);
      const n = Math.min(x.bytes.length - x.at, rnd.int(8) === 0 ? 1 + rnd.int(64) : 1 + rnd.int(400_000));
      const piece = x.bytes.slice(x.at, x.at + n);
      x.at += n;
      if (x.main) j.pushMain(piece);
      else x.conn!.push(piece);
      if (x.at === x.bytes.length && !x.main) x.conn!.end();
      out.push(...j.output());
    }
    const stuck = inputs.filter((x) => x.at < x.bytes.length);
    expect(stuck.map((x) => (x.main ? "main" : `channel ${x.conn!.id}`))).toEqual([]);
    const end = j.end();
    out.push(...end.chunks);
    return { bytes: joinChunks(out), report: end.report };
  } catch (e) {
    j.dispose();
    throw e;
  }
}

/** What must survive the trip: RAM contents, device states, the vmdesc, completeness. */
function content(r: DecodeResult): unknown {
  const ram = ramOf(r)!;
  return {
    ram: ram.blocks.map((b) => [b.name, b.data ? sha256(b.data) : null]),
    devices: r.devices.map((d) => [
      d.idstr,
      d.instanceId,
      d.version,
      JSON.stringify(d.state, (_k, v) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? sha256(v) : v)),
    ]),
    vmdesc: r.vmdesc?.text,
    complete: r.completeness.complete,
  };
}

function decoded(bytes: Uint8Array): unknown {
  const r = decodeBytes(bytes, { ...decode, materialize: { ram: true } });
  try {
    return content(r);
  } finally {
    r.dispose();
  }
}

describe("multifd split and join", () => {
  for (const name of FIXTURES) {
    it(`${name}: split into 1..3 channels and joined in random order, same content`, () => {
      const input = load(name);
      const want = decoded(input);
      const rnd = new SeededRandom(0x5eed + name.length);
      for (const channels of name.startsWith("ppc64") ? [2] : [1, 2, 3]) {
        const parts = split(input, { channels });
        expect(parts.report.syncPoints).toBeGreaterThan(0);
        expect(parts.channels.length).toBe(channels);
        // the main stream alone still decodes (QEMU's loader takes it; the pages are missing)
        expect(() => decodeBytes(parts.main, { ...decode, materialize: false }).dispose()).not.toThrow();
        for (let round = 0; round < 2; round++) {
          const joined = join(parts, rnd);
          expect(joined.report.syncPoints).toBe(parts.report.syncPoints);
          expect(joined.report.channelPages).toBe(parts.report.channelPages);
          expect(joined.report.channels.map((c) => c.channel)).toEqual([...Array(channels).keys()]);
          expect(decoded(joined.bytes)).toEqual(want);
        }
      }
    });
  }

  it("channels all there first, the main stream byte by byte: pages released at a sync point wait for the RAM section's end", () => {
    const input = load("x86-pc-64m.mig.gz");
    const parts = split(input, { channels: 2 });
    const j = new MultifdJoin({ decode });
    const out: Uint8Array[] = [];
    try {
      const conns = parts.channels.map(() => j.channel());
      parts.channels.forEach((bytes, i) => {
        conns[i]!.push(bytes);
        conns[i]!.end();
      });
      for (let at = 0; at < parts.main.length; at++) {
        expect(j.mainWaiting).toBe(false);
        j.pushMain(parts.main.subarray(at, at + 1));
        out.push(...j.output());
      }
      out.push(...j.end().chunks);
    } finally {
      j.dispose();
    }
    expect(decoded(joinChunks(out))).toEqual(decoded(input));
  });

  it("channels carry the pages: every packet header checks, pages spread over all channels", () => {
    const parts = split(load("x86-pc-64m.mig.gz"), { channels: 3 });
    let pages = 0;
    for (const [i, bytes] of parts.channels.entries()) {
      const r = new MultifdChannelReader({ pageSize: 4096 });
      r.push(bytes);
      const first = r.next();
      expect(first).toEqual({ type: "init", init: { channel: i, uuid: new Uint8Array(16) } });
      let mine = 0;
      let syncs = 0;
      for (let ev = r.next(); ev; ev = r.next()) {
        if (ev.type !== "packet") throw new Error("init twice");
        mine += ev.packet.pageOffsets.length;
        if (ev.packet.sync) syncs++;
      }
      r.finish();
      expect(syncs).toBe(parts.report.syncPoints);
      expect(mine).toBeGreaterThan(0);
      pages += mine;
    }
    expect(pages).toBe(parts.report.channelPages);
  });
});

describe("multifd join: broken input", () => {
  const parts = split(load("x86-pc-64m.mig.gz"), { channels: 2 });

  function joinAll(p: Split, o: MultifdJoinOptions = {}): void {
    const j = new MultifdJoin({ decode, ...o });
    try {
      const conns = p.channels.map(() => j.channel());
      p.channels.forEach((bytes, i) => {
        conns[i]!.push(bytes);
        conns[i]!.end();
      });
      j.pushMain(p.main);
      j.end();
    } finally {
      j.dispose();
    }
  }

  const error = (f: () => void): VmstreamError => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(VmstreamError);
      return e as VmstreamError;
    }
    throw new Error("no error");
  };

  it("the untouched parts join", () => {
    expect(() => joinAll(parts)).not.toThrow();
  });

  it("a channel cut inside a packet: the channel and its offset", () => {
    const cut = parts.channels[1]!.subarray(0, MULTIFD_INIT_SIZE + multifdHeaderSize(4096) + 1000);
    const e = error(() => joinAll({ ...parts, channels: [parts.channels[0]!, cut] }));
    expect(e.message).toMatch(/multifd channel 1/);
    expect(e.offset).toBeDefined();
  });

  it("a missing channel: the main stream waits at the first sync point and the migration fails", () => {
    const e = error(() => joinAll({ ...parts, channels: [parts.channels[0]!] }, { channels: 2 }));
    expect(e.message).toMatch(/waited for the multifd channels/);
  });

  it("a bad packet magic: the channel and the packet's offset", () => {
    const bad = parts.channels[0]!.slice();
    bad[MULTIFD_INIT_SIZE] ^= 0xff;
    const e = error(() => joinAll({ ...parts, channels: [bad, parts.channels[1]!] }));
    expect(e.message).toMatch(/multifd channel 0: bad multifd magic at byte 64/);
  });

  it("a channel id used twice", () => {
    const e = error(() => joinAll({ ...parts, channels: [parts.channels[0]!, parts.channels[0]!] }));
    expect(e.message).toMatch(/multifd channel 0 connected twice/);
  });

  it("another VM's UUID on one channel", () => {
    const other = parts.channels[1]!.slice();
    other[8] = 1;
    expect(error(() => joinAll({ ...parts, channels: [parts.channels[0]!, other] })).message).toMatch(/another VM's UUID/);
  });

  it("too many pages in a packet, and an offset past its block", () => {
    const big = parts.channels[0]!.slice();
    const dv = new DataView(big.buffer);
    // the first packet after the init message: pages_alloc
    dv.setUint32(MULTIFD_INIT_SIZE + 12, 129);
    expect(error(() => joinAll({ ...parts, channels: [big, parts.channels[1]!] })).message).toMatch(/too many pages/);
  });

  it("a page offset not page aligned, or past 2^53: the channel, the offset slot's byte, the offset", () => {
    // the first packet of channel 0 that carries pages
    const r = new MultifdChannelReader({ pageSize: 4096 });
    r.push(parts.channels[0]!);
    let at = MULTIFD_INIT_SIZE;
    r.next();
    for (let ev = r.next(); ev?.type === "packet" && ev.packet.pageOffsets.length === 0; ev = r.next()) at += multifdHeaderSize(4096);
    const slot = at + multifdHeaderSize(4096) - 8 * 128; // the first offset slot
    for (const [hi, lo, shown] of [
      [0, 0x1234, "0x1234"],
      [0x200000, 0, "0x20000000000000"],
    ] as const) {
      const bad = parts.channels[0]!.slice();
      const dv = new DataView(bad.buffer);
      dv.setUint32(slot, hi);
      dv.setUint32(slot + 4, lo);
      const e = error(() => joinAll({ ...parts, channels: [bad, parts.channels[1]!] }));
      expect(e.message).toMatch(new RegExp(`multifd channel 0: bad page offset at byte ${slot}.*${shown} in pc.ram`));
    }
  });

  it("a channel that stops early: sync points missing", () => {
    const r = new MultifdChannelReader({ pageSize: 4096 });
    r.push(parts.channels[1]!);
    r.next();
    // keep the init message and the first packet (the first sync point) only
    const first = r.next();
    if (first?.type !== "packet") throw new Error("no packet");
    const short = parts.channels[1]!.subarray(0, MULTIFD_INIT_SIZE + multifdHeaderSize(4096) + first.packet.wireBytes);
    const e = error(() => joinAll({ ...parts, channels: [parts.channels[0]!, short] }));
    expect(e.message).toMatch(/multifd channel 1: the connection ended before the SYNC of sync point \d+/);
  });
});
