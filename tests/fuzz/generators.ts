// Structure-aware inputs: fast-check arbitraries of whole streams aimed at the attack classes of issue #13 (vmdesc
// fields of size 0 with huge counts, many devices, repeated subsections, MEM_SIZE huge, ZERO_BLOCK floods, bytes
// that look like vmdesc trailers everywhere). Each builds valid framing around hostile values, so the decoder gets
// past the header and spends its work where the attack is. docs/fuzzing.md, "Generators".
import fc from "fast-check";
import { RAM, StreamBuilder } from "../helpers/stream-builder.js";

/** Counts and sizes that break naive arithmetic: 0, 1, powers of two and their neighbours, 2^31, 2^32 - 1, > 2^53. */
export const INTERESTING = [0, 1, 2, 3, 7, 8, 255, 256, 4095, 4096, 65535, 65536, 2 ** 20, 2 ** 24, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53];

const arbCount = fc.oneof(fc.constantFrom(...INTERESTING), fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
const arbSmall = fc.integer({ min: 0, max: 16 });
const arbName = fc.oneof(fc.constantFrom("timer", "globalstate", "dev", "cpu", "serial", "a/b"), fc.string({ maxLength: 12 }));
const SCALARS = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "bool", "buffer", "unused_buffer", "timer", "float64"];

interface FieldGen {
  name: string;
  type: string;
  size: number;
  array_len?: number;
  struct?: BodyGen;
}
interface BodyGen {
  vmsd_name: string;
  version: number;
  fields: FieldGen[];
  subsections?: BodyGen[];
}

/** vmdesc bodies where sizes and array lengths come from INTERESTING: a walk of them may loop without input. */
const arbBody: (depth: number) => fc.Arbitrary<BodyGen> = fc.memo((depth: number) => {
  const scalar = fc.record(
    { name: arbName, type: fc.constantFrom(...SCALARS), size: fc.oneof(fc.constantFrom(0, 1, 2, 4, 8), arbCount), array_len: arbCount },
    { requiredKeys: ["name", "type", "size"] },
  );
  const field: fc.Arbitrary<FieldGen> =
    depth <= 1
      ? scalar
      : fc.oneof(
          { weight: 3, arbitrary: scalar },
          {
            weight: 1,
            arbitrary: fc.record(
              { name: arbName, type: fc.constant("struct"), size: fc.oneof(fc.constant(0), arbCount), array_len: arbCount, struct: arbBody(depth - 1) },
              { requiredKeys: ["name", "type", "size", "struct"] },
            ),
          },
        );
  return fc.record(
    {
      vmsd_name: arbName,
      version: fc.integer({ min: 0, max: 5 }),
      fields: fc.array(field, { maxLength: 5 }),
      subsections: fc.array(depth <= 1 ? fc.constant({ vmsd_name: "s", version: 1, fields: [] }) : arbBody(depth - 1), { maxLength: 2 }),
    },
    { requiredKeys: ["vmsd_name", "version", "fields"] },
  );
});

const machine = fc.constantFrom("none", "pc-i440fx-7.2", "pc-q35-7.2", "pseries-7.2");

/** One device section described only by its vmdesc entry, with a short payload (fields of size 0, huge counts). */
const hostileVmdesc = fc
  .record({
    machine,
    body: arbBody(3),
    payload: fc.uint8Array({ maxLength: 64 }),
    instance: arbSmall,
    subsectionRepeats: fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0, max: 20 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 3000 }) }),
  })
  .map(({ machine, body, payload, instance, subsectionRepeats }) => {
    const idstr = body.vmsd_name;
    const b = new StreamBuilder().header().config(machine);
    b.full(0, idstr, body.version, (s) => {
      s.bytes(payload);
      // the same subsection over and over: a walk that restarts its search per subsection is quadratic
      for (let i = 0; i < subsectionRepeats; i++) s.subsection(`${idstr}/s`, 1, () => {});
    });
    b.eof().vmdesc({ page_size: 4096, devices: [{ name: idstr, instance_id: instance, ...body }] });
    return b.build();
  });

/** Many small device sections and a vmdesc entry for each (matching entries to sections must stay linear). */
const manyDevices = fc
  .record({
    n: fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 1, max: 300 }) }, { weight: 1, arbitrary: fc.integer({ min: 1000, max: 60_000 }) }),
    shuffle: fc.boolean(),
    size: fc.constantFrom(0, 1, 4),
  })
  .map(({ n, shuffle, size }) => {
    const b = new StreamBuilder().header().config("none");
    const devices: unknown[] = [];
    for (let i = 0; i < n; i++) {
      b.full(i, "d", 1, (s) => s.bytes(new Uint8Array(size)), i);
      devices.push({ name: "d", instance_id: shuffle ? n - 1 - i : i, vmsd_name: "d", version: 1, fields: [{ name: "f", type: "buffer", size }] });
    }
    return b.eof().vmdesc({ page_size: 4096, devices }).build();
  });

/** MEM_SIZE announcing huge blocks, then a few pages anywhere in them (memory must follow data, not the promise). */
const hugeMemSize = fc
  .record({
    blocks: fc.array(fc.record({ name: arbName, length: fc.oneof(fc.constantFrom(2 ** 30, 2 ** 32 - 4096, 0xf000_0000, 2 ** 40, 4096), arbCount) }), {
      minLength: 1,
      maxLength: 8,
    }),
    pages: fc.array(fc.record({ block: fc.nat(7), page: fc.nat(2 ** 20), kind: fc.constantFrom(RAM.ZERO, RAM.PAGE) }), { maxLength: 8 }),
  })
  .map(({ blocks, pages }) => {
    const b = new StreamBuilder().header().config("pc-i440fx-7.2");
    b.start(2, "ram", 4, (s) => {
      let total = 0n;
      for (const k of blocks) total += BigInt(k.length);
      s.be64((total & ~0xfffn) | BigInt(RAM.MEM_SIZE));
      for (const k of blocks) s.cstr(k.name).be64(k.length);
      s.be64(RAM.EOS);
    });
    b.part(2, (s) => {
      for (const p of pages) {
        const block = blocks[p.block % blocks.length]!;
        s.be64(BigInt(p.page) * 4096n + BigInt(p.kind)).cstr(block.name);
        s.bytes(p.kind === RAM.ZERO ? [0] : new Uint8Array(4096).fill(0x5a));
      }
      s.be64(RAM.EOS);
    });
    return b
      .end(2, (s) => s.be64(RAM.EOS))
      .eof()
      .build();
  });

/** Block migration: many ZERO_BLOCK records (10 bytes and a name each) over many devices and far sectors. */
const zeroBlockFlood = fc
  .record({
    devices: fc.integer({ min: 1, max: 70 }),
    records: fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 1, max: 500 }) }, { weight: 1, arbitrary: fc.integer({ min: 500, max: 20_000 }) }),
    spread: fc.constantFrom(1, 2048, 2 ** 21, 2 ** 40),
  })
  .map(({ devices, records, spread }) => {
    const b = new StreamBuilder().header().config("pc-i440fx-7.2");
    b.start(3, "block", 1, (s) => {
      for (let d = 0; d < devices; d++) s.be64(0x01n | 0x08n).cstr(`drive${d}`); // a zero block at sector 0 names the device
      s.be64(0x02);
    });
    b.part(3, (s) => {
      for (let i = 0; i < records; i++) {
        const sector = BigInt((i * 2048) % (spread * 2048 + 1));
        s.be64((sector << 9n) | 0x01n | 0x08n).cstr(`drive${i % devices}`);
      }
      s.be64(0x02);
    });
    return b
      .end(3, (s) => s.be64(0x02))
      .eof()
      .build();
  });

/** Bytes full of `00 06 len` patterns: every one a vmdesc trailer candidate (finding the real one must stay linear). */
const trailerCandidates = fc
  .record({
    n: fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 1, max: 1000 }) }, { weight: 1, arbitrary: fc.integer({ min: 10_000, max: 60_000 }) }),
    json: fc.boolean(),
  })
  .map(({ n, json }) => {
    const b = new StreamBuilder().header().config("none").eof();
    for (let i = 0; i < n; i++)
      b.u8(0x00)
        .u8(0x06)
        .be32(Math.max(0, (n - i) * 6 - 6 + (json ? 0 : 1)));
    return b.build();
  });

/** What each generator aims at, for reports and docs. */
export const GENERATORS: Readonly<Record<string, fc.Arbitrary<Uint8Array>>> = {
  "hostile-vmdesc": hostileVmdesc,
  "many-devices": manyDevices,
  "huge-mem-size": hugeMemSize,
  "zero-block-flood": zeroBlockFlood,
  "trailer-candidates": trailerCandidates,
};
export const GENERATOR_NAMES = Object.keys(GENERATORS);

/** The input of a generator picked by `seed` (from those not `muted`), made from the same seed. */
export function generate(seed: number, muted: readonly string[] = []): { generator: string; bytes: Uint8Array } | undefined {
  const names = GENERATOR_NAMES.filter((g) => !muted.includes(g));
  if (names.length === 0) return undefined;
  const generator = names[(seed >>> 0) % names.length]!;
  const [bytes] = fc.sample(GENERATORS[generator]!, { seed, numRuns: 1 });
  return { generator, bytes: bytes! };
}

/** Small valid streams of the builders: seeds with RAM, XBZRLE, ZERO_BLOCK and vmdesc-described devices. */
export function builtStreams(): Uint8Array[] {
  const ram = new StreamBuilder().header().config("pc-i440fx-7.2");
  ram.start(2, "ram", 4, (s) =>
    s
      .be64(0x2000n | BigInt(RAM.MEM_SIZE))
      .cstr("pc.ram")
      .be64(0x2000)
      .be64(RAM.EOS),
  );
  ram.part(2, (s) => {
    s.be64(RAM.PAGE).cstr("pc.ram").bytes(new Uint8Array(4096).fill(7));
    s.be64(0x1000 | RAM.ZERO | RAM.CONTINUE).u8(0);
    s.be64(RAM.XBZRLE | RAM.CONTINUE)
      .u8(1)
      .be16(4)
      .bytes([1, 2, 0xaa, 0xbb]);
    s.be64(RAM.EOS);
  });
  ram.end(2, (s) => s.be64(RAM.EOS)).eof();
  const block = new StreamBuilder().header().config("pc-i440fx-7.2");
  block.start(3, "block", 1, (s) => s.be64(0x09).cstr("drive0").be64(0x02));
  block
    .end(3, (s) =>
      s
        .be64((8n << 9n) | 0x09n)
        .cstr("drive0")
        .be64(0x02),
    )
    .eof();
  const described = new StreamBuilder().header().config("none");
  described.full(0, "dev", 1, (s) =>
    s
      .be32(2)
      .bytes([1, 2, 3, 4, 5, 6, 7, 8])
      .subsection("dev/sub", 1, (t) => t.be16(9)),
  );
  described.eof().vmdesc({
    page_size: 4096,
    devices: [
      {
        name: "dev",
        instance_id: 0,
        vmsd_name: "dev",
        version: 1,
        fields: [
          { name: "n", type: "uint32", size: 4 },
          { name: "a", type: "uint16", size: 2, array_len: 2 },
          { name: "s", type: "struct", size: 4, struct: { vmsd_name: "s", version: 1, fields: [{ name: "b", type: "uint8", size: 1, array_len: 4 }] } },
        ],
        subsections: [{ vmsd_name: "dev/sub", version: 1, fields: [{ name: "c", type: "uint16", size: 2 }] }],
      },
    ],
  });
  return [ram.build(), block.build(), described.build()];
}
