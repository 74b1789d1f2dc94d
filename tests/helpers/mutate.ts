// TEST-ONLY: seeded mutations of byte streams for the decoder's hostile-input tests, and the check that a
// decode either succeeds or throws a VmstreamError (never another exception, never an INTERNAL error).
import { VmstreamError } from "../../src/io/errors.js";
import type { DecodeResult } from "../../src/savevm/types.js";
import { StreamDecoder, type StreamDecoderOptions } from "../../src/sections/stream.js";
import type { SeededRandom } from "./random.js";

const SPECIAL = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x10, 0x20, 0x30, 0x40, 0x7e, 0x7f, 0x80, 0xfe, 0xff];
const HUGE = [0xffffffff, 0x7fffffff, 0x80000000, 0x00010000, 0x01000000, 0xfffffff0];

export type Mutation = "flip" | "special" | "insert" | "delete" | "huge32" | "huge64" | "dup" | "swap" | "truncate" | "multi";

/** One random mutation of `b` inside [lo, hi) (default: anywhere). */
export function mutate(b: Uint8Array, rng: SeededRandom, lo = 0, hi = b.length): { bytes: Uint8Array; kind: Mutation; at: number } {
  const kinds: Mutation[] = ["flip", "special", "insert", "delete", "huge32", "huge64", "dup", "swap", "truncate", "multi"];
  const kind = rng.pick(kinds);
  const at = lo + rng.int(Math.max(1, hi - lo));
  let out: Uint8Array;
  switch (kind) {
    case "flip":
      out = b.slice();
      if (at < out.length) out[at] ^= 1 << rng.int(8);
      break;
    case "special":
      out = b.slice();
      if (at < out.length) out[at] = rng.pick(SPECIAL);
      break;
    case "insert": {
      const n = 1 + rng.int(8);
      out = new Uint8Array(b.length + n);
      out.set(b.subarray(0, at));
      for (let i = 0; i < n; i++) out[at + i] = rng.int(2) ? rng.pick(SPECIAL) : rng.int(256);
      out.set(b.subarray(at), at + n);
      break;
    }
    case "delete": {
      const p = Math.min(at, b.length);
      const n = Math.min(1 + rng.int(rng.int(4) === 0 ? 200 : 8), b.length - p);
      out = new Uint8Array(b.length - n);
      out.set(b.subarray(0, p));
      out.set(b.subarray(p + n), p);
      break;
    }
    case "huge32":
    case "huge64": {
      out = b.slice();
      const v = rng.pick(HUGE);
      const w = kind === "huge64" ? 8 : 4;
      const p = Math.min(at, Math.max(0, b.length - w));
      if (w === 8) for (let i = 0; i < 4; i++) out[p + i] = rng.int(2) ? 0xff : 0;
      const q = p + w - 4;
      out[q] = v >>> 24;
      out[q + 1] = (v >>> 16) & 255;
      out[q + 2] = (v >>> 8) & 255;
      out[q + 3] = v & 255;
      break;
    }
    case "dup": {
      const n = 1 + rng.int(64);
      const seg = b.subarray(at, Math.min(b.length, at + n));
      out = new Uint8Array(b.length + seg.length);
      out.set(b.subarray(0, at + seg.length));
      out.set(seg, at + seg.length);
      out.set(b.subarray(at + seg.length), at + 2 * seg.length);
      break;
    }
    case "swap": {
      out = b.slice();
      const j = lo + rng.int(Math.max(1, hi - lo));
      const t = out[at]!;
      out[at] = out[j]!;
      out[j] = t;
      break;
    }
    case "truncate":
      out = b.slice(0, at);
      break;
    case "multi": {
      out = b.slice();
      const n = 2 + rng.int(6);
      for (let i = 0; i < n; i++) out[lo + rng.int(Math.max(1, hi - lo))] = rng.int(256);
      break;
    }
  }
  return { bytes: out, kind, at };
}

export interface Outcome {
  ok: boolean;
  code?: string;
  ms: number;
}

/** Decode in `pieces` chunks; success or a VmstreamError (not INTERNAL) — anything else fails the test. */
export function decodeOutcome(bytes: Uint8Array, options: StreamDecoderOptions, pieces = 1, rng?: SeededRandom): Outcome {
  const t0 = performance.now();
  let r: DecodeResult | undefined;
  const d = new StreamDecoder(options);
  try {
    if (pieces <= 1 || !rng) d.push(bytes);
    else {
      let o = 0;
      for (let i = 0; i < pieces - 1; i++) {
        const n = rng.int(bytes.length - o + 1);
        d.push(bytes.subarray(o, o + n));
        o += n;
      }
      d.push(bytes.subarray(o));
    }
    r = d.end();
    r.dispose();
    return { ok: true, ms: performance.now() - t0 };
  } catch (e) {
    if (!(e instanceof VmstreamError)) {
      throw new Error(`not a VmstreamError: ${e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e)}`);
    }
    if (e.code === "INTERNAL") throw new Error(`INTERNAL error: ${e.message}\n${e.stack}`);
    if (e.offset === undefined) throw new Error(`error without an offset: ${e.message}`);
    d.dispose();
    return { ok: false, code: e.code, ms: performance.now() - t0 };
  }
}
