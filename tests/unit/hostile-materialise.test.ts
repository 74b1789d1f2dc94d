// Nothing allocated on a promise (issue #13, docs/memory.md "Lazy materialisation"): sizes a stream declares (MEM_SIZE,
// a disk's end) cost nothing until data arrives; ZERO records on unwritten pages and ZERO_BLOCK records allocate
// nothing; extract writes sparse files of the declared sizes with exactly the bytes the stream left; a kernels
// instance reused after a decode does not pay for the earlier one's declared sizes; the limit on what is
// materialised (limits.materializedBytes, --max-memory) fails with the offset, section and block. Crafted streams.
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";
import { createKernels } from "../../src/kernels/index.js";
import { MigrationDestination } from "../../src/migration/destination.js";
import type { StreamDecoderOptions } from "../../src/sections/stream.js";
import { blockOf, decodeBytes, ramOf } from "../../src/sections/stream.js";
import { SeededRandom } from "../helpers/random.js";
import { memSize, page, RAM, StreamBuilder } from "../helpers/stream-builder.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const PEAK_RSS = fileURLToPath(new URL("../helpers/peak-rss.mjs", import.meta.url));
const FIX = (f: string) => fileURLToPath(new URL(`../fixtures/${f}`, import.meta.url));
const tmp = suiteTempDir("vmstream-lazy-");
const P = 4096;
const MiB = 1 << 20;
const DISK = { DEVICE: 0x01, EOS: 0x02, ZERO: 0x08 } as const;

/** A stream: configuration, a ram section with MEM_SIZE `blocks` and `pages`, optionally a block section. */
function stream(blocks: [string, number][], pages: (b: StreamBuilder) => void, disk?: (b: StreamBuilder) => void): Uint8Array {
  const b = new StreamBuilder().header().config("pc-i440fx-7.2");
  b.start(2, "ram", 4, (s) => {
    memSize(s, blocks);
    pages(s);
    s.be64(RAM.EOS);
  });
  if (disk)
    b.start(3, "block", 1, (s) => {
      disk(s);
      s.be64(DISK.EOS);
    });
  return b.eof().build();
}

/** A block-migration chunk record at byte `offset` of `device`: data, or ZERO_BLOCK without `data`. */
function chunk(b: StreamBuilder, offset: number, device: string, data?: Uint8Array): void {
  b.be64(BigInt(offset) | BigInt(data ? DISK.DEVICE : DISK.DEVICE | DISK.ZERO)).cstr(device);
  if (data) b.bytes(data);
}

/** An XBZRLE record body: bytes `at`..`at + nz.length` of the page become `nz`, the rest unchanged (at, nz.length < 128). */
function xbzrle(at: number, nz: number[]): number[] {
  const delta = [at, nz.length, ...nz];
  return [1, delta.length >> 8, delta.length & 0xff, ...delta];
}

/** Run the CLI in a child with the peak-RSS preload: exit status, stderr lines, peak RSS in MiB, seconds. */
function cli(args: string[]) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ["--import", PEAK_RSS, MAIN, ...args], { encoding: "utf8", maxBuffer: 64 << 20 });
  const seconds = (performance.now() - t0) / 1000;
  const m = /peak-rss-kib (\d+)/.exec(r.stderr);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.replace(/peak-rss-kib \d+\n/, ""), peakMiB: m ? Number(m[1]) / 1024 : Number.NaN, seconds };
}

function readAt(file: string, offset: number, length: number): Uint8Array {
  const fd = openSync(file, "r");
  try {
    const out = new Uint8Array(length);
    readSync(fd, out, 0, length, offset);
    return out;
  } finally {
    closeSync(fd);
  }
}

const zeros = (n: number) => new Uint8Array(n);
/** Byte arrays compared whole (vitest's deep equality walks a MiB element by element). */
const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(a, b) === 0;

describe("declared sizes cost nothing until data arrives", () => {
  const BLOCK = 0xc000_0000; // 3 GiB of RAM announced
  const rng = new SeededRandom(0x1a2b);
  const r1 = rng.bytes(P);
  const r2 = rng.bytes(P);
  const r3 = rng.bytes(P);
  const d1 = rng.bytes(MiB);
  const d2 = rng.bytes(MiB);
  const d3 = rng.bytes(MiB);
  const build = () =>
    stream(
      [["pc.ram", BLOCK]],
      (s) => {
        page(s, RAM.PAGE, 0x1000, "pc.ram", r1);
        page(s, RAM.PAGE, BLOCK - P, undefined, r2);
        page(s, RAM.ZERO, 0x8000_0000, undefined, [0x5a]);
        page(s, RAM.XBZRLE, 0x4000_0000, undefined, xbzrle(100, [1, 2, 3, 4]));
        page(s, RAM.PAGE, 0x2000, undefined, r3);
        page(s, RAM.ZERO, 0x2000, undefined, [0]); // written, then zero again
        // zero pages all over the block: nothing to do on pages never written
        for (let i = 0; i < 20000; i++) page(s, RAM.ZERO, ((i * 7919) % (BLOCK / P)) * P, undefined, [0]);
      },
      (s) => {
        for (let i = 0; i < 1000; i++) chunk(s, i * MiB, "drive0"); // 1000 ZERO_BLOCK records over 1000 MiB
        chunk(s, 1010 * MiB, "drive0", d1);
        chunk(s, 5 * MiB, "drive0", d2);
        chunk(s, 5 * MiB, "drive0"); // data, then zero again
        chunk(s, 20 * MiB + 4096, "drive0", d3); // not aligned to a chunk: over two granules
      },
    );

  it("extract: a 3 GiB RAM block and a 1011 MiB disk from a 3 MB stream, small peak RSS, sparse files with the stream's bytes", () => {
    expect(existsSync(MAIN)).toBe(true);
    const input = join(tmp(), "sparse.mig");
    writeFileSync(input, build());
    const dir = join(tmp(), "sparse-out");
    const r = cli(["extract", input, dir]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    // before: every announced byte was committed (3 GiB of RAM read back, 1 GiB disk image): 4.7 GB, 13 s
    expect(r.peakMiB).toBeLessThan(300);
    expect(r.seconds).toBeLessThan(60);

    const ramFile = join(dir, "ram", "pc.ram.bin");
    const ram = statSync(ramFile);
    expect(ram.size).toBe(BLOCK);
    expect(ram.blocks * 512).toBeLessThan(1 * MiB); // 4 non-zero pages (and whatever the file system rounds to)
    expect(same(readAt(ramFile, 0x1000, P), r1)).toBe(true);
    expect(same(readAt(ramFile, BLOCK - P, P), r2)).toBe(true);
    expect(same(readAt(ramFile, 0x8000_0000, P), new Uint8Array(P).fill(0x5a))).toBe(true);
    const x = zeros(P);
    x.set([1, 2, 3, 4], 100);
    expect(same(readAt(ramFile, 0x4000_0000, P), x)).toBe(true);
    expect(same(readAt(ramFile, 0x2000, P), zeros(P))).toBe(true);
    expect(same(readAt(ramFile, 0x3000, P), zeros(P))).toBe(true);

    const diskFile = join(dir, "disk", "drive0.img");
    const disk = statSync(diskFile);
    expect(disk.size).toBe(1011 * MiB);
    expect(disk.blocks * 512).toBeLessThan(4 * MiB); // d1 and d3: 2 MiB of data
    expect(same(readAt(diskFile, 1010 * MiB, MiB), d1)).toBe(true);
    expect(same(readAt(diskFile, 5 * MiB, MiB), zeros(MiB))).toBe(true);
    expect(same(readAt(diskFile, 20 * MiB + 4096, MiB), d3)).toBe(true);
    expect(same(readAt(diskFile, 20 * MiB, 4096), zeros(4096))).toBe(true);
    expect(same(readAt(diskFile, 0, MiB), zeros(MiB))).toBe(true);
  }, 120_000);

  it("the decoder keeps RAM pages where they were written and disks as granules of data only", () => {
    const r = decodeBytes(build(), { materialize: { ram: true, block: true } });
    try {
      const b = ramOf(r)!.blocks[0]!;
      const written = b.written!;
      const bits: number[] = [];
      for (let i = 0; i < written.length * 8; i++) if ((written[i >> 3]! >> (i & 7)) & 1) bits.push(i * P);
      expect(bits).toEqual([0x1000, 0x2000, 0x4000_0000, 0x8000_0000, BLOCK - P]);
      expect(same(b.data!.subarray(0x1000, 0x2000), r1)).toBe(true);
      const dev = blockOf(r)!.devices[0]!;
      expect(dev.end).toBe(1011 * MiB);
      expect([...dev.granules!.keys()].sort((a, c) => a - c)).toEqual([20, 21, 1010]);
      expect(dev.zeroChunks).toBe(1001);
    } finally {
      r.dispose();
    }
  });

  it("the disk image read back whole equals the chunks written at their offsets, zero elsewhere", () => {
    const a = rng.bytes(MiB);
    const c = rng.bytes(MiB);
    const bytes = stream(
      [["pc.ram", 1 * MiB]],
      () => {},
      (s) => {
        chunk(s, 3 * MiB, "d", a);
        chunk(s, 512, "d", c); // at sector 1
        chunk(s, 2 * MiB, "d"); // a ZERO_BLOCK on a chunk never written
      },
    );
    const r = decodeBytes(bytes, { materialize: { ram: true, block: true } });
    try {
      const want = zeros(4 * MiB);
      want.set(a, 3 * MiB);
      want.set(c, 512);
      expect(same(blockOf(r)!.devices[0]!.image!, want)).toBe(true);
    } finally {
      r.dispose();
    }
  });

  it("MigrationDestination (default: RAM materialised) and analyze --memory: 3.5 GiB announced, twice on one kernels instance, small peak RSS", () => {
    const announce = stream([["pc.ram", 0xe000_0000]], (s) => page(s, RAM.ZERO, 0x1000, "pc.ram", [0x11]));
    const input = join(tmp(), "announce.mig");
    writeFileSync(input, announce);
    const dist = (p: string) => JSON.stringify(fileURLToPath(new URL(`../../dist/${p}`, import.meta.url)));
    const child = `
      const { readFileSync } = await import("node:fs");
      const { MigrationDestination } = await import(${dist("migration/destination.js")});
      const { createKernels } = await import(${dist("kernels/index.js")});
      const kernels = createKernels();
      const bytes = new Uint8Array(readFileSync(${JSON.stringify(input)}));
      const seen = [];
      for (let i = 0; i < 2; i++) {
        const d = new MigrationDestination({ kernels });
        d.push(bytes);
        const r = d.end();
        const b = r.decoded.live.ram.blocks[0];
        seen.push([r.status, b.data[0x1000], b.data[0x2000]]);
        r.dispose();
      }
      console.log(JSON.stringify(seen));`;
    const t0 = performance.now();
    const res = spawnSync(process.execPath, ["--import", PEAK_RSS, "--input-type=module", "-e", child], { encoding: "utf8" });
    const seconds = (performance.now() - t0) / 1000;
    const peak = Number(/peak-rss-kib (\d+)/.exec(res.stderr)?.[1]) / 1024;
    expect(res.stderr.replace(/peak-rss-kib \d+\n/, "")).toBe("");
    expect(JSON.parse(res.stdout)).toEqual([
      ["complete", 0x11, 0],
      ["complete", 0x11, 0],
    ]);
    // before: 3.5 GiB committed by the second decode (the reused region cleared in full), 25 s
    expect(peak).toBeLessThan(300);
    expect(seconds).toBeLessThan(60);

    const a = cli(["analyze", "--memory", input]);
    expect(a.status).toBe(0);
    expect(a.peakMiB).toBeLessThan(1500); // the document itself has a line per page: 917504 of them
    expect(a.stdout).toContain('"0x0000000000001000": "Filled with 0x11"');
    expect(a.stdout).toContain('"0x00000000dffff000": "Filled with 0x00"');
  }, 180_000);
});

describe("a kernels instance reused after a decode", () => {
  it.each(["wasm-simd", "wasm-scalar", "js"] as const)(
    "%s: the next decode reads zero where the last one wrote, and the same bytes where it writes",
    (backend) => {
      const kernels = createKernels({ backend });
      const rng = new SeededRandom(7);
      const pages = Array.from({ length: 6 }, () => rng.bytes(P));
      const first = stream([["pc.ram", 64 * MiB]], (s) => pages.forEach((p, i) => page(s, RAM.PAGE, i * 3 * MiB, i === 0 ? "pc.ram" : undefined, p)));
      const second = stream(
        [
          ["pc.ram", 64 * MiB],
          ["vga", 8 * MiB],
        ],
        (s) => {
          page(s, RAM.ZERO, 3 * MiB, "pc.ram", [0x77]);
          page(s, RAM.XBZRLE, 6 * MiB, undefined, xbzrle(0, [9]));
        },
      );
      for (let round = 0; round < 3; round++) {
        const a = decodeBytes(first, { kernels, materialize: true });
        const data = ramOf(a)!.blocks[0]!.data!;
        pages.forEach((p, i) => expect(same(data.subarray(i * 3 * MiB, i * 3 * MiB + P), p)).toBe(true));
        a.dispose();
        const b = decodeBytes(second, { kernels, materialize: true });
        const [ram, vga] = ramOf(b)!.blocks;
        const want = zeros(64 * MiB);
        want.fill(0x77, 3 * MiB, 3 * MiB + P);
        want[6 * MiB] = 9;
        expect(same(ram!.data!, want)).toBe(true);
        expect(vga!.data!.every((v) => v === 0)).toBe(true);
        b.dispose();
      }
    },
  );
});

describe("the written-page bitmap covers every page the stream left non-zero", () => {
  it.each([
    ["x86-pc-xbzrle", "wasm-simd"],
    ["x86-pc-xbzrle", "js"],
    ["x86-pc-64m", "wasm-scalar"],
  ] as const)("%s, %s: pages not marked written are zero", (name, backend) => {
    const bytes = new Uint8Array(gunzipSync(readFileSync(FIX(`${name}.mig.gz`))));
    const r = decodeBytes(bytes, { kernels: createKernels({ backend }), materialize: true });
    try {
      let unmarked = 0;
      let marked = 0;
      for (const b of ramOf(r)!.blocks) {
        const data = b.data!;
        const written = b.written!;
        for (let i = 0; i < Math.floor(data.length / P); i++) {
          if ((written[i >> 3]! >> (i & 7)) & 1) {
            marked++;
            continue;
          }
          unmarked++;
          for (let j = i * P; j < (i + 1) * P; j++)
            if (data[j] !== 0) throw new Error(`block ${b.name}: page ${i} is not marked written, byte ${j} is ${data[j]}`);
        }
      }
      expect(marked).toBeGreaterThan(0);
      expect(unmarked).toBeGreaterThan(0);
    } finally {
      r.dispose();
    }
  });
});

describe("the limit on what is materialised", () => {
  const limited = (bytes: number): StreamDecoderOptions => ({ materialize: { ram: true, block: true }, limits: { materializedBytes: bytes } });
  const fail = (input: Uint8Array, options: StreamDecoderOptions): VmstreamError => {
    try {
      decodeBytes(input, options).dispose();
    } catch (e) {
      if (e instanceof VmstreamError) return e;
      throw e;
    }
    throw new Error("the decode did not fail");
  };

  it("counts distinct RAM pages: a page re-sent many times counts once; one page past the limit fails with offset, section and block", () => {
    const resent = stream([["pc.ram", 1 << 30]], (s) => {
      for (let i = 0; i < 3000; i++) page(s, RAM.ZERO, (i % 2) * P, i === 0 ? "pc.ram" : undefined, [1 + (i % 250)]);
    });
    decodeBytes(resent, limited(2 * P)).dispose();
    const third = stream([["pc.ram", 1 << 30]], (s) => {
      for (let i = 0; i < 3000; i++) page(s, RAM.ZERO, (i % 2) * P, i === 0 ? "pc.ram" : undefined, [1]);
      page(s, RAM.ZERO, 0x4000_0000 - P, undefined, [2]);
    });
    const e = fail(third, limited(2 * P));
    expect(e.code).toBe("LIMIT");
    expect(e.offset).toBeTypeOf("number");
    expect(e.offset!).toBeLessThanOrEqual(third.length);
    expect(e.message).toMatch(/section ram/);
    expect(e.message).toContain('block "pc.ram"');
    expect(e.message).toContain("limits.materializedBytes 8192");
  });

  it("counts disk granules with data, not ZERO_BLOCK records, RAM and disks together", () => {
    const rng = new SeededRandom(3);
    const bytes = stream(
      [["pc.ram", 1 << 30]],
      (s) => page(s, RAM.PAGE, 0, "pc.ram", rng.bytes(P)),
      (s) => {
        for (let i = 0; i < 500; i++) chunk(s, i * MiB, "drive0");
        chunk(s, 0, "drive0", rng.bytes(MiB));
        chunk(s, MiB, "drive0", rng.bytes(MiB));
      },
    );
    decodeBytes(bytes, limited(2 * MiB + P)).dispose();
    const e = fail(bytes, limited(2 * MiB));
    expect(e.code).toBe("LIMIT");
    expect(e.message).toMatch(/section block/);
    expect(e.message).toContain('device "drive0"');
    // the second data chunk is the one that does not fit: its record's offset
    expect(e.offset).toBe(bytes.length - 1 - 5 - 8 - (8 + 1 + 6 + MiB));
  });

  it("CLI --max-memory: extract and receive --extract fail with the offset, section and block; a size that fits passes", () => {
    const input = join(tmp(), "limit.mig");
    writeFileSync(
      input,
      stream([["pc.ram", 1 << 30]], (s) => {
        for (let i = 0; i < 1024; i++) page(s, RAM.ZERO, i * P, i === 0 ? "pc.ram" : undefined, [0xee]);
      }),
    );
    const over = cli(["extract", input, join(tmp(), "limit-out"), "--max-memory", "1M"]);
    expect(over.status).toBe(1);
    expect(over.stderr).toMatch(
      /^vmstream: materialised RAM and disk data exceed the limit at byte \d+ \(section ram id 2 instance 0\): .*block "pc\.ram".*limits\.materializedBytes 1048576\n$/,
    );
    const fits = cli(["extract", input, join(tmp(), "limit-out2"), "--max-memory", "4M"]);
    expect(fits.stderr).toBe("");
    expect(fits.status).toBe(0);
    const recv = cli(["receive", input, "--extract", join(tmp(), "limit-out3"), "--max-memory", "1M", "--quiet"]);
    expect(recv.status).toBe(1);
    expect(recv.stderr).toContain("limits.materializedBytes 1048576");
    const bad = cli(["extract", input, join(tmp(), "limit-out4"), "--max-memory", "lots"]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain("--max-memory: not a size");
  }, 60_000);

  it("MigrationDestination: the limit is an option like the others (limits.materializedBytes), the migration fails with it", () => {
    const d = new MigrationDestination({ limits: { materializedBytes: P } });
    d.push(
      stream([["pc.ram", 1 << 20]], (s) => {
        page(s, RAM.ZERO, 0, "pc.ram", [1]);
        page(s, RAM.ZERO, P, undefined, [1]);
      }),
    );
    const r = d.end();
    expect(r.status).toBe("failed");
    expect(r.error?.code).toBe("LIMIT");
    r.dispose();
  });
});
