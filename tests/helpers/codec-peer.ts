// TEST-ONLY: the real zlib and libzstd as QEMU 7.2's multifd channels use them (multifd-codec-peer.c, compiled with
// cc against zlib1g-dev and libzstd-dev into the temp dir, one binary per version of the source, kept for later
// runs: test workers may be ended by a signal, so nothing made per run could be cleaned up reliably). A stream's
// packets go in one run of the program.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Requirement } from "./requires.js";

const SOURCE = fileURLToPath(new URL("./multifd-codec-peer.c", import.meta.url));

let built: { program: string } | { missing: string } | undefined;

/** Compile the peer (once per source version); the program's path, or why it cannot be built. */
function build(): { program: string } | { missing: string } {
  if (built === undefined) {
    const hash = createHash("sha256").update(readFileSync(SOURCE)).digest("hex").slice(0, 16);
    const program = join(tmpdir(), `vmstream-multifd-codec-peer-${hash}`);
    if (existsSync(program)) built = { program };
    else {
      const partial = `${program}.${process.pid}`;
      const r = spawnSync("cc", ["-O2", "-o", partial, SOURCE, "-lz", "-lzstd"], { encoding: "utf8" });
      if (r.status === 0) {
        renameSync(partial, program); // atomic: a parallel worker sees no half-written binary
        built = { program };
      } else {
        built = { missing: `cannot build the zlib/libzstd peer (${r.error?.message ?? r.stderr.split("\n")[0]}), apt-get install gcc zlib1g-dev libzstd-dev` };
      }
    }
  }
  return built;
}

/** The real libraries, under the policy of requires.ts. */
export function codecPeer(): Requirement {
  const b = build();
  return { what: "zlib1g-dev and libzstd-dev (the real libraries)", missing: "missing" in b ? b.missing : undefined };
}

function run(args: string[], input: Uint8Array): Buffer {
  const b = build();
  if ("missing" in b) throw new Error(b.missing);
  const r = spawnSync(b.program, args, { input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`multifd-codec-peer ${args.join(" ")}: ${r.error?.message ?? r.stderr.toString().trim()}`);
  return r.stdout;
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

/** Each packet's pages compressed as QEMU's sender does (one call per page, the last flushing), one stream. */
export function peerCompress(codec: "zlib" | "zstd", level: number, packets: readonly (readonly Uint8Array[])[]): Uint8Array[] {
  const input: Uint8Array[] = [];
  for (const pages of packets) {
    input.push(u32(pages.length));
    for (const p of pages) input.push(u32(p.length), p);
  }
  const out = run([codec, "compress", String(level)], Buffer.concat(input));
  const result: Uint8Array[] = [];
  for (let o = 0; o < out.length; ) {
    const n = out.readUInt32LE(o);
    result.push(out.subarray(o + 4, o + 4 + n));
    o += 4 + n;
  }
  if (result.length !== packets.length) throw new Error(`peer returned ${result.length} packets for ${packets.length}`);
  return result;
}

export interface PeerPacket {
  readonly pages: number;
  readonly pageSize: number;
  readonly data: Uint8Array;
}

/** The packets decompressed as QEMU's receiver does (page by page, one stream); all their pages, in order. */
export function peerDecompress(codec: "zlib" | "zstd", packets: readonly PeerPacket[]): Uint8Array {
  const input: Uint8Array[] = [];
  for (const p of packets) input.push(u32(p.pages), u32(p.pageSize), u32(p.data.length), p.data);
  return run([codec, "decompress"], Buffer.concat(input));
}
