// The fuzz targets: library calls that take a whole input, as the CLI's commands make them (in process, for speed),
// and the verdict on one call: success or a clean VmstreamError is fine, anything else is a finding.
// docs/fuzzing.md, "Targets".
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { BerReader } from "../../src/ber/reader.js";
import { writeExtraction } from "../../src/cli/streams.js";
import { berToQemu } from "../../src/convert/from-ber.js";
import { StreamBerConverter } from "../../src/convert/to-ber.js";
import { VmstreamError } from "../../src/io/errors.js";
import { nodeInflate } from "../../src/io/node.js";
import { OutputDir } from "../../src/io/output-files.js";
import type { Kernels } from "../../src/kernels/types.js";
import { MigrationDestination } from "../../src/migration/destination.js";
import { DEFAULT_LIMITS } from "../../src/savevm/constants.js";
import { findVmdescTrailer } from "../../src/savevm/vmdesc.js";
import { decodeBytes, StreamDecoder } from "../../src/sections/stream.js";
import { BerInputVisitor } from "../../src/visitor/ber/index.js";
import { loadState } from "../../src/vmstate/engine.js";
import { dev } from "../helpers/ber-fixtures.js";
import type { SeededRandom } from "../helpers/random.js";

export interface TargetContext {
  readonly kernels: Kernels;
  /** A directory of this case alone (extract writes there). */
  readonly dir: () => string;
}

export interface Target {
  /** Which seeds it starts from. */
  readonly input: "qemu" | "ber";
  /** Run one input; throws what the library throws. `rng` picks the chunking and options of this case. */
  run(bytes: Uint8Array, rng: SeededRandom, ctx: TargetContext): void;
}

/** `bytes` in 1 to 4 chunks of random sizes (chunk boundaries anywhere: a record cut in two). */
function chunks(bytes: Uint8Array, rng: SeededRandom): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (let n = rng.int(4); n > 0 && at < bytes.length; n--) {
    const len = rng.int(bytes.length - at + 1);
    out.push(bytes.subarray(at, at + len));
    at += len;
  }
  out.push(bytes.subarray(at));
  return out;
}

/** The vmdesc at the end of the bytes, found as `decodeFile` finds it in a plain file before decoding. */
function trailerFirst(bytes: Uint8Array): string | undefined {
  const tail = bytes.subarray(Math.max(0, bytes.length - DEFAULT_LIMITS.vmdescBytes - 6));
  return findVmdescTrailer(tail, DEFAULT_LIMITS.vmdescBytes, DEFAULT_LIMITS.vmdescDepth)?.text;
}

/** A walk of every TLV, reading each primitive as the types the BER visitor reads. */
function walkBer(r: BerReader): void {
  while (r.pos < r.end) {
    if (r.depth > 0 && r.atEoc()) return;
    r.header();
    if (r.constructed) {
      const end = r.enter();
      const outer = r.end;
      if (end >= 0) r.end = end;
      walkBer(r);
      r.end = outer;
      r.leave(end);
    } else {
      const start = r.pos;
      const kind = r.tagNo % 4;
      if (kind === 0 && r.len <= 9) r.bigint();
      else if (kind === 1 && r.len <= 7) r.int();
      else if (kind === 2 && r.tagNo === 9) r.real();
      else r.octets();
      r.pos = start + r.len;
    }
  }
}

export const TARGETS: Readonly<Record<string, Target>> = {
  /** StreamDecoder fed in random chunks (vmdesc read first as for a plain file, or not), or decodeBytes. */
  decoder: {
    input: "qemu",
    run(bytes, rng, { kernels }) {
      const vmdesc = rng.int(2) === 0 ? trailerFirst(bytes) : undefined;
      const options = { kernels, inflate: nodeInflate, devices: rng.int(4) === 0 ? ("none" as const) : ("auto" as const), ...(vmdesc ? { vmdesc } : {}) };
      if (rng.int(4) === 0) {
        decodeBytes(bytes, options).dispose();
        return;
      }
      const d = new StreamDecoder(options);
      try {
        for (const c of chunks(bytes, rng)) d.push(c);
        d.end().dispose();
      } finally {
        d.dispose();
      }
    },
  },
  /** MigrationDestination with its defaults (RAM materialised): its verdict, and a clean error when it fails. */
  destination: {
    input: "qemu",
    run(bytes, rng, { kernels }) {
      const d = new MigrationDestination({ kernels, inflate: nodeInflate });
      try {
        for (const c of chunks(bytes, rng)) if (!d.push(c)) break;
        const r = d.end();
        if (r.status !== "complete") throw r.error ?? new Error(`status ${r.status} without an error`);
      } finally {
        d.dispose();
      }
    },
  },
  /** `extract`: decode with RAM and disks materialised, then write the files into a directory of this case. */
  extract: {
    input: "qemu",
    run(bytes, _rng, { kernels, dir }) {
      const r = decodeBytes(bytes, { kernels, inflate: nodeInflate, materialize: { ram: true, block: true } });
      try {
        const out = dir();
        mkdirSync(out, { recursive: true });
        const folder = OutputDir.open(join(out, "x"));
        try {
          writeExtraction(r, kernels, folder);
        } finally {
          folder.close();
        }
      } finally {
        r.dispose();
      }
    },
  },
  /** BerReader over any TLV tree, and the BER visitor loading the fixture description. */
  ber: {
    input: "ber",
    run(bytes, rng) {
      if (rng.int(2) === 0) {
        walkBer(new BerReader(bytes, { maxDepth: 64 }));
        return;
      }
      const v = new BerInputVisitor(bytes);
      const head = v.peekStruct();
      loadState(v, dev, {}, head?.version ?? dev.version);
      if (v.error) throw v.error;
    },
  },
  /** convert QEMU -> BER (StreamBerConverter, fed in chunks). */
  "to-ber": {
    input: "qemu",
    run(bytes, rng) {
      const c = new StreamBerConverter({ decode: { inflate: nodeInflate } });
      try {
        for (const chunk of chunks(bytes, rng)) c.push(chunk);
        c.end();
      } finally {
        c.dispose();
      }
    },
  },
  /** convert BER -> QEMU. */
  "from-ber": {
    input: "ber",
    run(bytes) {
      berToQemu(bytes);
    },
  },
};

/** A finding's kind: exception, internal, no-offset (here), timeout, memory, oom, crash (from the watchdog). */
export type Verdict = { readonly ok: true } | { readonly ok: false; readonly kind: string; readonly message: string };

/** Success or a VmstreamError with an offset and not INTERNAL is fine; anything else is a finding. */
export function verdictOf(error: unknown): Verdict {
  if (error === undefined) return { ok: true };
  if (!(error instanceof VmstreamError)) {
    const e = error instanceof Error ? error : new Error(String(error));
    return { ok: false, kind: "exception", message: `${e.name}: ${e.message}\n${e.stack?.split("\n").slice(1, 6).join("\n") ?? ""}` };
  }
  if (error.code === "INTERNAL") return { ok: false, kind: "internal", message: `${error.message}\n${error.stack?.split("\n").slice(1, 6).join("\n") ?? ""}` };
  if (error.offset === undefined) return { ok: false, kind: "no-offset", message: `${error.code}: ${error.message}` };
  return { ok: true };
}
