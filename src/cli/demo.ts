// `vmstream demo`: guest RAM through QEMU's RAM record format and back, in memory, on the kernels.
// Round 1 sends every page (zero pages as ZERO records) and fills the XBZRLE cache; the "guest"
// then dirties some pages; round 2 finds them against the shadow copy and sends XBZRLE deltas.
import { createHash } from "node:crypto";
import { createKernels } from "../kernels/index.js";
import { type BackendName, BLK, DEC, DEC_STATUS, ENC, type Kernels, RAM_ENCODE, SLOT_INSERT } from "../kernels/types.js";

const P = 4096;
const WINDOW = 16 * 1024 * 1024;

interface RoundStats {
  zero: number;
  normal: number;
  xbzrle: number;
  unchanged: number;
  bytes: number;
  encodeMs: number;
  decodeMs: number;
}

export async function runDemo(opts: { ramMiB: number; backend: string }): Promise<number> {
  const backends: BackendName[] =
    opts.backend === "all" ? ["wasm-simd", "wasm-scalar", "js"] : [createKernels({ backend: opts.backend as BackendName | "auto", noWarmup: true }).backend];
  const pages = (opts.ramMiB * 1024 * 1024) / P;
  process.stdout.write(`vmstream demo: ${opts.ramMiB} MiB guest RAM (${pages} pages: 50% zero, 30% zero but one word, 20% random)\n`);
  let ok = true;
  for (const backend of backends) {
    const k = createKernels({ backend });
    ok = demoOne(k, pages) && ok;
  }
  return ok ? 0 : 1;
}

function demoOne(k: Kernels, pages: number): boolean {
  const src = k.alloc(pages * P);
  const dst = k.alloc(pages * P);
  const shadow = k.alloc(pages * P); // the XBZRLE cache: what the destination last received
  const dirty = k.alloc(Math.ceil(pages / 8) + 8, 8);
  const slots = k.alloc(pages * 4, 4);
  const win = k.alloc(WINDOW);
  const name = k.alloc(16, 16);
  const table = k.alloc(BLK.WORDS * 4, 64);
  const encState = k.alloc(ENC.SIZE * 4, 64);
  const decState = k.alloc(DEC.SIZE * 4, 64);
  fillGuest(k, src, pages, 1);
  // Touch every buffer once so the timings measure the kernels, not first-touch page faults.
  k.u8.fill(0, dst, dst + pages * P);
  k.u8.fill(0, shadow, shadow + pages * P);
  k.u8.fill(0, win, win + WINDOW);
  k.u8.set(new TextEncoder().encode("pc.ram"), name);
  new Uint32Array(k.memory.buffer, table, BLK.WORDS).set([name, 6, dst, pages * P, 0, 0, 0, 0]);
  new Uint32Array(k.memory.buffer, decState, DEC.SIZE)[DEC.BLOCK] = 0xffffffff;

  // Round 1: every page; each page also enters its cache slot (slot i = page i).
  const s32 = new Uint32Array(k.memory.buffer, slots, pages);
  for (let i = 0; i < pages; i++) s32[i] = (i + 1) | SLOT_INSERT;
  const r1 = sendRound(k, src, pages, 0, slots, shadow, name, win, encState, table, decState);
  if (!r1) return false;

  // The guest runs: 5% of the pages get a few words changed.
  dirtyGuest(k, src, pages, 2);
  const t0 = performance.now();
  const nDirty = k.changedPages(src, shadow, pages, dirty, false);
  const scanMs = performance.now() - t0;
  const s32b = new Uint32Array(k.memory.buffer, slots, pages);
  for (let i = 0; i < pages; i++) s32b[i] = i + 1;
  const r2 = sendRound(k, src, pages, dirty, slots, shadow, name, win, encState, table, decState);
  if (!r2) return false;

  const same = sha256(k, src, pages * P) === sha256(k, dst, pages * P);
  const gb = (pages * P) / 1e9;
  const line = (r: RoundStats, label: string) =>
    `  ${label}: ${r.zero} zero, ${r.normal} normal, ${r.xbzrle} xbzrle, ${r.unchanged} unchanged pages -> ${(r.bytes / 1048576).toFixed(2)} MiB of records; ` +
    `encode ${r.encodeMs.toFixed(1)} ms, decode ${r.decodeMs.toFixed(1)} ms`;
  process.stdout.write(`${k.backend}\n`);
  process.stdout.write(line(r1, "round 1 (all pages)") + ` (${(gb / (r1.encodeMs / 1e3)).toFixed(2)} GB/s of RAM)\n`);
  process.stdout.write(`  dirty scan against the shadow: ${nDirty} changed pages, ${(gb / (scanMs / 1e3)).toFixed(2)} GB/s of RAM\n`);
  process.stdout.write(line(r2, "round 2 (dirty pages, XBZRLE against the cache)") + "\n");
  process.stdout.write(`  destination RAM ${same ? "equals" : "DIFFERS FROM"} the source (sha256)\n`);
  return same;
}

function sendRound(
  k: Kernels,
  src: number,
  pages: number,
  sendMap: number,
  slots: number,
  cache: number,
  name: number,
  win: number,
  encState: number,
  table: number,
  decState: number,
): RoundStats | undefined {
  const r: RoundStats = { zero: 0, normal: 0, xbzrle: 0, unchanged: 0, bytes: 0, encodeMs: 0, decodeMs: 0 };
  let page = 0;
  let cont = 0;
  while (page < pages) {
    const t0 = performance.now();
    const n = k.ramEncode(src, P, page, pages, sendMap, slots, cache, name, 6, win, WINDOW, RAM_ENCODE.ZERO_DETECT | cont, encState);
    const t1 = performance.now();
    const st = new Uint32Array(k.memory.buffer, encState, ENC.SIZE);
    page = st[ENC.NEXT_PAGE]!;
    cont = st[ENC.CONTINUE] ? RAM_ENCODE.CONTINUE : 0;
    r.zero += st[ENC.ZERO]!;
    r.normal += st[ENC.NORMAL]!;
    r.xbzrle += st[ENC.XBZRLE]!;
    r.unchanged += st[ENC.UNCHANGED]!;
    r.bytes += n;
    const status = k.ramDecode(win, n, table, 1, P, decState);
    r.decodeMs += performance.now() - t1;
    r.encodeMs += t1 - t0;
    const consumed = new Uint32Array(k.memory.buffer, decState, DEC.SIZE)[DEC.CONSUMED]!;
    if (status !== DEC_STATUS.NEED_MORE || consumed !== n) {
      process.stderr.write(`ramDecode stopped with status ${status} after ${consumed} of ${n} bytes\n`);
      return undefined;
    }
  }
  return r;
}

function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

function fillGuest(k: Kernels, ram: number, pages: number, seed: number): void {
  const rnd = xorshift(seed);
  const w = new Uint32Array(k.memory.buffer, ram, (pages * P) / 4);
  w.fill(0);
  for (let p = 0; p < pages; p++) {
    const kind = rnd() % 10;
    const base = (p * P) / 4;
    if (kind >= 8) for (let i = 0; i < P / 4; i++) w[base + i] = rnd();
    else if (kind >= 5) w[base + (rnd() % (P / 4))] = rnd() | 1;
  }
}

function dirtyGuest(k: Kernels, ram: number, pages: number, seed: number): void {
  const rnd = xorshift(seed);
  const w = new Uint32Array(k.memory.buffer, ram, (pages * P) / 4);
  for (let p = 0; p < pages; p++) {
    if (rnd() % 20 !== 0) continue;
    for (let j = 0; j < 4; j++) w[(p * P) / 4 + (rnd() % (P / 4))] ^= rnd() | 1;
  }
}

function sha256(k: Kernels, ptr: number, len: number): string {
  return createHash("sha256")
    .update(k.u8.subarray(ptr, ptr + len))
    .digest("hex");
}
