// The fuzzer's starting inputs: small streams derived from the real fixtures (device sections, MEM_SIZE and the
// vmdesc kept, RAM cut to a few page records, disk data chunks dropped), the `-machine none` stream, the streams
// of the structure generators, and their BER forms. Small seeds keep executions fast (docs/fuzzing.md, "Seeds").
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { qemuToBerBytes } from "../../src/convert/to-ber.js";
import { nodeInflate } from "../../src/io/node.js";
import { createKernels } from "../../src/kernels/index.js";
import { decodeBytes } from "../../src/sections/stream.js";
import { dev, devState } from "../helpers/ber-fixtures.js";
import { saveBer } from "../helpers/ber-tools.js";
import { concat } from "../helpers/bytes.js";
import { noneStream } from "../helpers/none-stream.js";
import { builtStreams } from "./generators.js";

export const FIXTURES = ["x86-pc-64m", "x86-pc-block", "x86-pc-block-zeroblocks", "x86-pc-xbzrle", "ppc64-pseries"] as const;

export interface Seeds {
  /** QEMU migration streams. */
  readonly qemu: readonly Uint8Array[];
  /** BER streams (docs/vmstate.asn1) and BER-encoded device states. */
  readonly ber: readonly Uint8Array[];
}

const fixtureBytes = (name: string): Uint8Array => new Uint8Array(gunzipSync(readFileSync(new URL(`../fixtures/${name}.mig.gz`, import.meta.url))));

/** Every seed; deterministic (the same bytes on every run), so a case index names the same input everywhere. */
export function buildSeeds(): Seeds {
  const qemu = [noneStream()];
  for (const name of FIXTURES) {
    const bytes = fixtureBytes(name);
    // every device of one x86 and the ppc64 fixture; a sixth of them for all (the x86 ones share most devices)
    if (name === "x86-pc-64m" || name === "ppc64-pseries") qemu.push(shrinkStream(bytes));
    qemu.push(shrinkStream(bytes, 6));
  }
  qemu.push(...builtStreams());
  const ber = [saveBer(dev, devState(), "definite"), saveBer(dev, devState(), "indefinite")];
  for (const q of qemu) {
    try {
      ber.push(qemuToBerBytes(q, { decode: { inflate: nodeInflate } }));
    } catch {
      // a generated stream the converter refuses is no BER seed
    }
  }
  return { qemu, ber };
}

const RAM_PAGE_SIZE = 4096;
const RAM = { ZERO: 0x02, MEM_SIZE: 0x04, PAGE: 0x08, EOS: 0x10, CONTINUE: 0x20, XBZRLE: 0x40, COMPRESS: 0x100 };
const BLK = { DEVICE_BLOCK: 0x01, EOS: 0x02, ZERO_BLOCK: 0x08, CHUNK: 1 << 20 };
/** Page records (PAGE, XBZRLE, COMPRESS) kept in the whole stream, and ZERO records. */
const KEEP_PAGES = 4;
const KEEP_ZEROS = 8;
/** Sections of other live kinds (htab, dirty bitmaps) are kept whole when this small, else dropped. */
const KEEP_OTHER_BYTES = 16 << 10;

/** Device sections larger than this are dropped (with their vmdesc entry); smaller ones keep the real bytes. */
const KEEP_DEVICE_BYTES = 16 << 10;
/** With `nth` > 1, devices whose vmdesc entry is longer than this are dropped too. */
const KEEP_ENTRY_CHARS = 2048;

/**
 * A small stream with the shape of `bytes` (a complete real stream): the section list comes from a decode; RAM
 * sections keep MEM_SIZE, EOS and their first few page records (a kept record whose block was named by a dropped
 * one names it again), block sections keep everything but the 1 MiB data chunks, device sections are kept (every
 * `nth` one, and none above KEEP_DEVICE_BYTES) with their vmdesc entries, the rest is copied.
 */
export function shrinkStream(bytes: Uint8Array, nth = 1): Uint8Array {
  const kernels = createKernels({ noWarmup: true });
  const r = decodeBytes(bytes, { kernels, inflate: nodeInflate });
  const parts: Uint8Array[] = [];
  const ram: RamWalk = { block: "", keptBlock: undefined, pages: 0, zeros: 0 };
  const vmdesc = r.vmdesc ? (JSON.parse(r.vmdesc.text) as { devices: unknown[] }) : undefined;
  const entries: unknown[] = [];
  let device = 0;
  let at = 0;
  for (const s of r.sections) {
    parts.push(bytes.subarray(at, s.offset)); // what lies between sections: header, configuration, commands
    const end = s.offset + s.size;
    const payload = bytes.subarray(s.payloadOffset, s.payloadOffset + s.payloadSize);
    const head = bytes.subarray(s.offset, s.payloadOffset);
    const foot = bytes.subarray(s.payloadOffset + s.payloadSize, end);
    if (s.idstr === "ram" && s.type !== "full") parts.push(head, shrinkRam(payload, ram), foot);
    else if (s.idstr === "block" && s.type !== "full") parts.push(head, shrinkBlock(payload), foot);
    else if (s.type === "full") {
      const entry = vmdesc?.devices[device];
      const keep = s.size <= KEEP_DEVICE_BYTES && (nth === 1 || (device % nth === 0 && JSON.stringify(entry).length <= KEEP_ENTRY_CHARS));
      if (keep) {
        parts.push(bytes.subarray(s.offset, end));
        if (vmdesc) entries.push(entry);
      }
      device++;
    } else if (s.size <= KEEP_OTHER_BYTES) parts.push(bytes.subarray(s.offset, end));
    at = end;
  }
  if (vmdesc && r.eofOffset !== undefined) {
    const text = new TextEncoder().encode(JSON.stringify({ ...vmdesc, devices: entries }));
    const n = text.length;
    parts.push(bytes.subarray(at, r.eofOffset + 1), Uint8Array.of(0x06, n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255), text);
  } else parts.push(bytes.subarray(at));
  r.dispose();
  return concat(parts);
}

/** The current block (CONTINUE records) carries across RAM sections: in the stream and in what is kept of it. */
interface RamWalk {
  block: string;
  keptBlock: string | undefined;
  pages: number;
  zeros: number;
}

function shrinkRam(p: Uint8Array, walk: RamWalk): Uint8Array {
  const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos + 8 <= p.length) {
    const start = pos;
    const hi = view.getUint32(pos);
    const lo = view.getUint32(pos + 4);
    const flags = lo & (RAM_PAGE_SIZE - 1);
    pos += 8;
    if (flags & RAM.EOS) {
      out.push(p.subarray(start, pos));
      break;
    }
    if (flags & RAM.MEM_SIZE) {
      let left = (BigInt(hi) << 32n) | BigInt(lo - flags);
      while (left > 0n) {
        const n = p[pos]!;
        pos += 1 + n;
        left -= view.getBigUint64(pos);
        pos += 8;
      }
      out.push(p.subarray(start, pos));
      continue;
    }
    let named: Uint8Array | undefined;
    if (!(flags & RAM.CONTINUE)) {
      const n = p[pos]!;
      named = p.subarray(pos + 1, pos + 1 + n);
      walk.block = new TextDecoder().decode(named);
      pos += 1 + n;
    }
    const bodyAt = pos;
    if (flags & RAM.ZERO) pos += 1;
    else if (flags & RAM.PAGE) pos += RAM_PAGE_SIZE;
    else if (flags & RAM.XBZRLE) pos += 3 + view.getUint16(pos + 1);
    else if (flags & RAM.COMPRESS) pos += 4 + view.getUint32(pos);
    else return p; // a record this walk does not know: keep the section as it is
    const zero = (flags & RAM.ZERO) !== 0;
    if (zero ? walk.zeros++ >= KEEP_ZEROS : walk.pages++ >= KEEP_PAGES) continue;
    if (walk.keptBlock === walk.block) out.push(p.subarray(start, pos));
    else {
      // name the block again: the record that named it was dropped
      const name = named ?? new TextEncoder().encode(walk.block);
      const header = p.slice(start, start + 8);
      header[7] = header[7]! & ~RAM.CONTINUE;
      out.push(header, Uint8Array.of(name.length), name, p.subarray(bodyAt, pos));
      walk.keptBlock = walk.block;
    }
  }
  return concat(out);
}

function shrinkBlock(p: Uint8Array): Uint8Array {
  const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos + 8 <= p.length) {
    const start = pos;
    const flags = view.getUint32(pos + 4) & 0x1ff;
    pos += 8;
    if (flags & BLK.EOS) {
      out.push(p.subarray(start, pos));
      break;
    }
    if (flags & BLK.DEVICE_BLOCK) {
      pos += 1 + p[pos]!;
      if (!(flags & BLK.ZERO_BLOCK)) {
        pos += BLK.CHUNK;
        continue; // a data chunk: dropped
      }
    }
    out.push(p.subarray(start, pos));
  }
  return concat(out);
}
