// Zero-copy input (inputSpace/commit) and the Node file adapters that use it: the result is the one of
// push() for every split, with and without the vmdesc known in advance (the deferred path), with RAM
// materialised; misuse is an error; plain files, small read sizes, pipes (read as streams) and gzip files
// give the same result.
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";
import { createKernels } from "../../src/kernels/index.js";
import type { DecodeResult } from "../../src/savevm/types.js";
import { decodeFile, readVmdescTrailer, validateFile } from "../../src/sections/node.js";
import { decodeBytes, StreamDecoder, type StreamDecoderOptions } from "../../src/sections/stream.js";
import { digest } from "../helpers/result-digest.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const kernels = createKernels();
const load = (name: string) => new Uint8Array(gunzipSync(readFileSync(new URL(`../fixtures/${name}.mig.gz`, import.meta.url))));
const x86 = load("x86-pc-64m");
const xbzrle = load("x86-pc-xbzrle");

/** Feed through inputSpace/commit: piece i takes sizes[i % n] bytes (capped by the space handed out). */
function viaInputSpace(bytes: Uint8Array, sizes: readonly number[], options: StreamDecoderOptions = {}, min = 1): DecodeResult {
  const d = new StreamDecoder({ kernels, ...options });
  let o = 0;
  for (let i = 0; o < bytes.length; i++) {
    const space = d.inputSpace(min);
    expect(space.length).toBeGreaterThanOrEqual(min);
    const n = Math.min(space.length, sizes[i % sizes.length]!, bytes.length - o);
    space.set(bytes.subarray(o, o + n));
    d.commit(n);
    o += n;
  }
  return d.end();
}

describe("inputSpace / commit", () => {
  it("gives the result of push() for any split, RAM materialised or not (fast-check)", () => {
    const want = [false, true].map((mat) => {
      const r = decodeBytes(x86, { kernels, materialize: { ram: mat } });
      const w = digest(r);
      r.dispose();
      return w;
    });
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(fc.integer({ min: 1, max: 1 << 20 }), { minLength: 1, maxLength: 6 }).filter((a) => a.some((n) => n >= 512)),
        fc.constantFrom(1, 4096, 1 << 20),
        (mat, sizes, min) => {
          const r = viaInputSpace(x86, sizes, { materialize: { ram: mat } }, min);
          expect(digest(r)).toEqual(want[mat ? 1 : 0]);
          r.dispose();
        },
      ),
      { numRuns: 20 },
    );
    // a 34 MB stream with XBZRLE pages, in pieces that cut records everywhere
    const a = decodeBytes(xbzrle, { kernels, materialize: { ram: true } });
    const b = viaInputSpace(xbzrle, [1 << 20, 4097, 3, 65536], { materialize: { ram: true } });
    expect(digest(b)).toEqual(digest(a));
    a.dispose();
    b.dispose();
  });

  it("works while device sections wait for the vmdesc (no registry, no vmdesc given: the deferred path)", () => {
    const a = decodeBytes(x86, { kernels, devices: "none" });
    const b = viaInputSpace(x86, [65536, 1000, 3], { devices: "none" });
    expect(digest(b)).toEqual(digest(a));
    expect(b.devices.length).toBe(33);
  });

  it("commit outside the space handed out, and calls after end(), are errors", () => {
    const d = new StreamDecoder({ kernels });
    const s = d.inputSpace(16);
    expect(() => d.commit(s.length + 1)).toThrow(VmstreamError);
    expect(() => d.inputSpace()).toThrow(/commit/); // the decoder stays failed
    const e = new StreamDecoder({ kernels });
    e.inputSpace(8).set(x86.subarray(0, 8));
    e.commit(8);
    expect(() => e.commit(-1)).toThrow(VmstreamError);
    const f = new StreamDecoder({ kernels });
    for (let o = 0; o < x86.length; o += 1 << 20) {
      const sp = f.inputSpace(1 << 20);
      const n = Math.min(sp.length, x86.length - o, 1 << 20);
      sp.set(x86.subarray(o, o + n));
      f.commit(n);
    }
    f.end().dispose();
    expect(() => f.inputSpace()).toThrow(/after end/);
    expect(() => f.commit(0)).toThrow(/after end/);
  });

  it("a stream error surfaces from commit() like from push()", () => {
    const bad = x86.slice(0, 4096);
    bad[0] = 0x51;
    bad[8] = 0x42; // not a section type
    const d = new StreamDecoder({ kernels });
    const s = d.inputSpace(bad.length);
    s.set(bad);
    expect(() => d.commit(bad.length)).toThrow(VmstreamError);
  });
});

describe("Node file adapters (reads straight into the window)", () => {
  const dir = suiteTempDir("vmstream-input-");
  const gz = new URL("../fixtures/x86-pc-xbzrle.mig.gz", import.meta.url);
  let plain = "";
  beforeAll(() => {
    plain = join(dir(), "x86-pc-xbzrle.mig");
    writeFileSync(plain, xbzrle);
  });

  it("plain file (any read size), gzip file and bytes give the same result, RAM materialised", async () => {
    const want = decodeBytes(xbzrle, { kernels, materialize: { ram: true } });
    const w = digest(want);
    want.dispose();
    for (const highWaterMark of [undefined, 1, 65536 + 7, 4 << 20]) {
      const r = await decodeFile(plain, { materialize: { ram: true }, highWaterMark });
      expect(digest(r)).toEqual(w);
      r.dispose();
    }
    const z = await decodeFile(gz, { materialize: { ram: true } });
    expect(digest(z)).toEqual(w);
    z.dispose();
    // a shared kernels instance
    const s = await decodeFile(plain, { kernels, materialize: { ram: true } });
    expect(digest(s)).toEqual(w);
    s.dispose();
  });

  it("validateFile on a plain file; a truncated one fails with EOF; a missing one with IO", async () => {
    const ok = await validateFile(plain);
    expect(ok.ok).toBe(true);
    expect(ok.summary).toMatchObject({ bytes: xbzrle.length, complete: true, devices: 31 });
    const cut = join(dir(), "cut.mig");
    writeFileSync(cut, xbzrle.subarray(0, 1_000_000));
    const bad = await validateFile(cut);
    expect(bad.ok).toBe(false);
    expect(bad.error?.code).toBe("EOF");
    const missing = await validateFile(join(dir(), "nope.mig"));
    expect(missing.ok).toBe(false);
    expect(missing.error?.code).toBe("IO");
  });

  it("a named pipe is read front to back as a stream (no head or tail reads)", async () => {
    const fifo = join(dir(), "fifo");
    const mk = spawn("mkfifo", [fifo]);
    const code = await new Promise((r) => mk.once("exit", r));
    if (code !== 0) return; // no mkfifo here
    const writer = spawn("sh", ["-c", `cat "$1" > "$2"`, "sh", plain, fifo]);
    const written = new Promise((res) => writer.once("exit", res));
    const r = await decodeFile(fifo, { kernels });
    expect(await written).toBe(0);
    const want = decodeBytes(xbzrle, { kernels });
    expect(digest(r)).toEqual(digest(want));
    r.dispose();
    want.dispose();
    expect(await readVmdescTrailer(plain)).toBeDefined();
  });
});
