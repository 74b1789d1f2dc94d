// ByteWriter buffer recycling (release) and bulk(): a buffer is reused only once every chunk taken from it was
// released and no other view of it is out; bytes handed out are never changed before they are released.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteWriter } from "../../src/io/writer.js";
import { concat } from "../helpers/bytes.js";

/** A run of `n` bytes that differs from run to run. */
function run(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}

/** Byte equality without vitest's slow deep diff on large arrays. */
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));

/** A streaming producer: a small header, some bulk runs, then the batch is taken (as the encoder's flush()). */
function batch(w: ByteWriter, i: number, runs = 3, size = 3000): Uint8Array[] {
  w.be32(i);
  for (let r = 0; r < runs; r++) w.bulk(run(size, i * 10 + r));
  return w.takeChunks();
}

describe("ByteWriter recycling", () => {
  it("released chunks give their buffers back: a stream of batches lives in a few buffers, every byte intact", () => {
    const w = new ByteWriter({ initialCapacity: 4096 });
    const expected: Uint8Array[] = [];
    const got: Uint8Array[] = [];
    const buffers = new Set<ArrayBufferLike>();
    let inFlight: Uint8Array[] = [];
    for (let i = 0; i < 200; i++) {
      const e = new ByteWriter();
      e.be32(i);
      for (let r = 0; r < 3; r++) e.bytes(run(3000, i * 10 + r));
      expected.push(e.concat());
      const cs = batch(w, i);
      for (const c of cs) buffers.add(c.buffer);
      // the previous batch is "written" only now (one batch outstanding, as the live driver): check, then release
      got.push(concat(inFlight));
      for (const c of inFlight) expect(ByteWriter.release(c)).toBe(true);
      inFlight = cs;
    }
    got.push(concat(inFlight));
    expect(same(concat(got), concat(expected))).toBe(true);
    expect(buffers.size).toBeLessThan(12);
  });

  it("without release nothing is reused: every chunk keeps its bytes", () => {
    const w = new ByteWriter({ initialCapacity: 4096 });
    const kept: { c: Uint8Array; copy: Uint8Array }[] = [];
    const buffers = new Set<ArrayBufferLike>();
    for (let i = 0; i < 100; i++) for (const c of batch(w, i)) kept.push({ c, copy: c.slice() }), buffers.add(c.buffer);
    for (const k of kept) expect(same(k.c, k.copy)).toBe(true);
    expect(buffers.size).toBeGreaterThan(50);
    expect(w.freeBuffers).toBe(0);
  });

  it("release() refuses what it did not hand out, and a second release of the same chunk", () => {
    const w = new ByteWriter();
    const other = new Uint8Array(1000);
    w.borrow(other);
    w.be32(7);
    const cs = w.takeChunks();
    expect(cs).toHaveLength(2);
    expect(ByteWriter.release(cs[0]!)).toBe(false); // borrowed view: not ours
    expect(ByteWriter.release(cs[1]!)).toBe(true);
    expect(ByteWriter.release(cs[1]!)).toBe(false);
    expect(ByteWriter.release(cs[1]!.slice())).toBe(false); // a copy
    expect(ByteWriter.release(new Uint8Array(cs[1]!.buffer, cs[1]!.byteOffset, cs[1]!.length))).toBe(false); // an equal view, not the chunk
  });

  it("a view from chunks() or finish() keeps its buffer out of reuse until reset()", () => {
    // runs of at most half the capacity: every buffer has the same size, so a freed one would be reused
    const cycle = (w: ByteWriter) => {
      for (let i = 0; i < 20; i++) for (const c of batch(w, i, 3, 20000)) ByteWriter.release(c);
    };
    const w = new ByteWriter({ initialCapacity: 65536 });
    w.u8(0);
    for (const c of w.takeChunks()) ByteWriter.release(c);
    for (let r = 0; r < 3; r++) w.bulk(run(20000, r));
    const seen = w.chunks(); // views of the current buffer
    const seenCopy = concat(seen).slice();
    w.bulk(run(20000, 9)); // does not fit: that buffer is retired with a view of it out
    for (const c of w.takeChunks()) ByteWriter.release(c);
    cycle(w);
    expect(same(concat(seen), seenCopy)).toBe(true);
    w.reset(); // the views are dead now: the buffer may serve again
    cycle(w);

    const v = new ByteWriter({ initialCapacity: 65536 });
    v.bytes(run(30000, 3));
    const f = v.finish();
    const fCopy = f.slice();
    for (const c of v.takeChunks()) ByteWriter.release(c);
    v.bulk(run(20000, 4));
    v.bulk(run(20000, 5)); // retires the buffer finish() viewed
    for (const c of v.takeChunks()) ByteWriter.release(c);
    cycle(v);
    expect(same(f, fCopy)).toBe(true);
  });

  it("bulk() writes the same bytes as bytes(); a writer read with finish() stays one piece", () => {
    const a = new ByteWriter({ initialCapacity: 64 });
    const b = new ByteWriter({ initialCapacity: 64 });
    for (let i = 0; i < 30; i++) {
      a.be16(i);
      b.be16(i);
      a.bulk(run(500 + i * 37, i));
      b.bytes(run(500 + i * 37, i));
    }
    expect(a.chunks()).toHaveLength(1);
    expect(a.finish()).toEqual(b.finish());
  });

  it("bulk() in a writer consumed by takeChunks() ends the pending bytes as a chunk instead of moving them", () => {
    const w = new ByteWriter({ initialCapacity: 16384 });
    w.u8(1);
    w.takeChunks();
    w.bulk(run(10000, 1));
    const first = w.chunks()[0]!;
    w.bulk(run(10000, 2)); // does not fit: the 10000 pending bytes stay where they are
    const cs = w.takeChunks();
    expect(cs).toHaveLength(2);
    expect(cs[0]!.buffer).toBe(first.buffer);
    expect(concat(cs)).toEqual(concat([run(10000, 1), run(10000, 2)]));
  });

  it("a batch over several buffers: none is reused before its chunks were taken and released", () => {
    const w = new ByteWriter({ initialCapacity: 65536 });
    w.u8(0);
    for (const c of w.takeChunks()) ByteWriter.release(c);
    for (let i = 0; i < 5; i++) {
      const runs = Array.from({ length: 12 }, (_, r) => run(20000, i * 100 + r));
      for (const r of runs) w.bulk(r); // four buffers' worth before the take
      const cs = w.takeChunks();
      expect(cs.length).toBeGreaterThan(3);
      expect(same(concat(cs), concat(runs))).toBe(true);
      for (const c of cs) ByteWriter.release(c);
    }
  });

  it("model check: random puts, bulk runs, borrows, takes, late releases, chunks() views and resets", () => {
    type Op =
      | { t: "put"; v: number }
      | { t: "bulk"; n: number }
      | { t: "borrow"; n: number }
      | { t: "take" }
      | { t: "release"; k: number }
      | { t: "peek" }
      | { t: "reset" };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: 0, max: 0xffffffff }).map((v): Op => ({ t: "put", v })) },
      { weight: 8, arbitrary: fc.integer({ min: 1, max: 8192 }).map((n): Op => ({ t: "bulk", n })) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 600 }).map((n): Op => ({ t: "borrow", n })) },
      { weight: 2, arbitrary: fc.constant<Op>({ t: "take" }) },
      { weight: 4, arbitrary: fc.nat(50).map((k): Op => ({ t: "release", k })) },
      { weight: 1, arbitrary: fc.constant<Op>({ t: "peek" }) },
      { weight: 1, arbitrary: fc.constant<Op>({ t: "reset" }) },
    );
    fc.assert(
      // runs of at most half the capacity keep the buffers one size, so freed buffers are reused
      fc.property(fc.array(op, { minLength: 1, maxLength: 150 }), fc.constantFrom(16384, 32768), (ops, cap) => {
        const w = new ByteWriter({ initialCapacity: cap });
        let model: Uint8Array[] = []; // bytes since the last reset
        let taken: Uint8Array[] = []; // copies of what takeChunks gave since the last reset
        // chunks handed out and not released, with their bytes at hand-out time (kept across resets: released later)
        const out: { c: Uint8Array; copy: Uint8Array; gen: number }[] = [];
        let peeks: { c: Uint8Array; copy: Uint8Array }[] = [];
        let gen = 0;
        let seed = 0;
        const check = () => {
          for (const o of out) if (o.gen === gen && !same(o.c, o.copy)) throw new Error("a taken chunk changed before its release");
          for (const p of peeks) if (!same(p.c, p.copy)) throw new Error("a chunks() view changed before reset()");
        };
        for (const o of ops) {
          switch (o.t) {
            case "put":
              w.be32(o.v);
              model.push(new Uint8Array([o.v >>> 24, (o.v >>> 16) & 0xff, (o.v >>> 8) & 0xff, o.v & 0xff]));
              break;
            case "bulk": {
              const r = run(o.n, ++seed);
              w.bulk(r);
              model.push(r);
              break;
            }
            case "borrow": {
              const r = run(o.n, ++seed);
              w.borrow(r);
              model.push(r);
              break;
            }
            case "take":
              for (const c of w.takeChunks()) {
                taken.push(c.slice());
                out.push({ c, copy: c.slice(), gen });
              }
              break;
            case "release":
              if (out.length > 0) {
                const i = o.k % out.length;
                const x = out[i]!;
                if (x.gen === gen && !same(x.c, x.copy)) throw new Error("a taken chunk changed before its release");
                out.splice(i, 1);
                ByteWriter.release(x.c);
              }
              break;
            case "peek":
              peeks = w.chunks().map((c) => ({ c, copy: c.slice() }));
              break;
            case "reset":
              check();
              w.reset();
              gen++;
              model = [];
              taken = [];
              peeks = [];
              break;
          }
          check();
        }
        if (!same(concat([...taken, ...w.chunks()]), concat(model))) throw new Error("the bytes differ from the model");
      }),
      { numRuns: 250 },
    );
  });
});
