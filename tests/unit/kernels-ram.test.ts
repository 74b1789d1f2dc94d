// ramEncode / ramDecode: every backend on the same inputs (identical bytes and states), checked
// against a small reference writer/parser written here from wire-format §5 / §6.
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createKernels, DEC, DEC_STATUS, ENC, type Kernels, RAM_ENCODE, RAM_FLAG, SLOT_INSERT } from "../../src/kernels/index.js";
import { concat, fromHex } from "../helpers/bytes.js";
import { SeededRandom } from "../helpers/random.js";

const backends = ["wasm-simd", "wasm-scalar", "js"] as const;
const K: Kernels[] = backends.map((backend) => createKernels({ backend }));
const P = 4096;
const enc = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// Deterministic data

function randomBytes(n: number, seed: number): Uint8Array {
  return new SeededRandom(seed).bytes(n);
}

/**
 * Byte arrays replaced by length + SHA-1, recursively: toEqual on large typed arrays is slow, and
 * a digest mismatch still says which field differs.
 */
function fp(v: unknown): unknown {
  if (v instanceof Uint8Array) return `${v.length}:${createHash("sha1").update(v).digest("hex")}`;
  if (Array.isArray(v)) return v.map(fp);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fp(x)]));
  return v;
}
function expectSame(a: unknown, b: unknown, msg?: string): void {
  expect(fp(a), msg).toEqual(fp(b));
}

// ---------------------------------------------------------------------------------------------
// Reference writer (§5.1) and XBZRLE (§6)

function be64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v);
  return b;
}

/** One record: header (offset | flags), optional name, body. */
function rec(offset: bigint | number, flags: number, name: Uint8Array | null, body: ArrayLike<number> = []): Uint8Array {
  const hdr = be64(BigInt(offset) | BigInt(flags | (name ? 0 : RAM_FLAG.CONTINUE)));
  return name ? concat([hdr, [name.length], name, body]) : concat([hdr, body]);
}
const zeroBody = [0];
function xbzBody(data: ArrayLike<number>, encoding = 1, len = data.length): Uint8Array {
  return concat([[encoding, len >> 8, len & 0xff], data]);
}
const EOS = be64(0x10n);

function uleb(out: number[], v: number): void {
  if (v < 0x80) out.push(v);
  else out.push((v & 0x7f) | 0x80, v >> 7);
}

/** §6.2 encoder, byte by byte: the data, 0 (unchanged) or -1 (overflow). */
function refXbzrleEncode(old: Uint8Array, neu: Uint8Array, dlen: number): number[] | 0 | -1 {
  const slen = old.length;
  const out: number[] = [];
  let i = 0;
  while (i < slen) {
    if (out.length + 2 > dlen) return -1;
    let z = 0;
    while (i + z < slen && old[i + z] === neu[i + z]) z++;
    i += z;
    if (z === slen) return 0;
    if (i === slen) return out;
    uleb(out, z);
    if (out.length + 2 > dlen) return -1;
    let n = 0;
    while (i + n < slen && old[i + n] !== neu[i + n]) n++;
    uleb(out, n);
    if (out.length + n > dlen) return -1;
    for (let k = 0; k < n; k++) out.push(neu[i + k]!);
    i += n;
  }
  return out;
}

function refUleb(s: Uint8Array, i: number): [number, number] | null {
  const b0 = s[i]!;
  if (!(b0 & 0x80)) return [b0, 1];
  const b1 = s[i + 1]!;
  if (b1 & 0x80) return null;
  return [(b0 & 0x7f) | (b1 << 7), 2];
}

/** §6.3 decoder onto `page` (in place only when valid); false on malformed data. */
function refXbzrleDecode(s: Uint8Array, page: Uint8Array | null): boolean {
  const slen = s.length;
  const dlen = P;
  const runs: [number, number, number][] = [];
  let i = 0;
  let d = 0;
  while (i < slen) {
    if (slen - i < 2) return false;
    let u = refUleb(s, i);
    if (!u || (i && !u[0])) return false;
    i += u[1];
    d += u[0];
    if (d > dlen) return false;
    if (slen - i < 2) return false;
    u = refUleb(s, i);
    if (!u?.[0]) return false;
    i += u[1];
    const n = u[0];
    if (d + n > dlen || i + n > slen) return false;
    runs.push([d, i, n]);
    d += n;
    i += n;
  }
  if (page) for (const [dd, ii, n] of runs) page.set(s.subarray(ii, ii + n), dd);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Reference encoder (the contract's per-page rules)

interface EncModel {
  bytes: Uint8Array;
  counts: { zero: number; normal: number; xbzrle: number; unchanged: number; overflow: number; xbzrleBytes: number };
  cont: boolean;
}

function refEncode(
  block: Uint8Array,
  pages: number[],
  name: Uint8Array,
  options: number,
  slots: Uint32Array | null,
  cache: Uint8Array | null,
  pageSize = P,
): EncModel {
  const parts: Uint8Array[] = [];
  const c = { zero: 0, normal: 0, xbzrle: 0, unchanged: 0, overflow: 0, xbzrleBytes: 0 };
  let cont = (options & RAM_ENCODE.CONTINUE) !== 0;
  const put = (off: number, flags: number, body: ArrayLike<number>) => {
    parts.push(rec(off, flags, cont ? null : name, body));
    cont = true;
  };
  for (const p of pages) {
    const page = block.subarray(p * pageSize, (p + 1) * pageSize);
    const off = p * pageSize;
    const s = slots ? slots[p]! : 0;
    const k = (s & ~SLOT_INSERT) >>> 0;
    const slot = k ? cache!.subarray((k - 1) * pageSize, k * pageSize) : null;
    if (options & RAM_ENCODE.ZERO_DETECT && page.every((b) => b === 0)) {
      put(off, RAM_FLAG.ZERO, zeroBody);
      c.zero++;
      if (slot) slot.fill(0);
    } else if (slot && !(s & SLOT_INSERT)) {
      const x = refXbzrleEncode(slot, page, pageSize);
      if (x === 0) {
        c.unchanged++;
      } else {
        if (x === -1) {
          put(off, RAM_FLAG.PAGE, page);
          c.overflow++;
          c.normal++;
        } else {
          put(off, RAM_FLAG.XBZRLE, xbzBody(x));
          c.xbzrle++;
          c.xbzrleBytes += x.length;
        }
        slot.set(page);
      }
    } else {
      put(off, RAM_FLAG.PAGE, page);
      c.normal++;
      if (slot) slot.set(page);
    }
  }
  return { bytes: concat(parts), counts: c, cont };
}

// ---------------------------------------------------------------------------------------------
// Reference decoder (same check order as the contract: header, EOS, flags, block, offset, body)

interface RefBlock {
  name: Uint8Array;
  data: Uint8Array | null; // null = not materialised
  len: bigint;
  counts: [number, number, number]; // zero, normal, xbzrle
}

interface DecResult {
  status: number;
  block: number;
  consumed: number;
  records: number;
  errAt: number;
  hdrHi: number;
  hdrLo: number;
}

function refDecode(s: Uint8Array, blocks: RefBlock[], block: number, pageSize = P): DecResult {
  let pos = 0;
  let records = 0;
  const done = (status: number, hdr = 0n, errAt = pos): DecResult => ({
    status,
    block,
    consumed: pos,
    records,
    errAt,
    hdrHi: Number(hdr >> 32n),
    hdrLo: Number(hdr & 0xffffffffn),
  });
  for (;;) {
    const rem = s.length - pos;
    if (rem < 8) return done(DEC_STATUS.NEED_MORE);
    const hdr = new DataView(s.buffer, s.byteOffset + pos, 8).getBigUint64(0);
    if (hdr === 0x10n) {
      pos += 8;
      records++;
      return done(DEC_STATUS.EOS, hdr, pos - 8);
    }
    const flags = Number(hdr & BigInt(pageSize - 1));
    const addr = hdr & ~BigInt(pageSize - 1);
    const kind = flags & ~RAM_FLAG.CONTINUE;
    if (kind !== RAM_FLAG.ZERO && kind !== RAM_FLAG.PAGE && kind !== RAM_FLAG.XBZRLE) return done(DEC_STATUS.OTHER, hdr);
    let p = 8;
    let b: number;
    if (flags & RAM_FLAG.CONTINUE) {
      if (block < 0 || block >= blocks.length) return done(DEC_STATUS.ERR_NO_BLOCK, hdr);
      b = block;
    } else {
      if (rem < 9) return done(DEC_STATUS.NEED_MORE);
      const n = s[pos + 8]!;
      if (rem < 9 + n) return done(DEC_STATUS.NEED_MORE);
      const name = s.subarray(pos + 9, pos + 9 + n);
      b = blocks.findIndex((x) => x.name.length === n && x.name.every((v, i) => v === name[i]));
      if (b < 0) return done(DEC_STATUS.ERR_UNKNOWN_BLOCK, hdr);
      p = 9 + n;
    }
    const blk = blocks[b]!;
    if (addr + BigInt(pageSize) > blk.len) return done(DEC_STATUS.ERR_OFFSET, hdr);
    const off = Number(addr);
    if (kind === RAM_FLAG.ZERO) {
      if (rem - p < 1) return done(DEC_STATUS.NEED_MORE);
      if (blk.data) blk.data.fill(s[pos + p]!, off, off + pageSize);
      p += 1;
      blk.counts[0]++;
    } else if (kind === RAM_FLAG.PAGE) {
      if (rem - p < pageSize) return done(DEC_STATUS.NEED_MORE);
      if (blk.data) blk.data.set(s.subarray(pos + p, pos + p + pageSize), off);
      p += pageSize;
      blk.counts[1]++;
    } else {
      if (rem - p < 3) return done(DEC_STATUS.NEED_MORE);
      if (s[pos + p] !== 1) return done(DEC_STATUS.ERR_XBZRLE_ENCODING, hdr);
      const len = (s[pos + p + 1]! << 8) | s[pos + p + 2]!;
      if (len > pageSize) return done(DEC_STATUS.ERR_XBZRLE_LENGTH, hdr);
      if (rem - p - 3 < len) return done(DEC_STATUS.NEED_MORE);
      const data = s.subarray(pos + p + 3, pos + p + 3 + len);
      if (!refXbzrleDecode(data, blk.data ? blk.data.subarray(off, off + pageSize) : null)) return done(DEC_STATUS.ERR_XBZRLE_DATA, hdr);
      p += 3 + len;
      blk.counts[2]++;
    }
    block = b;
    pos += p;
    records++;
  }
}

// ---------------------------------------------------------------------------------------------
// Memory harness

/** One allocation per test, carved up in order (same layout on every backend). */
class Arena {
  readonly base: number;
  private top: number;
  constructor(
    readonly k: Kernels,
    readonly size: number,
  ) {
    this.base = k.alloc(size);
    this.top = this.base;
    k.u8.fill(0, this.base, this.base + size);
  }
  take(n: number, align = 64): number {
    this.top = Math.ceil(this.top / align) * align;
    const p = this.top;
    this.top += n;
    if (this.top > this.base + this.size) throw new Error("arena full");
    return p;
  }
  put(bytes: ArrayLike<number>, align = 64): number {
    const p = this.take(bytes.length, align);
    this.k.u8.set(bytes, p);
    return p;
  }
  get(p: number, n: number): Uint8Array {
    return this.k.u8.slice(p, p + n);
  }
  u32(p: number, n: number): number[] {
    return Array.from(new Uint32Array(this.k.memory.buffer, p, n));
  }
  free(): void {
    this.k.free(this.base);
  }
}

function withArena<T>(k: Kernels, size: number, fn: (a: Arena) => T): T {
  const a = new Arena(k, size);
  try {
    return fn(a);
  } finally {
    a.free();
  }
}

interface EncCall {
  block: Uint8Array;
  pageSize?: number;
  first: number;
  end: number;
  sendMap?: Uint8Array; // bitmap over the whole block (copied in)
  slots?: Uint32Array;
  cache?: Uint8Array; // initial cache contents
  name: Uint8Array;
  outCap: number;
  options: number;
}

interface EncOut {
  bytes: Uint8Array;
  ret: number;
  state: number[];
  sendMap: Uint8Array | null;
  cache: Uint8Array | null;
  block: Uint8Array;
}

/** Runs ramEncode once; `resume` repeats it on a fresh window until NEXT_PAGE == end. */
function runEncode(k: Kernels, c: EncCall, resume = false): EncOut & { calls: number } {
  const ps = c.pageSize ?? P;
  return withArena(k, c.block.length + (c.cache?.length ?? 0) + c.outCap + (c.slots?.length ?? 0) * 4 + 65536 * 2, (a) => {
    const blockPtr = a.put(c.block, 4096);
    const mapPtr = c.sendMap ? a.put(c.sendMap, 1) : 0; // unaligned on purpose
    const slotPtr = c.slots ? a.put(new Uint8Array(c.slots.buffer, c.slots.byteOffset, c.slots.byteLength), 4) : 0;
    const cachePtr = c.cache ? a.put(c.cache, 4096) : 0;
    const namePtr = a.put(c.name, 1);
    const state = a.take(ENC.SIZE * 4, 4);
    const outPtr = a.take(c.outCap + 64, 4096);
    // Guard bytes after the window.
    a.k.u8.fill(0xcd, outPtr + c.outCap, outPtr + c.outCap + 64);
    const chunks: Uint8Array[] = [];
    let first = c.first;
    let options = c.options;
    let calls = 0;
    let ret = 0;
    let st: number[] = [];
    for (;;) {
      a.k.u8.fill(0xee, outPtr, outPtr + c.outCap);
      ret = k.ramEncode(blockPtr, ps, first, c.end, mapPtr, slotPtr, cachePtr, namePtr, c.name.length, outPtr, c.outCap, options, state);
      calls++;
      st = a.u32(state, ENC.SIZE);
      expect(st[ENC.BYTES]).toBe(ret);
      expect(a.get(outPtr + c.outCap, 64).every((v) => v === 0xcd)).toBe(true);
      chunks.push(a.get(outPtr, ret));
      if (!resume || st[ENC.NEXT_PAGE] === c.end) break;
      if (calls > 100000) throw new Error("no progress");
      first = st[ENC.NEXT_PAGE]!;
      options = (options & ~RAM_ENCODE.CONTINUE) | (st[ENC.CONTINUE] ? RAM_ENCODE.CONTINUE : 0);
    }
    return {
      bytes: concat(chunks),
      ret,
      state: st,
      sendMap: c.sendMap ? a.get(mapPtr, c.sendMap.length) : null,
      cache: c.cache ? a.get(cachePtr, c.cache.length) : null,
      block: a.get(blockPtr, c.block.length),
      calls,
    };
  });
}

/** Every backend gives the same result; returns it. */
function encodeAll(c: EncCall, resume = false) {
  const outs = K.map((k) => runEncode(k, c, resume));
  for (let i = 1; i < outs.length; i++) expectSame(outs[i], outs[0], backends[i]);
  return outs[0]!;
}

function pagesOf(c: EncCall): number[] {
  const out: number[] = [];
  for (let p = c.first; p < c.end; p++) if (!c.sendMap || c.sendMap[p >> 3]! & (1 << (p & 7))) out.push(p);
  return out;
}

function expectCounts(st: number[], m: EncModel): void {
  expect({
    zero: st[ENC.ZERO],
    normal: st[ENC.NORMAL],
    xbzrle: st[ENC.XBZRLE],
    unchanged: st[ENC.UNCHANGED],
    overflow: st[ENC.OVERFLOW],
    xbzrleBytes: st[ENC.XBZRLE_BYTES],
  }).toEqual(m.counts);
  expect(st[ENC.CONTINUE]).toBe(m.cont ? 1 : 0);
}

// Page builders
const zeroPage = () => new Uint8Array(P);
function nearZeroPage(seed: number): Uint8Array {
  const p = new Uint8Array(P);
  new DataView(p.buffer).setUint32(P - 64 + (seed % 15) * 4, (seed | 1) >>> 0);
  return p;
}
const randPage = (seed: number) => randomBytes(P, seed);
function blockOf(pages: Uint8Array[]): Uint8Array {
  return concat(pages);
}

// ---------------------------------------------------------------------------------------------
// Encoder

describe("ramEncode", () => {
  const pcram = enc.encode("pc.ram");

  it("known-answer bytes: ZERO named first, CONTINUE after, PAGE", () => {
    const r = randPage(1);
    const block = blockOf([zeroPage(), zeroPage(), r, zeroPage()]);
    const out = encodeAll({ block, first: 0, end: 4, name: pcram, outCap: 1 << 20, options: RAM_ENCODE.ZERO_DETECT });
    const expected = concat([
      fromHex("0000000000000002 06 70632e72616d 00"), // ZERO at 0, "pc.ram"
      fromHex("0000000000001022 00"), // ZERO at 0x1000, CONTINUE
      fromHex("0000000000002028"),
      r, // PAGE at 0x2000, CONTINUE
      fromHex("0000000000003022 00"),
    ]);
    expectSame(out.bytes, expected);
    expect(out.ret).toBe(expected.length);
    expect(out.state).toEqual([4, expected.length, 3, 1, 0, 0, 0, 1, 0]);
  });

  it("options CONTINUE: the first record continues the block; without ZERO_DETECT zero pages go as PAGE", () => {
    const block = blockOf([zeroPage(), randPage(2)]);
    const out = encodeAll({ block, first: 0, end: 2, name: pcram, outCap: 1 << 20, options: RAM_ENCODE.CONTINUE });
    expectSame(out.bytes, concat([fromHex("0000000000000028"), zeroPage(), fromHex("0000000000001028"), block.subarray(P)]));
    expect(out.state[ENC.NORMAL]).toBe(2);
    expect(out.state[ENC.CONTINUE]).toBe(1);
  });

  it("PAGE with a long name, and a zero-length name", () => {
    const name = enc.encode("/rom@etc/acpi/tables");
    const block = randPage(3);
    let out = encodeAll({ block, first: 0, end: 1, name, outCap: 1 << 16, options: 1 });
    expectSame(out.bytes, concat([fromHex("0000000000000008 14"), name, block]));
    out = encodeAll({ block, first: 0, end: 1, name: new Uint8Array(0), outCap: 1 << 16, options: 1 });
    expectSame(out.bytes, concat([fromHex("0000000000000008 00"), block]));
    const n255 = randomBytes(255, 9);
    out = encodeAll({ block, first: 0, end: 1, name: n255, outCap: 8 + 1 + 255 + 3 + P, options: 1 });
    expectSame(out.bytes, concat([fromHex("0000000000000008 ff"), n255, block]));
  });

  it("nothing to do: no record, CONTINUE state passes through", () => {
    const block = randPage(4);
    let out = encodeAll({ block, first: 1, end: 1, name: pcram, outCap: 1 << 16, options: 3 });
    expect(out.state).toEqual([1, 0, 0, 0, 0, 0, 0, 1, 0]);
    out = encodeAll({ block, first: 0, end: 1, name: pcram, outCap: 1 << 16, options: 1, sendMap: new Uint8Array(1) });
    expect(out.state).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it("XBZRLE known answer: zero slot vs a page whose last byte is 1 -> 01 0004 ff1f0101", () => {
    const page = zeroPage();
    page[P - 1] = 1;
    const block = blockOf([randPage(5), page]);
    const slots = new Uint32Array([0, 1]); // page 1 -> slot 0
    const out = encodeAll({ block, first: 0, end: 2, name: pcram, slots, cache: zeroPage(), outCap: 1 << 16, options: 1 });
    expectSame(out.bytes, concat([fromHex("0000000000000008 06 70632e72616d"), block.subarray(0, P), fromHex("0000000000001060 01 0004 ff1f0101")]));
    expect(out.state).toEqual([2, out.bytes.length, 0, 1, 1, 0, 0, 1, 4]);
    expectSame(out.cache, page); // the slot holds the page as sent
    // The first record of a call is named: XBZRLE header with a name.
    const out2 = encodeAll({ block, first: 1, end: 2, name: pcram, slots, cache: zeroPage(), outCap: 1 << 16, options: 1 });
    expectSame(out2.bytes, fromHex("0000000000001040 06 70632e72616d 01 0004 ff1f0101"));
  });

  it("slot map: none / XBZRLE / UNCHANGED / OVERFLOW / insert / zero page with slot and with insert", () => {
    const old = [randPage(10), randPage(11), randPage(12), randPage(13), randPage(14), randPage(15)];
    const changed = old[0]!.slice();
    changed[100] ^= 0xff;
    changed[2000] ^= 1;
    const overflow = old[2]!.slice();
    for (let i = 0; i < P; i += 2) overflow[i] ^= 0x55;
    const pages = [
      randPage(20), // 0: no slot -> PAGE
      changed, // 1: slot 1 (old[0]) -> XBZRLE
      old[1]!.slice(), // 2: slot 2 (old[1]) -> UNCHANGED
      overflow, // 3: slot 3 (old[2]) -> OVERFLOW
      randPage(21), // 4: insert into slot 4 -> PAGE + copy
      zeroPage(), // 5: slot 5 (old[4]) zero page -> ZERO, slot zeroed
      zeroPage(), // 6: insert slot 6 (old[5]) zero page -> ZERO, slot zeroed
      nearZeroPage(7), // 7: no slot
    ];
    const block = blockOf(pages);
    const slots = new Uint32Array([0, 1, 2, 3, 4 | SLOT_INSERT, 5, 6 | SLOT_INSERT, 0]);
    const cache = blockOf(old);
    for (const options of [1, 3, 0]) {
      const call: EncCall = { block, first: 0, end: 8, name: pcram, slots, cache, outCap: 1 << 20, options };
      const out = encodeAll(call);
      const refCache = cache.slice();
      const m = refEncode(block, pagesOf(call), pcram, options, slots, refCache);
      expectSame(out.bytes, m.bytes);
      expectCounts(out.state, m);
      expectSame(out.cache, refCache);
      expectSame(out.block, block);
      if (options & 1) {
        expect(m.counts).toEqual({ zero: 2, normal: 4, xbzrle: 1, unchanged: 1, overflow: 1, xbzrleBytes: m.counts.xbzrleBytes });
        // The slots now hold what the destination holds.
        for (let p = 1; p < 7; p++) expectSame(out.cache!.subarray((p - 1) * P, p * P), pages[p]);
      } else {
        // Zero pages with a slot go through XBZRLE (slot 5) or PAGE + insert (slot 6).
        expect(m.counts.zero).toBe(0);
      }
    }
  });

  it("send bitmap: only set pages in [first, end), their bits cleared, other bits kept", () => {
    const n = 150;
    const pages = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? zeroPage() : i % 3 === 1 ? nearZeroPage(i) : randPage(i)));
    const block = blockOf(pages);
    const map = randomBytes(Math.ceil(n / 8), 77);
    map[map.length - 1]! &= (1 << (n & 7)) - 1;
    for (const [first, end] of [
      [0, n],
      [5, 131],
      [64, 128],
      [63, 65],
      [130, 150],
      [149, 150],
    ] as const) {
      const call: EncCall = { block, first, end, sendMap: map, name: pcram, outCap: 1 << 22, options: 1 };
      const out = encodeAll(call);
      const m = refEncode(block, pagesOf(call), pcram, 1, null, null);
      expectSame(out.bytes, m.bytes);
      expectCounts(out.state, m);
      const want = map.slice();
      for (let p = first; p < end; p++) want[p >> 3]! &= ~(1 << (p & 7));
      expectSame(out.sendMap, want);
      expect(out.state[ENC.NEXT_PAGE]).toBe(end);
    }
  });

  it("a bitmap that ends at the very end of memory is not over-read", () => {
    for (const k of K) {
      const n = 13;
      const a = new Arena(k, n * P + 65536);
      try {
        const blockPtr = a.put(blockOf(Array.from({ length: n }, (_, i) => randPage(i + 100))), 4096);
        const out = a.take(65536 - 512, 4096);
        const name = a.put(pcram);
        const state = a.take(64);
        const end = k.memory.buffer.byteLength;
        const mapPtr = end - 2;
        k.u8[mapPtr] = 0xff;
        k.u8[mapPtr + 1] = 0xff;
        const ret = k.ramEncode(blockPtr, P, 0, n, mapPtr, 0, 0, name, 6, out, 4 * (P + 300), 1, state);
        const st = a.u32(state, ENC.SIZE);
        expect(st[ENC.NEXT_PAGE]).toBe(4);
        expect(st[ENC.NORMAL]).toBe(4);
        expect(ret).toBe(4 * (P + 8) + 7);
        expect([k.u8[mapPtr], k.u8[mapPtr + 1]]).toEqual([0xf0, 0xff]);
        k.ramEncode(blockPtr, P, 4, n, mapPtr, 0, 0, name, 6, out, 65000, 3, state);
        expect(a.u32(state, 1)).toEqual([n]);
        expect([k.u8[mapPtr], k.u8[mapPtr + 1]]).toEqual([0, 0xe0]);
      } finally {
        a.free();
      }
    }
  });

  it("window full: stops before a page when < 267 + pageSize bytes remain; the stopped page keeps its bit", () => {
    const block = blockOf([randPage(30), randPage(31), zeroPage(), randPage(32)]);
    const need = 8 + 1 + 255 + 3 + P;
    // Room for exactly one PAGE (named): 8 + 7 + 4096 written, then 267 + 4096 more needed.
    const cap = 15 + P + need - 1;
    const map = new Uint8Array([0x0f]);
    const out = encodeAll({ block, first: 0, end: 4, name: pcram, sendMap: map, outCap: cap, options: 1 });
    expect(out.state[ENC.NEXT_PAGE]).toBe(1);
    expect(out.ret).toBe(15 + P);
    expect(out.sendMap).toEqual(new Uint8Array([0x0e]));
    const out2 = encodeAll({ block, first: 0, end: 4, name: pcram, sendMap: map, outCap: cap + 1, options: 1 });
    expect(out2.state[ENC.NEXT_PAGE]).toBe(2);
    expect(out2.sendMap).toEqual(new Uint8Array([0x0c]));
    // A window smaller than one page's reserve: nothing written, nothing cleared.
    const out3 = encodeAll({ block, first: 1, end: 4, name: pcram, sendMap: map, outCap: need - 1, options: 3 });
    expect(out3.state).toEqual([1, 0, 0, 0, 0, 0, 0, 1, 0]);
    expect(out3.sendMap).toEqual(map);
  });

  it("resume with NEXT_PAGE and the CONTINUE state gives the bytes of one big call (fast-check)", () => {
    const kinds = fc.constantFrom("zero", "near", "rand", "same", "small");
    fc.assert(
      fc.property(
        fc.array(kinds, { minLength: 1, maxLength: 24 }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 6 }),
        fc.constantFrom(1024, 4096),
        fc.integer({ min: 0, max: 3 }),
        (ks, seed, useMap, useSlots, extra, ps, options) => {
          const r = new SeededRandom(seed + 1);
          const n = ks.length;
          const cache = new Uint8Array(n * ps);
          const slots = new Uint32Array(n);
          const pages = ks.map((kind, i) => {
            const old = randomBytes(ps, seed * 31 + i);
            cache.set(old, i * ps);
            const pg = kind === "zero" ? new Uint8Array(ps) : kind === "rand" ? randomBytes(ps, seed * 7 + i) : old.slice();
            if (kind === "near") {
              pg.fill(0);
              pg[ps - 3] = 9;
            }
            if (kind === "small") pg[r.u32() % ps]! ^= 0x10;
            const s = r.u32() % 3;
            slots[i] = s === 0 ? 0 : s === 1 ? i + 1 : (i + 1) | SLOT_INSERT;
            return pg;
          });
          const block = concat(pages);
          const sendMap = useMap ? randomBytes(Math.ceil(n / 8), seed + 5) : undefined;
          const first = r.u32() % n;
          const call: EncCall = {
            block,
            pageSize: ps,
            first,
            end: n,
            sendMap,
            name: enc.encode("blk"),
            options,
            slots: useSlots ? slots : undefined,
            cache: useSlots ? cache : undefined,
            outCap: 8 + 1 + 255 + 3 + ps + extra * 700,
          };
          const small = encodeAll(call, true);
          const big = encodeAll({ ...call, outCap: n * (ps + 300) + 300 });
          expectSame(small.bytes, big.bytes);
          expect(small.sendMap).toEqual(big.sendMap);
          expectSame(small.cache, big.cache);
          expect(small.state[ENC.CONTINUE]).toBe(big.state[ENC.CONTINUE]);
          const refCache = useSlots ? cache.slice() : null;
          const m = refEncode(block, pagesOf(call), call.name, options, useSlots ? slots : null, refCache, ps);
          expectSame(big.bytes, m.bytes);
          expectCounts(big.state, m);
          expectSame(big.cache, refCache);
        },
      ),
      { numRuns: 100 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Decoder

interface DecBlock {
  name: Uint8Array;
  pages: number; // used_length = pages * P (when lenHi/lenLo not given)
  materialised?: boolean;
  init?: Uint8Array; // initial contents
  lenHi?: number;
  lenLo?: number;
}

interface DecOut {
  status: number;
  state: number[];
  blocks: (Uint8Array | null)[];
  counts: number[][];
}

const GUARD = 4096;

/**
 * Runs ramDecode over the stream split into windows at `cuts` (the unconsumed tail of each window
 * is carried into the next), stopping at the first status other than NEED_MORE. Checks that no
 * byte outside the blocks' pages changed (sentinels around blocks, the input, the table names).
 */
function runDecode(k: Kernels, blocks: DecBlock[], stream: Uint8Array, cuts: number[] = [], startBlock = 0xffffffff, pageSize = P): DecOut {
  const total = blocks.reduce((s, b) => s + (b.materialised === false ? 0 : b.pages * pageSize + GUARD), GUARD) + stream.length * 2 + 65536;
  return withArena(k, total, (a) => {
    const sentinel = 0xa5;
    const guardPtrs: number[] = [];
    const g0 = a.take(GUARD, 4096);
    a.k.u8.fill(sentinel, g0, g0 + GUARD);
    guardPtrs.push(g0);
    const bases = blocks.map((b) => {
      if (b.materialised === false) return 0;
      const p = a.take(b.pages * pageSize, 4096);
      if (b.init) a.k.u8.set(b.init, p);
      const g = a.take(GUARD, 4096);
      a.k.u8.fill(sentinel, g, g + GUARD);
      guardPtrs.push(g);
      return p;
    });
    const names = blocks.map((b) => a.put(b.name, 1));
    const table = a.take(blocks.length * 32, 4);
    const tv = new Uint32Array(a.k.memory.buffer, table, blocks.length * 8);
    blocks.forEach((b, i) => {
      const len = b.lenLo !== undefined ? b.lenLo : b.pages * pageSize;
      tv.set([names[i]!, b.name.length, bases[i]!, len >>> 0, b.lenHi ?? 0, 0, 0, 0], i * 8);
    });
    const state = a.take(DEC.SIZE * 4, 4);
    const inPtr = a.take(stream.length + 16, 4096);
    const stateV = () => new Uint32Array(a.k.memory.buffer, state, DEC.SIZE);
    stateV()[DEC.BLOCK] = startBlock;
    const allCuts = [...cuts.filter((c) => c > 0 && c < stream.length).sort((x, y) => x - y), stream.length];
    let fed = 0; // stream bytes already handed over
    let tail = 0; // unconsumed bytes at inPtr
    let status: number = DEC_STATUS.NEED_MORE;
    let absConsumed = 0;
    let records = 0;
    const snapshot = stream.slice();
    for (const cut of allCuts) {
      a.k.u8.set(stream.subarray(fed, cut), inPtr + tail);
      const len = tail + cut - fed;
      fed = cut;
      status = k.ramDecode(inPtr, len, table, blocks.length, pageSize, state);
      const st = stateV();
      records += st[DEC.RECORDS]!;
      const consumed = st[DEC.CONSUMED]!;
      expect(consumed).toBeLessThanOrEqual(len);
      if (status !== DEC_STATUS.NEED_MORE) {
        st[DEC.CONSUMED] = absConsumed + consumed;
        st[DEC.ERR_AT] = absConsumed + st[DEC.ERR_AT]!;
        st[DEC.RECORDS] = records;
        break;
      }
      expect(st[DEC.ERR_AT]).toBe(consumed);
      absConsumed += consumed;
      a.k.u8.copyWithin(inPtr, inPtr + consumed, inPtr + len);
      tail = len - consumed;
      if (cut === stream.length) {
        st[DEC.CONSUMED] = absConsumed;
        st[DEC.ERR_AT] = absConsumed;
        st[DEC.RECORDS] = records;
      }
    }
    // Nothing outside the blocks changed.
    for (const g of guardPtrs) expect(a.get(g, GUARD).every((v) => v === sentinel)).toBe(true);
    blocks.forEach((b, i) => expect(a.get(names[i]!, b.name.length)).toEqual(b.name));
    expectSame(snapshot, stream);
    const tv2 = new Uint32Array(a.k.memory.buffer, table, blocks.length * 8);
    return {
      status,
      state: Array.from(stateV()),
      blocks: blocks.map((b, i) => (bases[i] ? a.get(bases[i]!, b.pages * pageSize) : null)),
      counts: blocks.map((_, i) => Array.from(tv2.subarray(i * 8 + 5, i * 8 + 8))),
    };
  });
}

function decodeAll(blocks: DecBlock[], stream: Uint8Array, cuts: number[] = [], startBlock = 0xffffffff, pageSize = P): DecOut {
  const outs = K.map((k) => runDecode(k, blocks, stream, cuts, startBlock, pageSize));
  for (let i = 1; i < outs.length; i++) expectSame(outs[i], outs[0], backends[i]);
  // And the reference parser agrees.
  const ref: RefBlock[] = blocks.map((b) => ({
    name: b.name,
    data: b.materialised === false ? null : b.init ? b.init.slice() : new Uint8Array(b.pages * pageSize),
    len: b.lenLo !== undefined ? (BigInt(b.lenHi ?? 0) << 32n) | BigInt(b.lenLo >>> 0) : BigInt(b.pages * pageSize),
    counts: [0, 0, 0],
  }));
  const r = refDecode(stream, ref, startBlock === 0xffffffff ? -1 : startBlock, pageSize);
  const o = outs[0]!;
  expect(o.status).toBe(r.status);
  expect(o.state).toEqual([r.block < 0 ? 0xffffffff : r.block, r.consumed, r.records, r.errAt, r.hdrHi, r.hdrLo >>> 0]);
  expectSame(
    o.blocks,
    ref.map((b) => b.data),
  );
  expect(o.counts).toEqual(ref.map((b) => b.counts));
  return o;
}

describe("ramDecode", () => {
  const pcram = enc.encode("pc.ram");
  const rom = enc.encode("/rom@etc/acpi/tables");

  it("applies ZERO, PAGE, XBZRLE and stops after EOS (records after it untouched)", () => {
    const r = randPage(40);
    const init = randomBytes(4 * P, 41);
    const target = init.slice(3 * P);
    for (let i = 0; i < P; i += 301) target[i] ^= 0x3c;
    const x = refXbzrleEncode(init.subarray(3 * P), target, P) as number[];
    const stream = concat([
      rec(0, RAM_FLAG.ZERO, pcram, [0]),
      rec(0x1000, RAM_FLAG.PAGE, null, r),
      rec(0x2000, RAM_FLAG.ZERO, null, [0x5a]),
      rec(0x3000, RAM_FLAG.XBZRLE, null, xbzBody(x)),
      rec(0, RAM_FLAG.PAGE, rom, randPage(42)),
      EOS,
      rec(0x1000, RAM_FLAG.ZERO, pcram, [7]),
    ]);
    const o = decodeAll(
      [
        { name: pcram, pages: 4, init },
        { name: rom, pages: 1 },
      ],
      stream,
    );
    expect(o.status).toBe(DEC_STATUS.EOS);
    expect(o.state[DEC.BLOCK]).toBe(1);
    expect(o.state[DEC.RECORDS]).toBe(6);
    expect(o.state[DEC.CONSUMED]).toBe(stream.length - 9 - 6 - 1);
    expectSame(o.blocks[0], concat([zeroPage(), r, new Uint8Array(P).fill(0x5a), target]));
    expect(o.counts).toEqual([
      [2, 1, 1],
      [0, 1, 0],
    ]);
  });

  it("OTHER stops before MEM_SIZE, COMPRESS_PAGE, HOOK, EOS variants and unknown flags", () => {
    const ok = rec(0, RAM_FLAG.ZERO, pcram, [0]);
    for (const hdr of [0x1082004n, 0x13120n, 0x13100n, 0x80n, 0x01n, 0x200n, 0x0an, 0x4an, 0x30n, 0x1010n, 0x22n | 0x08n, 0x20n, 0x0n]) {
      const stream = concat([ok, be64(hdr), randPage(1)]);
      const o = decodeAll([{ name: pcram, pages: 2 }], stream);
      expect(o.status, hdr.toString(16)).toBe(DEC_STATUS.OTHER);
      expect(o.state.slice(1)).toEqual([ok.length, 1, ok.length, 0, Number(hdr)]);
    }
  });

  it("NEED_MORE at every cut of a record, CONSUMED at its start", () => {
    const stream = concat([
      rec(0, RAM_FLAG.PAGE, pcram, randPage(3)),
      rec(0x1000, RAM_FLAG.XBZRLE, null, xbzBody([0, 2, 1, 2])),
      rec(0, RAM_FLAG.ZERO, null, [0]),
    ]);
    const bounds = [0, 15 + P, 15 + P + 15, stream.length];
    for (let cut = 0; cut <= stream.length; cut += cut < 40 || cut > P ? 1 : 97) {
      const o = decodeAll([{ name: pcram, pages: 2 }], stream.subarray(0, cut));
      expect(o.status).toBe(DEC_STATUS.NEED_MORE);
      const done = bounds.filter((b) => b <= cut);
      expect(o.state[DEC.CONSUMED]).toBe(done[done.length - 1]);
      expect(o.state[DEC.RECORDS]).toBe(done.length - 1);
    }
  });

  it("errors: unknown block, CONTINUE without a block, offsets at/after the end (64-bit)", () => {
    const blocks: DecBlock[] = [
      { name: pcram, pages: 2 },
      { name: new Uint8Array(0), pages: 1 },
    ];
    const hdrOf = (r: Uint8Array) => {
      const hdr = new DataView(r.buffer).getBigUint64(0);
      return [Number(hdr >> 32n), Number(hdr & 0xffffffffn)];
    };
    // CONTINUE with no current block (none yet, or an index past the table).
    for (const start of [0xffffffff, 2, 0x7fffffff]) {
      const r = rec(0, RAM_FLAG.ZERO, null, [0]);
      const o = decodeAll(blocks, concat([r, EOS]), [], start);
      expect(o.status).toBe(DEC_STATUS.ERR_NO_BLOCK);
      expect(o.state).toEqual([start, 0, 0, 0, ...hdrOf(r)]);
    }
    const cases: [Uint8Array, number][] = [
      [rec(0, RAM_FLAG.ZERO, enc.encode("pc.rom"), [0]), DEC_STATUS.ERR_UNKNOWN_BLOCK],
      [rec(0, RAM_FLAG.ZERO, enc.encode("pc.ra"), [0]), DEC_STATUS.ERR_UNKNOWN_BLOCK],
      [rec(0, RAM_FLAG.ZERO, enc.encode("pc.ramx"), [0]), DEC_STATUS.ERR_UNKNOWN_BLOCK],
      [rec(0x2000, RAM_FLAG.PAGE, pcram, randPage(1)), DEC_STATUS.ERR_OFFSET], // offset = used_length
      [rec(0x1000, RAM_FLAG.ZERO, new Uint8Array(0), [0]), DEC_STATUS.ERR_OFFSET],
      [rec(0x1000, RAM_FLAG.ZERO, null, [0]), DEC_STATUS.ERR_OFFSET], // CONTINUE on the 1-page block
      [rec(0xfffffffffffff000n, RAM_FLAG.ZERO, pcram, [0]), DEC_STATUS.ERR_OFFSET],
      [rec(0x100000000n, RAM_FLAG.ZERO, pcram, [0]), DEC_STATUS.ERR_OFFSET],
      [rec(0x7fff_ffff_ffff_f000n, RAM_FLAG.XBZRLE, null, xbzBody([0, 1, 1])), DEC_STATUS.ERR_OFFSET],
    ];
    for (const [r, status] of cases) {
      const good = rec(0, RAM_FLAG.PAGE, new Uint8Array(0), randPage(2));
      const stream = concat([good, r, EOS]);
      const o = decodeAll(blocks, stream);
      expect(o.status).toBe(status);
      expect(o.state).toEqual([1, good.length, 1, good.length, ...hdrOf(r)]);
      expectSame(o.blocks[0], new Uint8Array(2 * P)); // nothing written
    }
  });

  it("64-bit used_length of a block that is not materialised", () => {
    const big: DecBlock = { name: pcram, pages: 0, materialised: false, lenHi: 3, lenLo: 0x1000 };
    let o = decodeAll([big], concat([rec(0x3_0000_0000n, RAM_FLAG.ZERO, pcram, [0]), rec(0x2_ffff_f000n, RAM_FLAG.PAGE, null, randPage(1)), EOS]));
    expect(o.status).toBe(DEC_STATUS.EOS);
    expect(o.counts).toEqual([[1, 1, 0]]);
    o = decodeAll([big], concat([rec(0x3_0000_1000n, RAM_FLAG.ZERO, pcram, [0]), EOS]));
    expect(o.status).toBe(DEC_STATUS.ERR_OFFSET);
    o = decodeAll(
      [{ ...big, lenHi: 0xffffffff, lenLo: 0xfffff000 }],
      concat([rec(0xffff_ffff_ffff_e000n, RAM_FLAG.ZERO, pcram, [0]), rec(0xffff_ffff_ffff_f000n, RAM_FLAG.ZERO, null, [0]), EOS]),
    );
    expect(o.status).toBe(DEC_STATUS.ERR_OFFSET);
    expect(o.counts).toEqual([[1, 0, 0]]);
  });

  it("XBZRLE errors: encoding byte, length > page, malformed data; the page stays untouched", () => {
    const init = randomBytes(2 * P, 50);
    const bad: [Uint8Array, number][] = [
      [xbzBody([0, 1, 1], 2), DEC_STATUS.ERR_XBZRLE_ENCODING],
      [xbzBody([0, 1, 1], 0), DEC_STATUS.ERR_XBZRLE_ENCODING],
      [concat([[1, 0x10, 0x01], randomBytes(P + 1, 1)]), DEC_STATUS.ERR_XBZRLE_LENGTH],
      [concat([[1, 0xff, 0xff], randomBytes(16, 1)]), DEC_STATUS.ERR_XBZRLE_LENGTH],
      [xbzBody([5]), DEC_STATUS.ERR_XBZRLE_DATA], // truncated
      [xbzBody([0, 2, 9]), DEC_STATUS.ERR_XBZRLE_DATA], // nzrun data truncated
      [xbzBody([0, 0]), DEC_STATUS.ERR_XBZRLE_DATA], // zero-length nzrun
      [xbzBody([0, 1, 7, 0, 1, 8]), DEC_STATUS.ERR_XBZRLE_DATA], // zero zrun after the first pair
      [xbzBody([0x80, 0x80, 1, 1]), DEC_STATUS.ERR_XBZRLE_DATA], // bad ULEB
      [xbzBody([0xff, 0x1f, 2, 1, 2]), DEC_STATUS.ERR_XBZRLE_DATA], // past the page
      [xbzBody([0x81, 0x20, 1, 1]), DEC_STATUS.ERR_XBZRLE_DATA], // zrun past the page
      [xbzBody([0, 1, 1, 3]), DEC_STATUS.ERR_XBZRLE_DATA], // trailing byte
    ];
    for (const materialised of [true, false]) {
      for (const [body, status] of bad) {
        const first = rec(0, RAM_FLAG.XBZRLE, pcram, xbzBody([0, 1, 0xaa]));
        const stream = concat([first, rec(0x1000, RAM_FLAG.XBZRLE, null, body), EOS]);
        const o = decodeAll([{ name: pcram, pages: 2, init, materialised }], stream);
        expect(o.status).toBe(status);
        expect(o.state[DEC.ERR_AT]).toBe(first.length);
        if (materialised) {
          const want = init.slice();
          want[0] = 0xaa;
          expectSame(o.blocks[0], want);
        }
      }
    }
    // Accepted corner cases: L = 0, non-canonical ULEB, run ending exactly at the page end.
    const okBodies = [xbzBody([]), xbzBody([0x80, 0x00, 1, 3]), xbzBody([0xff, 0x1f, 1, 4]), xbzBody([0x10, 0xf0, 0x1f, ...randomBytes(P - 16, 3)])];
    for (const materialised of [true, false]) {
      const stream = concat([...okBodies.map((b, i) => rec(0x1000, RAM_FLAG.XBZRLE, i ? null : pcram, b)), EOS]);
      const o = decodeAll([{ name: pcram, pages: 2, init, materialised }], stream);
      expect(o.status).toBe(DEC_STATUS.EOS);
      expect(o.counts).toEqual([[0, 0, 4]]);
    }
  });

  it("ZERO with fill 0 on a zero page leaves it alone; any fill byte is applied", () => {
    const init = concat([randPage(60), zeroPage()]);
    const stream = concat([rec(0, RAM_FLAG.ZERO, pcram, [0]), rec(0x1000, RAM_FLAG.ZERO, null, [0]), rec(0x1000, RAM_FLAG.ZERO, null, [0xff]), EOS]);
    const o = decodeAll([{ name: pcram, pages: 2, init }], stream);
    expectSame(o.blocks[0], concat([zeroPage(), new Uint8Array(P).fill(0xff)]));
  });

  it("a block that is not materialised (BASE = 0) is validated and counted, nothing is written", () => {
    const stream = concat([
      rec(0, RAM_FLAG.PAGE, rom, randPage(1)),
      rec(0x1000, RAM_FLAG.ZERO, pcram, [3]),
      rec(0x2000, RAM_FLAG.XBZRLE, null, xbzBody([0, 2, 1, 2])),
      rec(0, RAM_FLAG.PAGE, rom, randPage(2)),
      EOS,
    ]);
    const o = decodeAll(
      [
        { name: pcram, pages: 3, materialised: false },
        { name: rom, pages: 1 },
      ],
      stream,
    );
    expect(o.status).toBe(DEC_STATUS.EOS);
    expect(o.counts).toEqual([
      [1, 0, 1],
      [0, 2, 0],
    ]);
    expectSame(o.blocks[1], stream.subarray(stream.length - 8 - P, stream.length - 8));
  });

  it("the current block persists across calls (CONTINUE first), BLOCK in/out", () => {
    const stream = concat([rec(0x1000, RAM_FLAG.ZERO, null, [1]), EOS]);
    const o = decodeAll(
      [
        { name: pcram, pages: 1 },
        { name: rom, pages: 2 },
      ],
      stream,
      [],
      1,
    );
    expect(o.status).toBe(DEC_STATUS.EOS);
    expect(o.counts).toEqual([
      [0, 0, 0],
      [1, 0, 0],
    ]);
  });

  it("round trip: encode -> decode into a fresh block reproduces RAM (with XBZRLE against the destination's old pages)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom("zero", "near", "rand", "same", "small", "many"), { minLength: 1, maxLength: 20 }),
        fc.integer({ min: 0, max: 1e6 }),
        (ks, seed) => {
          const n = ks.length;
          const r = new SeededRandom(seed + 3);
          const old = randomBytes(n * P, seed);
          const slots = new Uint32Array(n);
          const pages = ks.map((kind, i) => {
            const o = old.subarray(i * P, (i + 1) * P);
            slots[i] = r.u32() % 4 === 0 ? (i + 1) | SLOT_INSERT : r.u32() % 3 === 0 ? 0 : i + 1;
            if (kind === "zero") return zeroPage();
            if (kind === "near") return nearZeroPage(i);
            if (kind === "rand") return randPage(seed + i);
            const pg = o.slice();
            if (kind === "small") pg[r.u32() % P]! ^= 1;
            if (kind === "many") for (let j = 0; j < 40; j++) pg[r.u32() % P]! ^= 0x80;
            return pg;
          });
          const block = concat(pages);
          const out = encodeAll({ block, first: 0, end: n, name: pcram, slots, cache: old, outCap: n * (P + 300), options: r.u32() & 1 });
          const stream = concat([out.bytes, EOS]);
          // The destination holds what it was last sent: the cache contents for slotted pages.
          const dest = new Uint8Array(n * P);
          for (let i = 0; i < n; i++) if (slots[i] && !(slots[i]! & SLOT_INSERT)) dest.set(old.subarray(i * P, (i + 1) * P), i * P);
          const o = decodeAll(
            [
              { name: rom, pages: 1 },
              { name: pcram, pages: n, init: dest },
            ],
            stream,
          );
          expect(o.status).toBe(DEC_STATUS.EOS);
          expectSame(o.blocks[1], block);
          expect(o.counts[1]).toEqual([out.state[ENC.ZERO], out.state[ENC.NORMAL], out.state[ENC.XBZRLE]]);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("any split into windows (tail carried) gives the result of one window (fast-check)", () => {
    // A fixed multi-block stream with every record kind.
    const init = randomBytes(6 * P, 70);
    const recs: Uint8Array[] = [
      rec(0, RAM_FLAG.ZERO, pcram, [0]),
      rec(0x1000, RAM_FLAG.PAGE, null, randPage(71)),
      rec(
        0x2000,
        RAM_FLAG.XBZRLE,
        null,
        xbzBody(
          refXbzrleEncode(
            init.subarray(2 * P, 3 * P),
            init.subarray(2 * P, 3 * P).map((v, i) => (i % 50 ? v : ~v)),
            P,
          ) as number[],
        ),
      ),
      rec(0, RAM_FLAG.PAGE, rom, randPage(72)),
      rec(0x3000, RAM_FLAG.ZERO, pcram, [0x11]),
      rec(0x4000, RAM_FLAG.XBZRLE, null, xbzBody([0x10, 3, 1, 2, 3])),
      rec(0x5000, RAM_FLAG.XBZRLE, null, xbzBody([])),
      rec(0x1000, RAM_FLAG.ZERO, enc.encode("x"), [0]),
      rec(0x5000, RAM_FLAG.PAGE, pcram, randPage(73)),
    ];
    const blocks: DecBlock[] = [
      { name: pcram, pages: 6, init },
      { name: rom, pages: 1 },
      { name: enc.encode("x"), pages: 2, materialised: false },
    ];
    const tails = [EOS, be64(0x1082004n), rec(0x6000, RAM_FLAG.ZERO, null, [0]), rec(0, RAM_FLAG.XBZRLE, null, xbzBody([0, 0]))];
    const whole = tails.map((t) => decodeAll(blocks, concat([...recs, t, rec(0, RAM_FLAG.ZERO, null, [1])])));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: tails.length - 1 }), fc.array(fc.integer({ min: 1, max: 6 * P + 400 }), { maxLength: 12 }), (t, cuts) => {
        const stream = concat([...recs, tails[t]!, rec(0, RAM_FLAG.ZERO, null, [1])]);
        const o = decodeAll(blocks, stream, cuts);
        expectSame(o, whole[t]);
      }),
      { numRuns: 150 },
    );
    expect(whole.map((w) => w.status)).toEqual([DEC_STATUS.EOS, DEC_STATUS.OTHER, DEC_STATUS.ERR_OFFSET, DEC_STATUS.ERR_XBZRLE_DATA]);
  });

  it("random record soup: all backends agree with the reference parser (fast-check)", () => {
    const names = [pcram, rom, enc.encode("pc.rom"), new Uint8Array(0)];
    const recArb = fc.record({
      kind: fc.constantFrom("zero", "zero", "page", "xbz", "xbz", "xbzRand", "eos", "other"),
      name: fc.constantFrom(-1, -1, -1, -1, 0, 0, 1, 2, 3), // < 0: CONTINUE
      page: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 5 })),
      fill: fc.constantFrom(0, 0, 7),
      seed: fc.integer({ min: 0, max: 1e6 }),
    });
    fc.assert(
      fc.property(fc.array(recArb, { maxLength: 12 }), fc.boolean(), fc.constantFrom(0, 1, 0xffffffff), (rs, mat, start) => {
        const init = randomBytes(4 * P, 90);
        const parts = rs.map((x) => {
          const name = x.name < 0 ? null : names[x.name]!;
          const off = x.page * P;
          switch (x.kind) {
            case "zero":
              return rec(off, RAM_FLAG.ZERO, name, [x.fill]);
            case "page":
              return rec(off, RAM_FLAG.PAGE, name, randPage(x.seed));
            case "xbz": {
              const pg = randPage(x.seed).map((v, i) => (i % 97 === 0 ? v : 0));
              const d = refXbzrleEncode(new Uint8Array(P), pg, P);
              return rec(off, RAM_FLAG.XBZRLE, name, xbzBody(typeof d === "number" ? [] : d));
            }
            case "xbzRand":
              return rec(off, RAM_FLAG.XBZRLE, name, xbzBody(randomBytes(x.seed % 20, x.seed)));
            case "eos":
              return EOS;
            default:
              return be64(BigInt(x.seed) << 3n);
          }
        });
        const stream = concat(parts);
        decodeAll(
          [
            { name: pcram, pages: 4, init },
            { name: rom, pages: 4, materialised: mat },
            { name: new Uint8Array(0), pages: 2 },
          ],
          stream,
          [],
          start,
        );
      }),
      { numRuns: 400 },
    );
  });

  it("page size 8192: flags are the low 13 bits", () => {
    const ps = 8192;
    const r = randomBytes(ps, 5);
    const stream = concat([rec(0x2000, RAM_FLAG.PAGE, pcram, r), rec(0, RAM_FLAG.ZERO, null, [0]), be64(0x1000n | 0x02n), EOS]);
    const o = decodeAll([{ name: pcram, pages: 2, init: randomBytes(2 * ps, 6) }], stream, [], 0xffffffff, ps);
    // 0x1002 with 8 KiB pages: flags 0x1002 -> not a record the kernel applies.
    expect(o.status).toBe(DEC_STATUS.OTHER);
    expectSame(o.blocks[0]!.subarray(ps), r);
  });
});
