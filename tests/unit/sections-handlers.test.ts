// The built-in section handlers on synthetic streams: RAM (every MEM_SIZE variant, PAGE, ZERO, CONTINUE
// across sections, EOS variants, XBZRLE against the page as last received, COMPRESS_PAGE, HOOK and unknown
// flags), block migration, spapr/htab, dirty-bitmap.
import { deflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { nodeInflate } from "../../src/io/node.js";
import { createKernels } from "../../src/kernels/index.js";
import { blockOf, decodeBytes, dirtyBitmapOf, htabOf, ramOf, StreamDecoder, type StreamDecoderOptions } from "../../src/sections/stream.js";
import { thrownBy } from "../helpers/errors.js";
import { memSize, page, RAM, StreamBuilder } from "../helpers/stream-builder.js";

const kernels = createKernels();
const P = 4096;

/** header, configuration, START ram (payload), then `rest`, EOF; no device sections. */
function ramStream(
  setup: (b: StreamBuilder) => void,
  rest: (b: StreamBuilder) => void = () => {},
  machine = "pc-i440fx-7.2",
  config?: (b: StreamBuilder) => void,
): Uint8Array {
  const b = new StreamBuilder().header().config(machine, config);
  b.start(2, "ram", 4, setup);
  rest(b);
  return b.eof().build();
}

function decode(bytes: Uint8Array, options: StreamDecoderOptions = {}) {
  return decodeBytes(bytes, { kernels, ...options });
}

const fill = (n: number, v: number) => new Array<number>(n).fill(v);

describe("ram", () => {
  it("MEM_SIZE, PAGE, ZERO (any fill byte), CONTINUE carried across sections, EOS; materialised", () => {
    const bytes = ramStream(
      (b) =>
        memSize(b, [
          ["pc.ram", 4 * P],
          ["rom", P],
        ]).be64(RAM.EOS),
      (b) => {
        b.part(2, (b) => {
          page(b, RAM.PAGE, 0, "pc.ram", fill(P, 0xaa));
          page(b, RAM.ZERO, P, undefined, [0x11]); // QEMU fills with any byte
          b.be64(RAM.EOS);
        });
        b.part(2, (b) => {
          page(b, RAM.ZERO, 2 * P, undefined, [0]); // CONTINUE at the start of a section: pc.ram
          page(b, RAM.PAGE, 0, "rom", fill(P, 0x55));
          b.be64(RAM.EOS | RAM.CONTINUE); // EOS with CONTINUE is EOS for QEMU
        });
        b.end(2, (b) => b.be64(RAM.EOS));
      },
    );
    const r = decode(bytes, { materialize: { ram: true } });
    const ram = ramOf(r)!;
    expect(ram.totalBytes).toBe(BigInt(5 * P));
    expect(ram.blocks.map((x) => [x.name, x.length, x.pages])).toEqual([
      ["pc.ram", BigInt(4 * P), { zero: 2, normal: 1, xbzrle: 0, compressed: 0 }],
      ["rom", BigInt(P), { zero: 0, normal: 1, xbzrle: 0, compressed: 0 }],
    ]);
    const d = ram.blocks[0]!.data!;
    expect(d.subarray(0, P).every((x) => x === 0xaa)).toBe(true);
    expect(d.subarray(P, 2 * P).every((x) => x === 0x11)).toBe(true);
    expect(d.subarray(2 * P).every((x) => x === 0)).toBe(true);
    expect(ram.blocks[1]!.data!.every((x) => x === 0x55)).toBe(true);
    expect(ram.records.eos).toBe(4);
    expect(ram.sections).toBe(4);
    r.dispose();
  });

  it("XBZRLE is applied to the page as last received", () => {
    const bytes = ramStream(
      (b) => memSize(b, [["pc.ram", P]]).be64(RAM.EOS),
      (b) =>
        b.part(2, (b) => {
          page(b, RAM.PAGE, 0, "pc.ram", fill(P, 7));
          // zrun 10, nzrun 2 bytes (1, 2); then zrun 100, nzrun 1 byte (9)
          page(b, RAM.XBZRLE, 0, undefined, [1, 0, 7, 10, 2, 1, 2, 100, 1, 9]);
          b.be64(RAM.EOS);
        }),
    );
    const r = decode(bytes, { materialize: true });
    const d = ramOf(r)!.blocks[0]!.data!;
    const want = new Uint8Array(P).fill(7);
    want[10] = 1;
    want[11] = 2;
    want[112] = 9;
    expect(d).toEqual(want);
    expect(ramOf(r)!.records.xbzrle).toBe(1);
    r.dispose();
  });

  it("MEM_SIZE variants: postcopy page size (option), x-ignore-shared address (configuration), both", () => {
    const cfgShared = (b: StreamBuilder) => b.subsection("configuration/capabilities", 1, (b) => b.be32(1).cstr("x-ignore-shared"));
    const r1 = decode(
      ramStream((b) => memSize(b, [["mem", 2 * P, 0x200000]]).be64(RAM.EOS)),
      { ram: { blockPageSize: true } },
    );
    expect(ramOf(r1)!.blocks[0]).toMatchObject({ name: "mem", length: BigInt(2 * P), pageSize: 0x200000n });
    const r2 = decode(
      ramStream(
        (b) =>
          memSize(b, [
            ["mem", P, 0],
            ["pc.bios", P, 0xfffc0000],
          ]).be64(RAM.EOS),
        undefined,
        "pc-i440fx-7.2",
        cfgShared,
      ),
    );
    expect(r2.configuration?.capabilities).toEqual(["x-ignore-shared"]);
    expect(ramOf(r2)!.blocks.map((x) => x.mrAddr)).toEqual([0n, 0xfffc0000n]);
    const r3 = decode(
      ramStream(
        (b) =>
          memSize(b, [
            ["a", P, 4096, 0x1000],
            ["b", P, 0x200000, 0x2000],
          ]).be64(RAM.EOS),
        undefined,
        "pc",
        cfgShared,
      ),
      {
        ram: { blockPageSize: (n) => n === "a" || n === "b" },
      },
    );
    expect(ramOf(r3)!.blocks.map((x) => [x.pageSize, x.mrAddr])).toEqual([
      [4096n, 0x1000n],
      [0x200000n, 0x2000n],
    ]);
  });

  it("MEM_SIZE: overshoot, duplicate or empty names, a changed repeat are errors; total 0 has no entries", () => {
    const over = ramStream((b) =>
      b
        .be64(BigInt(P) | 4n)
        .cstr("pc.ram")
        .be64(2 * P)
        .be64(RAM.EOS),
    );
    expect(thrownBy(() => decode(over)).message).toMatch(/exceed the MEM_SIZE total at byte \d+ \(section ram id 2/);
    expect(
      thrownBy(() =>
        decode(
          ramStream((b) =>
            memSize(b, [
              ["x", P],
              ["x", P],
            ]).be64(RAM.EOS),
          ),
        ),
      ).message,
    ).toMatch(/listed twice/);
    expect(thrownBy(() => decode(ramStream((b) => memSize(b, [["", P]]).be64(RAM.EOS)))).message).toMatch(/empty RAM block name/);
    const repeat = ramStream(
      (b) => memSize(b, [["x", P]]).be64(RAM.EOS),
      (b) => b.part(2, (b) => memSize(b, [["x", 2 * P]]).be64(RAM.EOS)),
    );
    expect(thrownBy(() => decode(repeat)).message).toMatch(/length changed/);
    const same = ramStream(
      (b) => memSize(b, [["x", P]]).be64(RAM.EOS),
      (b) => b.part(2, (b) => memSize(b, [["x", P]]).be64(RAM.EOS)),
    );
    expect(ramOf(decode(same))!.records.memSize).toBe(2);
  });

  it("page records: unknown block, CONTINUE before a block, offset past the block, bad XBZRLE are errors naming the record", () => {
    const base = (rec: (b: StreamBuilder) => void) =>
      ramStream(
        (b) => memSize(b, [["pc.ram", 2 * P]]).be64(RAM.EOS),
        (b) => b.part(2, (b) => (rec(b), b.be64(RAM.EOS))),
      );
    const e1 = thrownBy(() => decode(base((b) => page(b, RAM.ZERO, 0, "nope", [0]))));
    expect(e1.message).toMatch(/unknown RAM block at byte \d+ \(section ram id 2 instance 0\): "nope"/);
    expect(thrownBy(() => decode(base((b) => page(b, RAM.ZERO, 0, undefined, [0])))).message).toMatch(/CONTINUE before any block/);
    const e3 = thrownBy(() => decode(base((b) => page(b, RAM.PAGE, 2 * P, "pc.ram", fill(P, 0)))));
    expect(e3.code).toBe("RANGE");
    expect(e3.message).toMatch(/offset 0x2000, block "pc.ram" has 0x2000 bytes/);
    expect(thrownBy(() => decode(base((b) => page(b, RAM.XBZRLE, 0, "pc.ram", [2, 0, 1, 0])))).message).toMatch(/encoding byte/);
    expect(thrownBy(() => decode(base((b) => page(b, RAM.XBZRLE, 0, "pc.ram", [1, 0x10, 0x01])))).message).toMatch(/longer than a page/);
    expect(thrownBy(() => decode(base((b) => page(b, RAM.XBZRLE, 0, "pc.ram", [1, 0, 2, 0x80, 0x80])))).message).toMatch(/malformed XBZRLE/);
    expect(thrownBy(() => decode(base((b) => b.be64(RAM.HOOK)))).code).toBe("UNSUPPORTED");
    expect(thrownBy(() => decode(base((b) => b.be64(0x200)))).message).toMatch(/unknown combination of RAM record flags.*0x200/);
    expect(thrownBy(() => decode(base((b) => page(b, RAM.ZERO | RAM.PAGE, 0, "pc.ram", [0])))).message).toMatch(/unknown combination/);
    expect(thrownBy(() => decode(base((b) => b.be64(0x01)))).message).toMatch(/unknown combination/);
  });

  it("ram version must be 4", () => {
    const b = new StreamBuilder().header().config("pc");
    b.start(2, "ram", 3, (b) => b.be64(RAM.EOS));
    expect(thrownBy(() => decode(b.eof().build())).code).toBe("BAD_VERSION");
  });

  it("COMPRESS_PAGE: zlib inflate through options.inflate (Node's by default in the Node adapters); bound and size checked", () => {
    const content = new Uint8Array(P).map((_, i) => i * 7);
    const z = deflateSync(content, { level: 1 });
    const comp = (b: StreamBuilder, data: Uint8Array, len = data.length) => {
      b.be64(P | RAM.COMPRESS | RAM.CONTINUE)
        .be32(len)
        .bytes(data);
    };
    const bytes = ramStream(
      (b) => memSize(b, [["pc.ram", 2 * P]]).be64(RAM.EOS),
      (b) => b.part(2, (b) => (page(b, RAM.ZERO, 0, "pc.ram", [0]), comp(b, z), b.be64(RAM.EOS))),
    );
    expect(thrownBy(() => decode(bytes)).code).toBe("UNSUPPORTED");
    const r = decode(bytes, { inflate: nodeInflate, materialize: true });
    expect(ramOf(r)!.blocks[0]!.pages.compressed).toBe(1);
    expect(ramOf(r)!.blocks[0]!.data!.subarray(P)).toEqual(content);
    r.dispose();
    const short = ramStream(
      (b) => memSize(b, [["pc.ram", 2 * P]]).be64(RAM.EOS),
      (b) => b.part(2, (b) => (page(b, RAM.ZERO, 0, "pc.ram", [0]), comp(b, deflateSync(new Uint8Array(100))), b.be64(RAM.EOS))),
    );
    expect(thrownBy(() => decode(short, { inflate: nodeInflate })).message).toMatch(/inflate to one page/);
    const long = ramStream(
      (b) => memSize(b, [["pc.ram", 2 * P]]).be64(RAM.EOS),
      (b) => b.part(2, (b) => (page(b, RAM.ZERO, 0, "pc.ram", [0]), comp(b, deflateSync(new Uint8Array(2 * P))), b.be64(RAM.EOS))),
    );
    expect(thrownBy(() => decode(long, { inflate: nodeInflate })).message).toMatch(/does not inflate/);
    const huge = ramStream(
      (b) => memSize(b, [["pc.ram", 2 * P]]).be64(RAM.EOS),
      (b) => b.part(2, (b) => (page(b, RAM.ZERO, 0, "pc.ram", [0]), b.be64(P | RAM.COMPRESS | RAM.CONTINUE).be32(4111))),
    );
    expect(thrownBy(() => decode(huge, { inflate: nodeInflate })).message).toMatch(/compressBound.*4111 > 4110/);
  });

  it("materialising is capped (limits.ramBytes)", () => {
    const bytes = ramStream((b) => memSize(b, [["pc.ram", 1n << 30n]]).be64(RAM.EOS));
    expect(thrownBy(() => decode(bytes, { materialize: true, limits: { ramBytes: 1 << 20 } })).code).toBe("LIMIT");
    expect(ramOf(decode(bytes))!.totalBytes).toBe(1n << 30n); // not materialised: nothing allocated
  });
});

describe("block", () => {
  const MiB = 1 << 20;
  const blockStream = (records: (b: StreamBuilder) => void) => {
    const b = new StreamBuilder().header().config("pc");
    b.start(1, "block", 1, (b) => b.be64(2));
    b.part(1, (b) => (records(b), b.be64(2)));
    return b.eof().build();
  };

  it("DEVICE_BLOCK with data and ZERO_BLOCK, PROGRESS, EOS; images grow to the furthest chunk", () => {
    const bytes = blockStream((b) => {
      b.be64(4);
      b.be64(BigInt(2048 << 9) | 1n)
        .cstr("drv0")
        .bytes(fill(MiB, 0xa5));
      b.be64(BigInt(33 << 9) | 4n);
      b.be64(BigInt(0) | 9n).cstr("drv0");
      b.be64(BigInt(0) | 1n)
        .cstr("drv1")
        .bytes(fill(MiB, 1));
      b.be64(BigInt(100 << 9) | 4n);
    });
    const r = decode(bytes, { materialize: { block: true } });
    const blk = blockOf(r)!;
    expect(blk.progress).toEqual([0, 33, 100]);
    expect(blk.records).toEqual({ device: 2, zero: 1, progress: 3, eos: 2 });
    expect(blk.devices.map((d) => [d.name, d.dataChunks, d.zeroChunks, d.end])).toEqual([
      ["drv0", 1, 1, 2 * MiB],
      ["drv1", 1, 0, MiB],
    ]);
    const img = blk.devices[0]!.image!;
    expect(img.length).toBe(2 * MiB);
    expect(img.subarray(0, MiB).every((x) => x === 0)).toBe(true);
    expect(img.subarray(MiB).every((x) => x === 0xa5)).toBe(true);
    expect(blockOf(decode(bytes))!.devices[0]!.image).toBeUndefined();
  });

  it("unknown flag combinations, limits", () => {
    expect(thrownBy(() => decode(blockStream((b) => b.be64(8)))).message).toMatch(/unknown block migration flags at byte \d+ \(section block id 1.*0x8/);
    expect(thrownBy(() => decode(blockStream((b) => b.be64(3)))).message).toMatch(/unknown block migration flags/);
    expect(thrownBy(() => decode(blockStream((b) => b.be64(0x10)))).message).toMatch(/0x10/);
    const far = blockStream((b) => b.be64((1n << 40n) | 9n).cstr("d"));
    expect(thrownBy(() => decode(far, { materialize: true })).code).toBe("LIMIT");
    expect(blockOf(decode(far))!.devices[0]!.end).toBe(2 ** 40 + MiB);
    const many = blockStream((b) => {
      for (let i = 0; i < 3; i++) b.be64(9).cstr(`d${i}`);
    });
    expect(thrownBy(() => decode(many, { limits: { blockDevices: 2 } })).code).toBe("LIMIT");
  });
});

describe("spapr/htab", () => {
  const htabStream = (start: (b: StreamBuilder) => void, ...parts: ((b: StreamBuilder) => void)[]) => {
    const b = new StreamBuilder().header().config("pseries-7.2");
    b.start(563, "spapr/htab", 1, start);
    for (const p of parts) b.part(563, p);
    return b.eof().build();
  };
  const hpte = (v: number) => fill(16, v);

  it("shift header, chunks of valid and invalidated entries, end markers; materialised HPT", () => {
    const bytes = htabStream(
      (b) => b.be32(18),
      (b) =>
        b
          .be32(0)
          .be32(5)
          .be16(2)
          .be16(0)
          .bytes([...hpte(1), ...hpte(2)])
          .be32(0)
          .be16(0)
          .be16(0),
      (b) => b.be32(0).be32(6).be16(0).be16(3).be32(9).be16(1).be16(1).bytes(hpte(3)).be32(0).be16(0).be16(0),
    );
    const r = decode(bytes, { materialize: { htab: true } });
    const h = htabOf(r)!;
    expect(h).toMatchObject({ shift: 18, headers: [18, 0, 0], chunks: 3, valid: 3, invalidated: 4, sections: 3 });
    const t = h.hpt!;
    expect(t.length).toBe(1 << 18);
    expect(t.subarray(5 * 16, 6 * 16).every((x) => x === 1)).toBe(true);
    expect(t.subarray(6 * 16, 9 * 16).every((x) => x === 0)).toBe(true);
    expect(t.subarray(9 * 16, 10 * 16).every((x) => x === 3)).toBe(true);
  });

  it("0xFFFFFFFF = no HPT with nothing after it; bounds in 64 bits; shift range; chunks without an HPT", () => {
    expect(
      htabOf(
        decode(
          htabStream(
            (b) => b.be32(0xffffffff),
            (b) => b.be32(0xffffffff),
          ),
        ),
      ),
    ).toMatchObject({ shift: undefined, chunks: 0 });
    expect(thrownBy(() => decode(htabStream((b) => b.be32(17)))).code).toBe("RANGE");
    expect(thrownBy(() => decode(htabStream((b) => b.be32(47)))).code).toBe("RANGE");
    // index near 2^32 would wrap QEMU's 32-bit check
    const wrap = htabStream(
      (b) => b.be32(18),
      (b) => b.be32(0).be32(0xffffffff).be16(1).be16(0).bytes(hpte(1)).be32(0).be16(0).be16(0),
    );
    expect(thrownBy(() => decode(wrap)).message).toMatch(/out of bounds/);
    const edge = htabStream(
      (b) => b.be32(18),
      (b) =>
        b
          .be32(0)
          .be32((1 << 14) - 1)
          .be16(1)
          .be16(0)
          .bytes(hpte(1))
          .be32(0)
          .be16(0)
          .be16(0),
    );
    expect(htabOf(decode(edge))!.valid).toBe(1);
    const none = htabStream(
      (b) => b.be32(0xffffffff),
      (b) => b.be32(0).be32(1).be16(1).be16(0).bytes(hpte(1)).be32(0).be16(0).be16(0),
    );
    expect(thrownBy(() => decode(none)).message).toMatch(/no hash page table/);
    expect(
      thrownBy(() =>
        decode(
          htabStream((b) => b.be32(30)),
          { materialize: true, limits: { htabBytes: 1 << 20 } },
        ),
      ).code,
    ).toBe("LIMIT");
  });
});

describe("dirty-bitmap", () => {
  it("names, START, BITS (with and without ZEROES), COMPLETE, EOS; extra flag bytes as QEMU 7.2 reads them", () => {
    const b = new StreamBuilder().header().config("pc");
    b.start(3, "dirty-bitmap", 1, (b) => {
      b.u8(0x08 | 0x04 | 0x10)
        .cstr("node0")
        .cstr("bm0")
        .be32(65536)
        .u8(1);
      b.u8(0x01);
    });
    b.part(3, (b) => {
      b.u8(0x40).be64(0).be32(128).be64(16).bytes(fill(16, 0xff));
      b.u8(0x40 | 0x02)
        .be64(128)
        .be32(128);
      b.u8(0x80)
        .u8(0x40 | 0x02)
        .be64(256)
        .be32(64); // EXTRA_FLAGS: the second byte replaces the first
      b.u8(0x01);
    });
    b.end(3, (b) => b.u8(0x20 | 0x01));
    const r = decode(b.eof().build());
    expect(dirtyBitmapOf(r)).toEqual({
      bitmaps: [
        { node: "node0", name: "bm0", granularity: 65536, startFlags: 1, bitsRecords: 1, zeroRecords: 2, bufferBytes: 16, sectors: 320, complete: true },
      ],
      records: 7,
      sections: 3,
    });
  });

  it("oversized buffers, reserved START flags, records before the names are errors", () => {
    const one = (rec: (b: StreamBuilder) => void) => {
      const b = new StreamBuilder().header().config("pc");
      b.start(3, "dirty-bitmap", 1, (b) => (rec(b), b.u8(1)));
      return b.eof().build();
    };
    expect(thrownBy(() => decode(one((b) => b.u8(0x4c).cstr("n").cstr("b").be64(0).be32(1).be64(10241)))).message).toMatch(/too large/);
    expect(thrownBy(() => decode(one((b) => b.u8(0x1c).cstr("n").cstr("b").be32(512).u8(0x08)))).message).toMatch(/unknown flags/);
    expect(thrownBy(() => decode(one((b) => b.u8(0x10).be32(512).u8(0)))).message).toMatch(/before the node and bitmap names/);
    expect(thrownBy(() => decode(one((b) => b.u8(0x08).u8(0)))).code).toBe("EMPTY_STRING");
  });
});

describe("a custom live handler", () => {
  it("plugs in by idstr through options.handlers", () => {
    const b = new StreamBuilder().header().config("pc");
    b.start(9, "counter", 1, (b) => b.u8(3).bytes([1, 2, 3]));
    const bytes = b.eof().build();
    const d = new StreamDecoder({
      kernels,
      handlers: {
        counter: () => {
          let sum = 0;
          return {
            idstr: "counter",
            maxVersion: 1,
            begin() {},
            feed(input) {
              const u8 = input.kernels.u8;
              if (input.len < 1 || input.len < 1 + u8[input.ptr]!) return { consumed: 0, done: false };
              const n = u8[input.ptr]!;
              for (let i = 0; i < n; i++) sum += u8[input.ptr + 1 + i]!;
              return { consumed: 1 + n, done: true };
            },
            result: () => ({ sum }),
          };
        },
      },
    });
    for (const byte of bytes) d.push(new Uint8Array([byte]));
    expect(d.end().live.counter).toEqual({ sum: 6 });
  });
});
