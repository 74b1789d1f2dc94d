// The multifd stream codecs of src/io/codecs-node.ts: many packets through one stream with the pages cut at random
// places; both directions against the real zlib and libzstd driven as QEMU 7.2's multifd channels drive them
// (tests/helpers/multifd-codec-peer.c); hostile packets: truncated, garbage, too long, too short, left over.
import { deflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import type { StreamCodec, StreamCompressor, StreamDecompressor } from "../../src/io/codec.js";
import { nodeStreamCodecs, zstdUnavailable } from "../../src/io/codecs-node.js";
import { codecPeer, peerCompress, peerDecompress } from "../helpers/codec-peer.js";
import { thrownBy } from "../helpers/errors.js";
import { SeededRandom } from "../helpers/random.js";
import { describeIfInstalled, type Requirement } from "../helpers/requires.js";

const PAGE = 4096;
const WORDS = ["the ", "kernel ", "page ", "0x7fff", "\n", "systemd[1]: ", "usr/lib/", "error", "  ", "return 0;", "QEMU "];

/** A guest-like page: text, random bytes, mostly zero, all zero, or a copy of an earlier page. */
function guestPage(r: SeededRandom, earlier: readonly Uint8Array[]): Uint8Array {
  const kind = r.int(5);
  if (kind === 4 && earlier.length > 0) return earlier[earlier.length - 1 - r.int(Math.min(earlier.length, 40))]!.slice();
  const p = new Uint8Array(PAGE);
  if (kind === 0) {
    const text = new TextEncoder();
    for (let i = 0; i < PAGE; ) {
      const w = text.encode(r.pick(WORDS));
      p.set(w.subarray(0, PAGE - i), i);
      i += w.length;
    }
  } else if (kind === 1) r.fill(p);
  else if (kind === 2) for (let k = r.int(32); k > 0; k--) p[r.int(PAGE)] = r.byte();
  return p;
}

function pagesOf(r: SeededRandom, n: number, earlier: Uint8Array[]): Uint8Array[] {
  const pages: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const p = guestPage(r, earlier);
    pages.push(p);
    earlier.push(p);
  }
  return pages;
}

function join(parts: readonly Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

/**
 * The pages' bytes cut at random places into parts of 0 to 9000 bytes, or one part in a quarter of the cases
 * (Buffers: their slice() does not copy).
 */
function cutRandomly(r: SeededRandom, pages: readonly Uint8Array[]): Uint8Array[] {
  const all = Buffer.concat(pages);
  if (r.int(4) === 0) return [all];
  const parts: Uint8Array[] = [];
  for (let o = 0; o < all.length; ) {
    const n = Math.min(r.int(9000), all.length - o);
    parts.push(all.subarray(o, o + n));
    o += n;
  }
  return parts;
}

/** An output buffer of `n` bytes inside a bigger one whose tail is a known pattern, to see writes past `n`. */
function guarded(n: number): { out: Uint8Array; untouchedPastEnd(): boolean } {
  const big = new Uint8Array(n + 256).fill(0xa5);
  return { out: big.subarray(0, n), untouchedPastEnd: () => big.subarray(n).every((b) => b === 0xa5) };
}

function decompressAll(d: StreamDecompressor, packets: readonly Uint8Array[], pageCounts: readonly number[]): Uint8Array {
  const outs = packets.map((data, i) => {
    const out = new Uint8Array(pageCounts[i]! * PAGE);
    d.decompress(data, out);
    return out;
  });
  return join(outs);
}

interface Case {
  readonly name: "zlib" | "zstd";
  readonly codec: () => StreamCodec;
  readonly levels: readonly number[];
  readonly need: Requirement;
  /** Bytes that end the stream (zlib) or are not a whole block (zstd) when appended to a flushed packet. */
  readonly badTail: Uint8Array;
}

const zstdMissing = zstdUnavailable();
const cases: Case[] = [
  {
    name: "zlib",
    codec: () => nodeStreamCodecs.zlib!,
    levels: [0, 1, 6, 9],
    need: { what: "node:zlib", missing: undefined },
    badTail: Uint8Array.of(0x03, 0x00), // a last (BFINAL) empty block
  },
  {
    name: "zstd",
    codec: () => nodeStreamCodecs.zstd!,
    levels: [1, 3, 19],
    need: { what: "zstd-napi", missing: zstdMissing, install: "npm ci (it builds zstd-napi)" },
    badTail: Uint8Array.of(0x01), // one byte of a 3-byte block header
  },
];

for (const c of cases) {
  describeIfInstalled(c.need, `${c.name} stream codec`, () => {
    it.each(c.levels)("round-trips 24 packets of 1-48 pages through one stream, pages cut at random places (level %i)", (level) => {
      const r = new SeededRandom(1000 + level);
      const compressor = c.codec().compressor(level);
      const decompressor = c.codec().decompressor();
      const earlier: Uint8Array[] = [];
      for (let k = 0; k < 24; k++) {
        const pages = pagesOf(r, 1 + r.int(48), earlier);
        const parts = cutRandomly(r, pages);
        const data = compressor.compress(parts);
        for (const p of parts) p.fill(0x5a); // the caller may reuse its buffers once compress() returns
        const { out, untouchedPastEnd } = guarded(pages.length * PAGE);
        decompressor.decompress(data, out);
        expect(Buffer.compare(out, join(pages)), `packet ${k}`).toBe(0);
        expect(untouchedPastEnd()).toBe(true);
        out.fill(0xa5); // and its output buffers once decompress() returns
      }
    });

    it("continues one stream: a packet repeating the one before is a few back-references", () => {
      const r = new SeededRandom(7);
      const pages = [r.bytes(PAGE), r.bytes(PAGE), r.bytes(PAGE)]; // random: only a back-reference makes it small
      const compressor = c.codec().compressor(1);
      const first = compressor.compress(pages);
      const again = compressor.compress(pages);
      expect(first.length).toBeGreaterThan(3 * PAGE);
      expect(again.length).toBeLessThan(200);
      const d = c.codec().decompressor();
      expect(Buffer.compare(decompressAll(d, [first, again], [3, 3]), join([...pages, ...pages]))).toBe(0);
    });

    it("an empty packet is no bytes and leaves the stream as it was", () => {
      const r = new SeededRandom(8);
      const compressor = c.codec().compressor(1);
      const d = c.codec().decompressor();
      expect(compressor.compress([]).length).toBe(0);
      expect(compressor.compress([new Uint8Array(0)]).length).toBe(0);
      d.decompress(new Uint8Array(0), new Uint8Array(0));
      const page = r.bytes(PAGE);
      const out = new Uint8Array(PAGE);
      d.decompress(compressor.compress([page]), out);
      expect(Buffer.compare(out, page)).toBe(0);
    });

    it("refuses a level outside the library's range", () => {
      expect(thrownBy(() => c.codec().compressor(c.name === "zlib" ? 10 : 1000)).code).toBe("RANGE");
      expect(thrownBy(() => c.codec().compressor(1.5)).code).toBe("RANGE");
    });

    it("a disposed stream refuses further use", () => {
      const compressor = c.codec().compressor(1);
      const d = c.codec().decompressor();
      compressor.dispose();
      d.dispose();
      expect(thrownBy(() => compressor.compress([new Uint8Array(PAGE)])).message).toMatch(/disposed/);
      expect(thrownBy(() => d.decompress(new Uint8Array(1), new Uint8Array(PAGE))).message).toMatch(/disposed/);
    });

    describeIfInstalled(codecPeer(), `against the real ${c.name === "zlib" ? "zlib" : "libzstd"}`, () => {
      it.each(c.levels)("decodes what QEMU's sender calls make, packet by packet (level %i)", (level) => {
        const r = new SeededRandom(2000 + level);
        const earlier: Uint8Array[] = [];
        const packets = Array.from({ length: 30 }, () => pagesOf(r, 1 + r.int(40), earlier));
        const compressed = peerCompress(c.name, level, packets);
        const d = c.codec().decompressor();
        for (let k = 0; k < packets.length; k++) {
          const { out, untouchedPastEnd } = guarded(packets[k]!.length * PAGE);
          d.decompress(compressed[k]!, out);
          expect(Buffer.compare(out, join(packets[k]!)), `packet ${k}`).toBe(0);
          expect(untouchedPastEnd()).toBe(true);
        }
      });

      it.each(c.levels)("our packets decode with QEMU's receiver calls, page by page, no input left over (level %i)", (level) => {
        const r = new SeededRandom(3000 + level);
        const earlier: Uint8Array[] = [];
        const packets = Array.from({ length: 30 }, () => pagesOf(r, 1 + r.int(40), earlier));
        const compressor = c.codec().compressor(level);
        const ours = packets.map((pages) => compressor.compress(cutRandomly(r, pages)));
        const decoded = peerDecompress(
          c.name,
          ours.map((data, k) => ({ pages: packets[k]!.length, pageSize: PAGE, data })),
        );
        expect(Buffer.compare(decoded, join(packets.flat()))).toBe(0);
      });
    });

    describe("hostile packets", () => {
      /** A stream whose first packet decoded fine, and its next two packets (2 and 1 pages). */
      function afterOnePacket(seed: number): { d: StreamDecompressor; next: Uint8Array; third: Uint8Array; compressor: StreamCompressor } {
        const r = new SeededRandom(seed);
        const compressor = c.codec().compressor(1);
        const earlier: Uint8Array[] = [];
        const first = pagesOf(r, 3, earlier);
        const d = c.codec().decompressor();
        d.decompress(compressor.compress(first), new Uint8Array(3 * PAGE));
        return { d, next: compressor.compress(pagesOf(r, 2, earlier)), third: compressor.compress(pagesOf(r, 1, earlier)), compressor };
      }

      function expectRefused(d: StreamDecompressor, data: Uint8Array, pages: number, message: RegExp): void {
        const { out, untouchedPastEnd } = guarded(pages * PAGE);
        const e = thrownBy(() => d.decompress(data, out));
        expect(e.code).toBe("BAD_VALUE");
        expect(e.message).toMatch(message);
        expect(untouchedPastEnd()).toBe(true);
        // The stream's state is unknown after a failure: it stays refused, even for good data.
        expect(thrownBy(() => d.decompress(data, guarded(pages * PAGE).out)).message).toMatch(/earlier call failed/);
      }

      it("truncated packets", () => {
        for (const cut of [1, 2, 5, 100]) {
          const { d, next } = afterOnePacket(10 + cut);
          expectRefused(d, next.subarray(0, Math.max(0, next.length - cut)), 2, /flush point|yields|invalid/);
        }
      });

      it("garbage", () => {
        const r = new SeededRandom(11);
        for (let k = 0; k < 20; k++) {
          const { d } = afterOnePacket(100 + k);
          expectRefused(d, r.bytes(1 + r.int(3000)), 1 + r.int(4), /./);
        }
      });

      it("a first packet that is garbage", () => {
        const r = new SeededRandom(12);
        for (let k = 0; k < 20; k++) expectRefused(c.codec().decompressor(), r.bytes(1 + r.int(3000)), 1, /./);
        if (c.name === "zlib") {
          expectRefused(c.codec().decompressor(), Uint8Array.of(0x78), 1, /shorter than the 2-byte zlib header/);
          expectRefused(c.codec().decompressor(), Uint8Array.of(0x78, 0x02, 0, 0), 1, /check bits/);
          expectRefused(c.codec().decompressor(), Uint8Array.of(0x78, 0xbb, 0, 0, 0, 0), 1, /preset dictionary/);
        }
      });

      it("a packet that yields more than its pages: stops at out.length", () => {
        const { d, next } = afterOnePacket(13);
        expectRefused(d, next, 1, /more than 4096 bytes/);
        const big = afterOnePacket(14);
        expectRefused(big.d, Uint8Array.from(Buffer.concat([big.next, big.third])), 2, /more than 8192 bytes/);
      });

      it("a packet that yields fewer bytes than its pages", () => {
        const { d, next } = afterOnePacket(15);
        expectRefused(d, next, 3, /yields \d+ bytes, expected 12288/);
      });

      it("bytes left over after the packet's pages", () => {
        const { d, next } = afterOnePacket(16);
        // zlib: a last block ends the stream inside the packet; zstd: the decoder takes the byte in as the start
        // of a block header, so the packet does not end on a flush point.
        expectRefused(d, Uint8Array.from(Buffer.concat([next, c.badTail])), 2, c.name === "zlib" ? /stream ends after/ : /not end on a flush point/);
      });

      if (c.name === "zlib") {
        it("a stream that ends (Z_FINISH) inside a packet", () => {
          const page = new SeededRandom(17).bytes(PAGE);
          expectRefused(c.codec().decompressor(), Uint8Array.from(deflateSync(page)), 1, /stream ends after/);
        });
      }
    });
  });
}
