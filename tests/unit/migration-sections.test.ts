// The source engine with its three iterative sections (ram, block, spapr/htab): every stream it writes decodes
// (StreamDecoder, materialised ram/block/htab) to exactly the source's state at the pause, after RAM pages, disk
// chunks and HPTEs changed between any steps (host logs or scans against shadows, host arrays or the kernels'
// memory); block: bulk pass with QEMU's PROGRESS records, then dirty chunks, zero chunks as ZERO_BLOCK;
// htab: a first pass of valid entries only, then changed entries with invalidations as n_invalid runs; the
// round's budget caps all sections together; block and htab pending bytes count for convergence.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";
import { createKernels } from "../../src/kernels/index.js";
import type { Kernels } from "../../src/kernels/types.js";
import { simulate } from "../../src/migration/simulate.js";
import { MigrationSource, type MigrationSourceOptions, type RoundProgress } from "../../src/migration/source.js";
import type { DecodeResult } from "../../src/savevm/types.js";
import type { BlockRecord } from "../../src/sections/block/format.js";
import type { BlockResult } from "../../src/sections/block/handler.js";
import type { BlockDeviceSource } from "../../src/sections/block/source.js";
import type { SectionProgress } from "../../src/sections/iterative.js";
import type { HtabItem } from "../../src/sections/spapr-htab/format.js";
import type { HtabResult } from "../../src/sections/spapr-htab/handler.js";
import type { HtabSource } from "../../src/sections/spapr-htab/source.js";
import { decodeBytes, ramOf } from "../../src/sections/stream.js";
import { concat } from "../helpers/bytes.js";
import { thrownBy } from "../helpers/errors.js";
import { SeededRandom } from "../helpers/random.js";
import { liveRecords, recordsAt } from "../helpers/records.js";

const PS = 4096;
const MiB = 1 << 20;
const HPTE = 16;

/** An HPTE with V set (`valid`) or clear but non-zero bits elsewhere. */
function hpte(i: number, salt: number, valid = true): Uint8Array {
  const b = new Uint8Array(HPTE);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, (i * 2654435761) >>> 0);
  dv.setUint32(4, (((salt & 0xff) << 8) | (valid ? 1 : 0) | 0x80) >>> 0);
  dv.setUint32(8, (i ^ salt) >>> 0);
  dv.setUint32(12, 0x192 + salt);
  return b;
}

/** What the destination's HPT must hold: valid entries as they are, invalid ones zero. */
function expectedHpt(t: Uint8Array): Uint8Array {
  const o = new Uint8Array(t.length);
  for (let i = 0; i < t.length / HPTE; i++) if (t[i * HPTE + 7]! & 1) o.set(t.subarray(i * HPTE, (i + 1) * HPTE), i * HPTE);
  return o;
}

interface Rig {
  k: Kernels;
  ramPtr: number;
  ramBytes: number;
  disks: { name: string; bytes: () => Uint8Array; source: BlockDeviceSource }[];
  hpt: (() => Uint8Array) | undefined;
  src: MigrationSource;
  chunks: Uint8Array[];
  bytes(): Uint8Array;
}

interface RigOptions {
  backend?: "js" | "wasm-scalar";
  ramPages?: number;
  /** Disk sizes in bytes; "k" = in the kernels' memory. */
  disks?: { size: number; where: "host" | "k"; log?: () => Uint8Array | undefined }[];
  htabShift?: number;
  htabWhere?: "host" | "k";
  htabLog?: () => Uint8Array | undefined;
  htabSectionId?: number;
  noHpt?: boolean;
  seed?: number;
  engine?: Partial<MigrationSourceOptions>;
}

function rig(o: RigOptions = {}): Rig {
  const k = createKernels({ backend: o.backend ?? "js" });
  const rnd = new SeededRandom(o.seed ?? 7);
  const ramPages = o.ramPages ?? 64;
  const ramBytes = ramPages * PS;
  const ramPtr = k.alloc(ramBytes, 4096);
  k.u8.fill(0, ramPtr, ramPtr + ramBytes);
  for (let p = 0; p < ramPages; p += 3) rnd.fill(k.u8.subarray(ramPtr + p * PS, ramPtr + p * PS + 64));
  const disks: Rig["disks"] = [];
  (o.disks ?? []).forEach((d, i) => {
    const name = `drive${i}`;
    let bytes: () => Uint8Array;
    let data: BlockDeviceSource["data"];
    if (d.where === "k") {
      const ptr = k.alloc(d.size, 4096);
      data = { ptr, length: d.size };
      bytes = () => k.u8.subarray(ptr, ptr + d.size);
    } else {
      const a = new Uint8Array(d.size);
      data = a;
      bytes = () => a;
    }
    const b = bytes();
    b.fill(0);
    // chunk 1 stays all zero; the others carry data (zero sectors inside)
    for (let c = 0; c < Math.ceil(d.size / MiB); c++) {
      if (c === 1) continue;
      for (let s = c * 2048; s < Math.min(d.size / 512, (c + 1) * 2048); s += 3) rnd.fill(b.subarray(s * 512, s * 512 + 32));
    }
    disks.push({ name, bytes, source: { name, data, ...(d.log ? { dirtyLog: d.log } : {}) } });
  });
  let hpt: Rig["hpt"];
  let htab: HtabSource | undefined;
  if (o.noHpt) htab = {};
  else if (o.htabShift !== undefined) {
    const size = 2 ** o.htabShift;
    let data: HtabSource["hpt"];
    if (o.htabWhere === "k") {
      const ptr = k.alloc(size, 4096);
      k.u8.fill(0, ptr, ptr + size);
      data = { ptr, length: size };
      hpt = () => k.u8.subarray(ptr, ptr + size);
    } else {
      const a = new Uint8Array(size);
      data = a;
      hpt = () => a;
    }
    const t = hpt();
    for (let i = 0; i < size / HPTE; i++) {
      const r = rnd.int(10);
      if (r < 4) t.set(hpte(i, 1), i * HPTE);
      else if (r === 4) t.set(hpte(i, 1, false), i * HPTE); // invalid but not zero
    }
    htab = { hpt: data, ...(o.htabLog ? { dirtyLog: o.htabLog } : {}), ...(o.htabSectionId !== undefined ? { sectionId: o.htabSectionId } : {}) };
  }
  const chunks: Uint8Array[] = [];
  const src = new MigrationSource(
    {
      kernels: k,
      blocks: [{ name: "pc.ram", ptr: ramPtr, length: ramBytes }],
      bandwidth: 4 * MiB,
      roundTime: 0.25,
      downtimeTarget: 0,
      maxRounds: 50,
      ...(disks.length ? { blockDevices: disks.map((d) => d.source) } : {}),
      ...(htab ? { htab } : {}),
      ...(o.engine ?? {}),
    },
    (c) => chunks.push(c.slice()),
  );
  return {
    k,
    ramPtr,
    ramBytes,
    disks,
    hpt,
    src,
    chunks,
    bytes: () => concat(chunks),
  };
}

const blockOf = (r: DecodeResult) => r.live.block as BlockResult | undefined;
const htabOf = (r: DecodeResult) => r.live["spapr/htab"] as HtabResult | undefined;

/** Decode the rig's stream and compare every section's destination state with the source's now. */
function checkDestination(g: Rig): DecodeResult {
  const stream = g.bytes();
  expect(stream.length).toBe(g.src.bytesWritten);
  const r = decodeBytes(stream, { materialize: { ram: true, block: true, htab: true } });
  expect(r.completeness.complete).toBe(true);
  expect(r.eof).toBe(true);
  const ram = ramOf(r)!.blocks[0]!.data!;
  expect(Buffer.from(ram).equals(Buffer.from(g.k.u8.subarray(g.ramPtr, g.ramPtr + g.ramBytes))), "RAM").toBe(true);
  for (const d of g.disks) {
    const dev = blockOf(r)!.devices.find((x) => x.name === d.name)!;
    const want = d.bytes();
    expect(dev.image!.length).toBe(Math.ceil(want.length / MiB) * MiB);
    expect(Buffer.from(dev.image!.subarray(0, want.length)).equals(Buffer.from(want)), d.name).toBe(true);
    expect(dev.image!.subarray(want.length).every((b) => b === 0)).toBe(true); // the padding of a partial chunk
  }
  if (g.hpt) {
    const h = htabOf(r)!;
    expect(h.shift).toBe(Math.log2(g.hpt().length));
    expect(Buffer.from(h.hpt!).equals(Buffer.from(expectedHpt(g.hpt()))), "HPT").toBe(true);
  }
  return r;
}

/** The guest / host change things: RAM pages, disk sectors, HPTEs (overwrites, new entries, invalidations). */
function mutate(g: Rig, rnd: SeededRandom, n: number): void {
  for (let i = 0; i < n; i++) {
    const what = rnd.int(3);
    if (what === 0) {
      const at = g.ramPtr + rnd.int(g.ramBytes);
      g.k.u8[at] = rnd.byte();
    } else if (what === 1 && g.disks.length) {
      const d = g.disks[rnd.int(g.disks.length)]!.bytes();
      const at = rnd.int(d.length);
      d[at] = (d[at]! + 1 + rnd.int(255)) & 0xff;
    } else if (g.hpt) {
      const t = g.hpt();
      const e = rnd.int(t.length / HPTE);
      const kind = rnd.int(3);
      if (kind === 0) t.set(hpte(e, rnd.byte()), e * HPTE);
      else if (kind === 1) t.fill(0, e * HPTE, (e + 1) * HPTE);
      else t[e * HPTE + 7]! &= ~1; // V cleared, the rest left
    }
  }
}

describe("MigrationSource with block and spapr/htab sections", () => {
  it.each([
    ["js", "host"],
    ["wasm-scalar", "k"],
  ] as const)("scan mode, changes between any steps: the destination equals the source (%s, data in %s memory)", (backend, where) => {
    // 8 MiB a round: every section finishes its first pass early, later rounds carry changes
    const g = rig({
      backend,
      disks: [
        { size: 3 * MiB, where },
        { size: 1536 * 1024, where },
      ],
      htabShift: 18,
      htabWhere: where,
      seed: 3,
      engine: { bandwidth: 32 * MiB },
    });
    const rnd = new SeededRandom(99);
    const s = g.src;
    s.setup();
    for (let i = 0; i < 12; i++) {
      mutate(g, rnd, 4);
      s.iterate();
      mutate(g, rnd, 10);
      s.sync();
      mutate(g, rnd, 3);
    }
    s.forceSwitch();
    mutate(g, rnd, 5);
    const final = s.complete();
    expect(final.phase).toBe("complete");
    const r = checkDestination(g);
    // QEMU's savevm order: block (id 1) before ram (id 2), spapr/htab after ram
    expect(r.sections.filter((x) => x.type === "start").map((x) => `${x.id}:${x.idstr}`)).toEqual(["1:block", "2:ram", "3:spapr/htab"]);
    expect(r.sections.filter((x) => x.type === "end").map((x) => x.idstr)).toEqual(["block", "ram", "spapr/htab"]);
    // rounds reported the dirty sources and the sections
    const last = s.rounds[s.rounds.length - 1]!;
    expect(last.sections.map((x) => [x.idstr, x.dirtySource])).toEqual([
      ["block", "scan"],
      ["ram", "scan"],
      ["spapr/htab", "scan"],
    ]);
    // the HPT had entries invalidated after they were sent
    expect(htabOf(r)!.invalidated).toBeGreaterThan(0);
    r.dispose();
    s.dispose();
  });

  it("host logs: exactly the chunks and HPTEs the logs name are re-sent (not what a scan would find)", () => {
    const diskLogs: (Uint8Array | undefined)[] = [Uint8Array.of(0b0000_1000)]; // after round 1: chunk 3
    const htabLogs: (Uint8Array | undefined)[] = [];
    const g = rig({
      disks: [{ size: 6 * MiB, where: "host", log: () => diskLogs.shift() }],
      htabShift: 18,
      htabLog: () => htabLogs.shift(),
      engine: { bandwidth: 1e12, dirtyLog: () => undefined },
    });
    const s = g.src;
    const disk = g.disks[0]!.bytes();
    const t = g.hpt!();
    s.setup();
    s.iterate();
    // round 1 sent everything; now disk chunks 3 and 5 change, the log names only 3
    disk[3 * MiB + 10] ^= 0xff;
    disk[5 * MiB + 10] ^= 0xff;
    // HPTEs 10 (overwritten), 11 (invalidated), 12 (left alone) change; the log names 10 and 11
    t.set(hpte(10, 77), 10 * HPTE);
    t.fill(0, 11 * HPTE, 12 * HPTE);
    t.set(hpte(12, 78), 12 * HPTE);
    const log = new Uint8Array(t.length / HPTE / 8);
    log[1] = 0b0000_1100;
    htabLogs.push(log);
    const p1 = s.sync();
    expect(p1.sections.find((x) => x.idstr === "block")).toMatchObject({ dirtied: 1, dirtyUnits: 1, dirtySource: "log" });
    expect(p1.sections.find((x) => x.idstr === "spapr/htab")).toMatchObject({ dirtied: 2, dirtyUnits: 2, dirtySource: "log" });
    s.iterate();
    const p2 = s.sync();
    expect(p2.sections.find((x) => x.idstr === "block")).toMatchObject({ kind: "block", chunks: 1, zeroChunks: 0 });
    expect(p2.sections.find((x) => x.idstr === "spapr/htab")).toMatchObject({ kind: "htab", valid: 1, invalid: 1, chunks: 1 });
    s.complete();
    const r = decodeBytes(g.bytes(), { materialize: { block: true, htab: true } });
    const img = blockOf(r)!.devices[0]!.image!;
    expect(img[3 * MiB + 10]).toBe(disk[3 * MiB + 10]);
    expect(img[5 * MiB + 10]).toBe(disk[5 * MiB + 10]! ^ 0xff); // not in the log: never re-sent
    const h = htabOf(r)!.hpt!;
    expect(Buffer.from(h.subarray(10 * HPTE, 11 * HPTE))).toEqual(Buffer.from(hpte(10, 77)));
    expect(h.subarray(11 * HPTE, 12 * HPTE).every((b) => b === 0)).toBe(true);
    expect(Buffer.from(h.subarray(12 * HPTE, 13 * HPTE))).not.toEqual(Buffer.from(hpte(12, 78)));
    r.dispose();
    s.dispose();
  });

  it("block bulk pass: PROGRESS records as QEMU writes them (0, 12, ... 87 for 8 MiB, 100 in the END), then only dirty chunks", () => {
    const g = rig({ disks: [{ size: 8 * MiB, where: "host" }], engine: { bandwidth: 1e12 } });
    const s = g.src;
    s.setup();
    s.iterate();
    g.disks[0]!.bytes()[7 * MiB] ^= 1;
    const p1 = s.sync();
    const blk = p1.sections.find((x) => x.idstr === "block")!;
    expect(blk).toMatchObject({ kind: "block", chunks: 8, zeroChunks: 0, progressRecords: 8, progress: 87, passes: 1, dirtied: 1 });
    s.iterate();
    const p2 = s.sync();
    expect(p2.sections.find((x) => x.idstr === "block")).toMatchObject({ chunks: 1, progressRecords: 0, progress: 87 });
    const final = s.complete();
    expect(final.sections.find((x) => x.idstr === "block")).toMatchObject({ chunks: 0, progressRecords: 1, progress: 100 });
    const bytes = g.bytes();
    const r = decodeBytes(bytes, {});
    expect(blockOf(r)!.progress).toEqual([0, 12, 25, 37, 50, 62, 75, 87, 100]);
    // the second PART carries exactly chunk 7 (sector 14336)
    const parts = r.sections.filter((x) => x.idstr === "block" && x.type === "part");
    const recs = recordsAt<BlockRecord>(liveRecords(bytes), parts[1]!.offset);
    expect(recs.map((x) => [x.flags, x.value])).toEqual([
      [1, 14336n],
      [2, 0n],
    ]);
    r.dispose();
    s.dispose();
  });

  it("two devices: the bulk pass goes device by device; the PROGRESS percentage counts the sectors of both", () => {
    const g = rig({
      disks: [
        { size: 2 * MiB, where: "host" },
        { size: 2 * MiB, where: "host" },
      ],
      engine: { bandwidth: 1e12 },
    });
    g.src.setup();
    g.src.iterate();
    g.src.sync();
    g.src.complete();
    const bytes = g.bytes();
    const r = decodeBytes(bytes, {});
    const part = r.sections.find((x) => x.idstr === "block" && x.type === "part")!;
    const recs = recordsAt<BlockRecord>(liveRecords(bytes), part.offset);
    expect(recs.map((x) => (x.flags === 4 ? `p${x.value}` : x.flags === 2 ? "eos" : `${new TextDecoder().decode(x.name)}@${x.value}`))).toEqual([
      "p0",
      "drive0@0",
      "p25",
      "drive0@2048",
      "p50",
      "drive1@0",
      "p75",
      "drive1@2048",
      "eos",
    ]);
    r.dispose();
    g.src.dispose();
  });

  it.each([true, false])("zero chunks as ZERO_BLOCK records only with zeroBlocks (%s); the destination is the same", (zeroBlocks) => {
    const g = rig({ disks: [{ size: 4 * MiB, where: "k" }], backend: "wasm-scalar", engine: { zeroBlocks, bandwidth: 1e12 } });
    const s = g.src;
    s.setup();
    s.iterate();
    g.disks[0]!.bytes().fill(0, 2 * MiB, 3 * MiB); // chunk 2 becomes all zero
    s.sync();
    s.iterate();
    const p = s.sync();
    s.complete();
    const r = checkDestination(g);
    const dev = blockOf(r)!.devices[0]!;
    // chunk 1 in the bulk pass, chunk 2 when re-sent
    expect(dev.zeroChunks).toBe(zeroBlocks ? 2 : 0);
    expect(dev.dataChunks).toBe(zeroBlocks ? 3 : 5);
    expect(p.sections.find((x) => x.idstr === "block")).toMatchObject(zeroBlocks ? { chunks: 0, zeroChunks: 1 } : { chunks: 1, zeroChunks: 0 });
    r.dispose();
    s.dispose();
  });

  it("a device that is not a whole number of MiB: the last chunk is padded with zeros", () => {
    const g = rig({ disks: [{ size: 1536 * 1024 + 512, where: "host" }] });
    g.src.run();
    const r = checkDestination(g);
    expect(blockOf(r)!.devices[0]!.end).toBe(2 * MiB);
    r.dispose();
    g.src.dispose();
  });

  it("htab: the first pass sends runs of valid entries only (n_invalid 0, at most 65535), later passes [valid][invalid] runs", () => {
    // 2^21 bytes = 131072 entries, all valid: the first pass needs two 65535-entry chunks and one of 2
    const k = createKernels({ backend: "js" });
    const ram = k.alloc(16 * PS, 4096);
    k.u8.fill(0, ram, ram + 16 * PS);
    const t = new Uint8Array(2 ** 21);
    for (let i = 0; i < t.length / HPTE; i++) t.set(hpte(i, 3), i * HPTE);
    const chunks: Uint8Array[] = [];
    const src = new MigrationSource(
      {
        kernels: k,
        blocks: [{ name: "pc.ram", ptr: ram, length: 16 * PS }],
        bandwidth: 1e12,
        downtimeTarget: 0,
        maxRounds: 5,
        htab: { hpt: t },
        ramSectionId: 2,
        machine: "pseries-7.2",
      },
      (c) => chunks.push(c.slice()),
    );
    src.setup();
    src.iterate();
    // invalidate 100..199, rewrite 150 (valid again), clear V of 300
    t.fill(0, 100 * HPTE, 200 * HPTE);
    t.set(hpte(150, 9), 150 * HPTE);
    t[300 * HPTE + 7]! &= ~1;
    src.sync();
    src.iterate();
    src.sync();
    src.complete();
    const bytes = Buffer.concat(chunks);
    const r = decodeBytes(bytes, { materialize: { htab: true } });
    const parts = r.sections.filter((x) => x.idstr === "spapr/htab" && x.type !== "full");
    expect(parts.map((x) => x.type)).toEqual(["start", "part", "part", "end"]);
    const all = liveRecords(bytes);
    const items = (i: number) => recordsAt<HtabItem>(all, parts[i]!.offset);
    expect(items(0)).toEqual([{ kind: "header", value: 21 }]);
    const first = items(1).filter((x) => x.kind === "chunk");
    expect(first.map((x) => x.kind === "chunk" && [x.index, x.nValid, x.nInvalid])).toEqual([
      [0, 65535, 0],
      [65535, 65535, 0],
      [131070, 2, 0],
    ]);
    const later = items(2).filter((x) => x.kind === "chunk");
    expect(later.map((x) => x.kind === "chunk" && [x.index, x.nValid, x.nInvalid])).toEqual([
      [100, 0, 50],
      [150, 1, 49],
      [300, 0, 1],
    ]);
    expect(items(3)).toEqual([{ kind: "header", value: 0 }, { kind: "end" }]);
    expect(Buffer.from(htabOf(r)!.hpt!).equals(Buffer.from(expectedHpt(t)))).toBe(true);
    r.dispose();
    src.dispose();
  });

  it("htab: entries that turn invalid before the first pass reaches them are skipped; behind it they are invalidated", () => {
    // htab before ram here, so the budget goes to it
    const g = rig({ htabShift: 18, htabSectionId: 1, engine: { bandwidth: 1e12, dirtyLog: () => undefined } });
    const t = g.hpt!();
    const n = t.length / HPTE;
    for (let i = 0; i < n; i++) t.set(hpte(i, 1), i * HPTE);
    const s = g.src;
    s.setup();
    // a PART of exactly 1000 entries (framing 10, header + end marker 12, one chunk header 8): the first pass stops there
    s.iterate(10 + 12 + 8 + 1000 * HPTE);
    const p = s.sync();
    const h = p.sections.find((x) => x.idstr === "spapr/htab")!;
    expect(h).toMatchObject({ kind: "htab", passes: 0 });
    if (h.kind !== "htab") throw new Error("kind");
    const sent = h.valid;
    expect(sent).toBe(1000);
    expect(p.sections.map((x) => [x.idstr, x.sections])).toEqual([
      ["spapr/htab", 1],
      ["ram", 0],
    ]);
    t.fill(0, 10 * HPTE, 11 * HPTE); // behind the cursor
    t.fill(0, 5000 * HPTE, 5001 * HPTE); // ahead of it
    s.forceSwitch();
    const final = s.complete();
    expect(final.sections.find((x) => x.idstr === "spapr/htab")).toMatchObject({ valid: n - sent - 1, invalid: 1 });
    const r = checkDestination(g);
    r.dispose();
    s.dispose();
  });

  it("no HPT (radix guest): every spapr/htab section carries 0xFFFFFFFF", () => {
    const g = rig({ noHpt: true });
    g.src.run();
    const bytes = g.bytes();
    const r = decodeBytes(bytes, {});
    const h = htabOf(r)!;
    expect(h.shift).toBeUndefined();
    expect(h.headers.every((x) => x === 0xffffffff)).toBe(true);
    expect(h.headers.length).toBe(h.sections);
    r.dispose();
    g.src.dispose();
  });
});

describe("MigrationSource rounds with several sections", () => {
  it("the round's budget caps all sections together (at most one record over); a section that still has work ends the round", () => {
    const g = rig({
      disks: [{ size: 5 * MiB + 512 * 7, where: "host" }],
      htabShift: 18,
      ramPages: 256,
      seed: 5,
      engine: { bandwidth: 6 * MiB, roundTime: 0.25, maxRounds: 30 },
    });
    const rnd = new SeededRandom(5);
    const rounds: RoundProgress[] = [];
    const out = g.src.run(() => mutate(g, rnd, 6));
    rounds.push(...out.rounds);
    const maxRecord = 8 + 8 + 1 + "drive0".length + MiB; // a PROGRESS record and a data chunk
    for (const p of rounds) {
      expect(p.budget).toBe(1.5 * MiB);
      expect(p.bytes).toBeLessThanOrEqual(p.budget + maxRecord);
      const order = p.sections.map((x) => x.idstr);
      expect(order).toEqual(["block", "ram", "spapr/htab"]);
      expect(p.bytes).toBe(p.sections.reduce((a, x) => a + x.bytes, 0));
      // a later section got a PART only when every earlier one had nothing pending after its own
      const got = p.sections.map((x) => x.sections > 0);
      for (let i = 1; i < got.length; i++) if (got[i]) expect(got[i - 1]).toBe(true);
    }
    // the bulk pass over the disk takes the first rounds whole: ram and htab wait
    expect(rounds[0]!.sections.map((x) => x.sections)).toEqual([1, 0, 0]);
    expect(rounds.some((p) => p.sections[2]!.sections > 0)).toBe(true);
    const r = checkDestination(g);
    r.dispose();
    g.src.dispose();
  });

  it("iterate(budget) overrides the round's budget; several iterate() calls before sync() make one round", () => {
    const g = rig({ disks: [{ size: 4 * MiB, where: "host" }], engine: { bandwidth: 10 * MiB } });
    const s = g.src;
    s.setup();
    s.iterate(100);
    s.iterate(100);
    const p = s.sync(0.5);
    expect(p.budget).toBe(200);
    // each call sends at least one chunk (at most one record over the budget)
    expect(p.sections[0]).toMatchObject({ idstr: "block", chunks: 2, sections: 2 });
    expect(p.bytes).toBe(p.sections.reduce((a, x) => a + x.bytes, 0));
    g.disks[0]!.bytes()[0] ^= 1;
    s.iterate(MiB / 2);
    const q = s.sync(0.25);
    expect(q.sections[0]!.dirtied).toBe(1);
    expect(q.sections[0]!.dirtyRate).toBe(4);
    expect(q.dirtyBytesRate).toBe((q.dirtied * PS + MiB) / 0.25);
    expect(() => s.sync()).toThrow(VmstreamError);
    expect(() => s.iterate(0)).toThrow(VmstreamError);
    s.dispose();
  });

  it("convergence counts block and htab pending bytes; a disk the host keeps writing stops at maxRounds", () => {
    // RAM alone would converge after its first pass; the disk keeps one chunk dirty every round
    const mk = (keepWriting: boolean) => {
      const g = rig({
        disks: [{ size: 4 * MiB, where: "host" }],
        htabShift: 18,
        engine: { bandwidth: 64 * MiB, roundTime: 0.1, downtimeTarget: 0.005, maxRounds: 8 },
      });
      let i = 0;
      const out = g.src.run(() => {
        if (keepWriting) g.disks[0]!.bytes()[(i++ % 4) * MiB] ^= 1;
      });
      return { g, out };
    };
    const a = mk(false);
    expect(a.out.reason).toBe("converged");
    const conv = a.out.rounds[a.out.rounds.length - 1]!;
    expect(conv.pendingBytes).toBe(conv.sections.reduce((x, s) => x + s.pendingBytes, 0));
    expect(conv.expectedDowntime).toBeLessThanOrEqual(0.005);
    checkDestination(a.g).dispose();
    a.g.src.dispose();

    const b = mk(true);
    expect(b.out.reason).toBe("max-rounds");
    expect(b.out.rounds).toHaveLength(8);
    for (const p of b.out.rounds.slice(2)) {
      const blk = p.sections.find((x) => x.idstr === "block")! as SectionProgress;
      expect(blk.dirtyUnits).toBeGreaterThanOrEqual(1);
      expect(blk.pendingBytes).toBe(blk.dirtyUnits * (8 + 1 + "drive0".length + MiB));
      expect(p.expectedDowntime).toBeGreaterThan(0.005);
      // without the disk the round would have converged
      expect((p.pendingBytes - blk.pendingBytes) / (64 * MiB)).toBeLessThanOrEqual(0.005);
    }
    checkDestination(b.g).dispose();
    b.g.src.dispose();
  });

  it("is deterministic", () => {
    const once = () => {
      const g = rig({ disks: [{ size: 3 * MiB, where: "host" }], htabShift: 18, seed: 11 });
      const rnd = new SeededRandom(3);
      g.src.setup();
      for (let i = 0; i < 5; i++) {
        g.src.iterate();
        mutate(g, rnd, 8);
        g.src.sync();
      }
      g.src.complete();
      g.src.dispose();
      return { bytes: g.bytes(), rounds: g.src.rounds };
    };
    const a = once();
    const b = once();
    expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes))).toBe(true);
    expect(a.rounds).toEqual(b.rounds);
  });

  it("property: any interleaving of steps and changes ends with the destination equal to the source", () => {
    fc.assert(
      fc.property(
        fc.record({
          seed: fc.integer({ min: 1, max: 1 << 30 }),
          steps: fc.array(fc.tuple(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 64, max: 3 * MiB })), { minLength: 1, maxLength: 8 }),
          logs: fc.boolean(),
          where: fc.constantFrom("host" as const, "k" as const),
          zeroBlocks: fc.boolean(),
          diskSize: fc.integer({ min: 1, max: 5 * 2048 }).map((s) => s * 512),
        }),
        ({ seed, steps, logs, where, zeroBlocks, diskSize }) => {
          const rnd = new SeededRandom(seed);
          // with logs, the host reports every change it makes (the log is built by `mutate` through a scan here)
          const diskShadow = new Uint8Array(diskSize);
          let g: Rig;
          const diskLog = () => {
            const d = g.disks[0]!.bytes();
            const chunks = Math.ceil(diskSize / MiB);
            const l = new Uint8Array(Math.ceil(chunks / 8));
            for (let c = 0; c < chunks; c++) {
              const a = d.subarray(c * MiB, Math.min(diskSize, (c + 1) * MiB));
              const b = diskShadow.subarray(c * MiB, Math.min(diskSize, (c + 1) * MiB));
              if (!Buffer.from(a).equals(Buffer.from(b))) l[c >> 3]! |= 1 << (c & 7);
            }
            diskShadow.set(d);
            return l;
          };
          g = rig({
            seed,
            disks: [{ size: diskSize, where, ...(logs ? { log: diskLog } : {}) }],
            htabShift: 18,
            htabWhere: where,
            engine: { zeroBlocks, bandwidth: 4 * MiB },
          });
          if (logs) diskShadow.set(g.disks[0]!.bytes());
          const s = g.src;
          s.setup();
          for (const [n, budget] of steps) {
            mutate(g, rnd, n);
            s.iterate(budget);
            mutate(g, rnd, n);
            s.sync();
          }
          mutate(g, rnd, 4);
          s.complete();
          const r = checkDestination(g);
          r.dispose();
          s.dispose();
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe("MigrationSource options", () => {
  const k = createKernels({ backend: "js" });
  const ram = k.alloc(4 * PS, 4096);
  const base: MigrationSourceOptions = { kernels: k, blocks: [{ name: "pc.ram", ptr: ram, length: 4 * PS }], bandwidth: MiB, downtimeTarget: 0, maxRounds: 2 };
  const make = (o: Partial<MigrationSourceOptions>) => new MigrationSource({ ...base, ...o }, () => {});
  const code = (f: () => unknown): string => thrownBy(f).code;

  it("rejects bad devices, tables and section ids with a VmstreamError", () => {
    expect(code(() => make({ blockDevices: [{ name: "d", data: new Uint8Array(1000) }] }))).toBe("RANGE");
    expect(code(() => make({ blockDevices: [{ name: "", data: new Uint8Array(512) }] }))).toBe("RANGE");
    expect(code(() => make({ blockDevices: [{ name: "x".repeat(256), data: new Uint8Array(512) }] }))).toBe("RANGE");
    expect(
      code(() =>
        make({
          blockDevices: [
            { name: "d", data: new Uint8Array(512) },
            { name: "d", data: new Uint8Array(512) },
          ],
        }),
      ),
    ).toBe("RANGE");
    expect(code(() => make({ blockDevices: [{ name: "d", data: { ptr: k.u8.length - 512, length: 4096 } }] }))).toBe("RANGE");
    expect(code(() => make({ htab: { hpt: new Uint8Array(2 ** 17) } }))).toBe("RANGE");
    expect(code(() => make({ htab: { hpt: new Uint8Array(3 * 2 ** 18) } }))).toBe("RANGE");
    expect(code(() => make({ ramSectionId: 0 }))).toBe("RANGE");
    expect(code(() => make({ htab: { hpt: new Uint8Array(2 ** 18), sectionId: 2 } }))).toBe("RANGE");
    expect(code(() => make({ blockDevices: [{ name: "d", data: new Uint8Array(512) }], blockSectionId: 2 }))).toBe("RANGE");
  });

  it("numbers sections: block 1, ram 2, htab after ram, devices after all (or as given)", () => {
    const ids = (o: Partial<MigrationSourceOptions>) => {
      const s = make(o);
      const r = s.sections.map((x) => `${x.sectionId}:${x.idstr}`);
      s.dispose();
      return r;
    };
    const disk = { name: "d", data: new Uint8Array(512) };
    const hpt = new Uint8Array(2 ** 18);
    expect(ids({})).toEqual(["2:ram"]);
    expect(ids({ blockDevices: [disk], htab: { hpt } })).toEqual(["1:block", "2:ram", "3:spapr/htab"]);
    expect(ids({ ramSectionId: 1, blockDevices: [disk] })).toEqual(["1:ram", "2:block"]);
    expect(ids({ ramSectionId: 2, htab: { hpt, sectionId: 564 } })).toEqual(["2:ram", "564:spapr/htab"]);
    expect(ids({ ramSectionId: 9, blockDevices: [disk], blockSectionId: 12 })).toEqual(["9:ram", "12:block"]);
  });
});

describe("simulate with a disk", () => {
  it.each([false, true])("the guest writes RAM and disk; the destination RAM and disk are verified (host logs: %s)", (dirtyLog) => {
    const o = {
      ramMiB: 8,
      dirtyRate: 2000,
      bandwidth: 64 * MiB,
      downtimeTarget: 0.005,
      maxRounds: 20,
      seed: 4,
      diskMiB: 12,
      diskWriteRate: 30,
      zeroBlocks: true,
      dirtyLog,
      verify: true,
    };
    const r = simulate(o);
    expect(r.verified).toBe(true);
    expect(r.disk).toMatchObject({ bytes: 12 * MiB, verified: true });
    expect(r.disk!.writes).toBeGreaterThan(0);
    // every chunk went out once in the bulk pass, some again after the guest wrote them
    expect(r.disk!.dataChunks! + r.disk!.zeroChunks!).toBeGreaterThan(12);
    expect(r.disk!.zeroChunks!).toBeGreaterThan(0);
    expect(r.rounds[0]!.sections.map((x) => x.idstr)).toEqual(["block", "ram"]);
    expect(r.rounds.every((p) => p.sections[0]!.dirtySource === (dirtyLog ? "log" : "scan"))).toBe(true);
    const again = simulate(o);
    expect(again.rounds).toEqual(r.rounds);
  });
});

describe("vmstream simulate --disk-mib", () => {
  const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
  const run = (args: string[]) => {
    const r = spawnSync(process.execPath, [MAIN, ...args], { maxBuffer: 16 << 20 });
    return { status: r.status, stdout: r.stdout.toString("utf8"), stderr: r.stderr.toString("utf8") };
  };

  it("adds the disk columns and checks the destination disk", () => {
    const r = run([
      "simulate",
      "--ram-mib",
      "8",
      "--dirty-rate",
      "2000",
      "--bandwidth",
      "64",
      "--downtime-ms",
      "5",
      "--disk-mib",
      "12",
      "--disk-write-rate",
      "30",
      "--zero-blocks",
      "--csv",
    ]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("round,phase,time_s,bytes,zero,normal,xbzrle,unchanged,dirty_pages,dirty_rate,expected_downtime_ms,disk_chunks,disk_zero,disk_dirty");
    const rows = lines.slice(1, -1).map((l) => l.split(","));
    for (const x of rows) expect(x).toHaveLength(14);
    const sent = rows.reduce((a, x) => a + Number(x[11]) + Number(x[12]), 0);
    expect(sent).toBeGreaterThanOrEqual(12);
    expect(rows.some((x) => Number(x[12]) > 0)).toBe(true);
    expect(lines[lines.length - 1]).toMatch(/^# converged after \d+ rounds: .*; destination RAM and disk verified$/);
  });

  it("rejects disk options without --disk-mib", () => {
    const r = run(["simulate", "--zero-blocks"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/need --disk-mib/);
  });
});
