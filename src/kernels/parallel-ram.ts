// ramEncode and ramDecode over a KernelPool's workers, with the single-thread kernel's bytes and outcome.
// Encode: the page range is cut into ranges (inner boundaries at multiples of 64 pages, so no two workers share a
// send-bitmap word), each encoded into its own output window; the windows go to the sink in range order, and the
// one record whose CONTINUE guess was wrong gets its block name back. Decode: the main thread walks the window
// with a table that applies nothing (validation only) to cut it into runs at record boundaries; the workers
// apply the runs, each with its own copy of the block table (counters merged afterwards). docs/kernels.md.
import type { KernelPool } from "./pool.js";
import { BLK, DEC, DEC_STATUS, ENC, RAM_ENCODE, RAM_FLAG } from "./types.js";
import { POOL_OP } from "./worker.js";

/** Room ramEncode keeps free before each page: header, name (u8 + 255), XBZRLE head, then the page. */
const RESERVE = 8 + 1 + 255 + 3;

/** Output window that holds every record of `pages` pages, whatever they encode to (see ramEncode's stop rule). */
export function encodeWindowBytes(pages: number, pageSize: number): number {
  return Math.max(0, pages - 1) * (pageSize + 11) + 2 * (RESERVE + pageSize);
}

/** One ramEncode over a page range of a block, as Kernels.ramEncode takes it (pointers into the pool's memory). */
export interface ParallelRamEncode {
  readonly blockPtr: number;
  readonly pageSize: number;
  readonly firstPage: number;
  readonly endPage: number;
  /** Send bitmap over the whole block (bits of pages handled are cleared), or 0 / absent: every page. */
  readonly sendMapPtr?: number;
  /** XBZRLE slot map and cache (Kernels.ramEncode); with a slot map, `slotSpan` is required. */
  readonly slotMapPtr?: number;
  readonly cachePtr?: number;
  /**
   * Pages fewer than this many apart never share a cache slot (XbzrleCache: its slot count; a cache with a
   * slot per page: Infinity). Ranges run in parallel only within such a span, so no slot is read by one worker
   * while another writes it.
   */
  readonly slotSpan?: number;
  /** The block's name bytes (at most 255). */
  readonly name: Uint8Array;
  /** RAM_ENCODE bits (ZERO_DETECT, CONTINUE). */
  readonly options: number;
  /** Pages per range (default: about 4 ranges per worker, 256..4096 pages); rounded up to a multiple of 64. */
  readonly rangePages?: number;
  /** Output windows in use at once (default: 2 per worker + 2). */
  readonly windows?: number;
}

/**
 * Receives the records of one range after those of every range before it: views of the pool's memory, valid
 * until the sink returns or, when it returns a promise, until that promise settles.
 */
export type RamEncodeSink = (chunks: readonly Uint8Array[]) => void | PromiseLike<unknown>;

/** Totals over the whole call, as the ENC state of one ramEncode over the same range. */
export interface RamEncodeResult {
  bytes: number;
  zero: number;
  normal: number;
  xbzrle: number;
  unchanged: number;
  overflow: number;
  xbzrleBytes: number;
  /** ENC.CONTINUE: feed back as RAM_ENCODE.CONTINUE for the next call on this block. */
  continue: boolean;
}

/** Main-thread work in one go at most (ms) before the event loop gets a turn (sinks that copy, say). */
const YIELD_AFTER_MS = 2;

/** A macrotask boundary: timers and I/O run before the promise resolves (MessageChannel: browsers and Node). */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(0);
  });
}

interface EncodeTask {
  readonly index: number;
  readonly end: number;
  readonly win: number;
  readonly done: Promise<number>;
}

/** Waits for one of `max` tokens (output windows, runs in flight). */
class Tokens {
  private used = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly max: number) {}
  async take(): Promise<void> {
    while (this.used >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    this.used++;
  }
  give(): void {
    this.used--;
    this.waiting.shift()?.();
  }
}

export async function parallelRamEncode(pool: KernelPool, a: ParallelRamEncode, sink: RamEncodeSink): Promise<RamEncodeResult> {
  const k = pool.kernels;
  const ps = a.pageSize;
  const nameLen = a.name.length;
  if (nameLen > 255) throw new RangeError(`ramEncode: block name of ${nameLen} bytes (at most 255)`);
  if (!Number.isInteger(a.firstPage) || !Number.isInteger(a.endPage) || a.firstPage < 0 || a.firstPage > a.endPage) {
    throw new RangeError(`ramEncode: bad page range [${a.firstPage}, ${a.endPage})`);
  }
  const slotMap = a.slotMapPtr ?? 0;
  const span = slotMap ? (a.slotSpan ?? 0) : Infinity;
  if (!(span >= 1)) throw new RangeError("ramEncode: a slot map needs slotSpan (pages within which no two share a cache slot)");

  const total = a.endPage - a.firstPage;
  const step = Math.ceil((a.rangePages ?? Math.min(4096, Math.max(256, Math.ceil(total / (4 * pool.workers))))) / 64) * 64;
  const ranges: Array<[number, number, number]> = []; // first, end, batch
  for (let s = a.firstPage, batch = 0; s < a.endPage; batch++) {
    const e = Math.min(a.endPage, s + span);
    for (const [x, y] of pool.pageRanges(s, e, step)) ranges.push([x, y, batch]);
    s = e;
  }
  const cap = encodeWindowBytes(step, ps);
  const key = `encode:${cap}`;
  const stateAt = (win: number) => win + Math.ceil(cap / 8) * 8;
  const regionBytes = Math.ceil(cap / 8) * 8 + ENC.SIZE * 4;
  const namePtr = pool.take("name", 256);
  k.u8.set(a.name, namePtr);

  const windows = new Tokens(Math.max(1, a.windows ?? 2 * pool.workers + 2));
  const result: RamEncodeResult = {
    bytes: 0,
    zero: 0,
    normal: 0,
    xbzrle: 0,
    unchanged: 0,
    overflow: 0,
    xbzrleBytes: 0,
    continue: (a.options & RAM_ENCODE.CONTINUE) !== 0,
  };
  const tasks: EncodeTask[] = [];
  const consumed: Promise<unknown>[] = [];
  let failure: unknown;
  const release = (win: number) => {
    pool.release(key, win);
    windows.give();
  };

  // In range order: the records of task t go to the sink once it and every task before it are done.
  const emit = (t: EncodeTask): void => {
    const st = new Uint32Array(k.memory.buffer, stateAt(t.win), ENC.SIZE);
    const n = st[ENC.BYTES]!;
    if (st[ENC.NEXT_PAGE] !== t.end) throw new Error(`ramEncode: range ended at page ${st[ENC.NEXT_PAGE]}, not ${t.end} (output window too small)`);
    const records = st[ENC.ZERO]! + st[ENC.NORMAL]! + st[ENC.XBZRLE]!;
    result.bytes += n;
    result.zero += st[ENC.ZERO]!;
    result.normal += st[ENC.NORMAL]!;
    result.xbzrle += st[ENC.XBZRLE]!;
    result.unchanged += st[ENC.UNCHANGED]!;
    result.overflow += st[ENC.OVERFLOW]!;
    result.xbzrleBytes += st[ENC.XBZRLE_BYTES]!;
    let chunks: Uint8Array[] = [];
    if (n > 0 && t.index > 0 && !result.continue) {
      // Encoded as if a record before it had named the block, but none had: its first record names the block.
      const head = new Uint8Array(9 + nameLen);
      head.set(k.u8.subarray(t.win, t.win + 8));
      head[7] = head[7]! & ~RAM_FLAG.CONTINUE;
      head[8] = nameLen;
      head.set(a.name, 9);
      chunks = [head, new Uint8Array(k.memory.buffer, t.win + 8, n - 8)];
      result.bytes += 1 + nameLen;
    } else if (n > 0) {
      chunks = [new Uint8Array(k.memory.buffer, t.win, n)];
    }
    if (records > 0) result.continue = true;
    const p = chunks.length > 0 ? sink(chunks) : undefined;
    if (p && typeof p.then === "function") {
      consumed.push(
        Promise.resolve(p).then(
          () => release(t.win),
          (e) => {
            release(t.win);
            failure ??= e;
          },
        ),
      );
    } else {
      release(t.win);
    }
  };

  let emitted: Promise<void> = Promise.resolve();
  let turn = performance.now();
  let spanStart = 0;
  try {
    for (let i = 0; i < ranges.length && failure === undefined; i++) {
      const [first, end, batch] = ranges[i]!;
      // A new span of cache slots: the ranges before it have written their slots.
      if (i > 0 && batch !== ranges[i - 1]![2]) await Promise.all(tasks.slice(spanStart).map((t) => t.done));
      if (i === 0 || batch !== ranges[i - 1]![2]) spanStart = tasks.length;
      await windows.take();
      if (failure !== undefined) {
        windows.give();
        break;
      }
      const win = pool.take(key, regionBytes);
      const cont = i === 0 ? a.options & RAM_ENCODE.CONTINUE : RAM_ENCODE.CONTINUE;
      const opts = (a.options & RAM_ENCODE.ZERO_DETECT) | cont;
      const done = pool.run(POOL_OP.RAM_ENCODE, [
        a.blockPtr,
        ps,
        first,
        end,
        a.sendMapPtr ?? 0,
        slotMap,
        a.cachePtr ?? 0,
        namePtr,
        nameLen,
        win,
        cap,
        opts,
        stateAt(win),
      ]);
      const t: EncodeTask = { index: i, end, win, done };
      tasks.push(t);
      // The chain never rejects: a failure is kept, and every window still comes back.
      emitted = emitted.then(async () => {
        try {
          await done;
          // Ranges done while the sink ran would otherwise all go to it in one turn of the event loop.
          if (performance.now() - turn > YIELD_AFTER_MS) {
            await yieldToEventLoop();
            turn = performance.now();
          }
          if (failure === undefined) return emit(t);
        } catch (e) {
          failure ??= e;
        }
        release(t.win);
      });
    }
  } catch (e) {
    failure ??= e;
  }
  // Windows in a worker's hands or a sink's come back only when those are done with them.
  await emitted;
  await Promise.allSettled(consumed);
  pool.release("name", namePtr);
  if (failure !== undefined) throw failure;
  return result;
}

export interface ParallelRamDecodeOptions {
  /** Bytes of input per run (default 16 MiB; at least two of the largest records). */
  readonly runBytes?: number;
  /** Runs in flight at once (default: 2 per worker + 1). */
  readonly runs?: number;
}

interface DecodeRun {
  readonly pos: number;
  readonly len: number;
  readonly ctl: number;
  readonly done: Promise<number>;
}

/**
 * The outcome of one Kernels.ramDecode over the whole window (state, block counters, pages written, status),
 * provided no two records of the window write the same page (true of one pass over RAM, or a multifd packet).
 */
export async function parallelRamDecode(
  pool: KernelPool,
  inPtr: number,
  inLen: number,
  tablePtr: number,
  blockCount: number,
  pageSize: number,
  statePtr: number,
  options: ParallelRamDecodeOptions = {},
): Promise<number> {
  const k = pool.kernels;
  const W = BLK.WORDS;
  const runBytes = Math.max(options.runBytes ?? 16 << 20, 2 * (RESERVE + pageSize));
  const tableBytes = blockCount * W * 4;
  const ctlBytes = tableBytes + DEC.SIZE * 4;
  const key = `decode:${ctlBytes}`;
  const words = () => new Uint32Array(k.memory.buffer);
  const size = k.memory.buffer.byteLength;
  if (tablePtr % 4 !== 0 || statePtr % 4 !== 0) throw new RangeError("ramDecode: the block table and the state must be 4-byte aligned");
  for (const [what, ptr, len] of [
    ["input", inPtr, inLen],
    ["block table", tablePtr, tableBytes],
    ["state", statePtr, DEC.SIZE * 4],
  ] as const) {
    if (!Number.isInteger(ptr) || !Number.isInteger(len) || ptr < 0 || len < 0 || ptr + len > size)
      throw new RangeError(`ramDecode ${what}: [${ptr}, ${ptr}+${len}) is outside the memory`);
  }
  const walkCtl = pool.take(key, ctlBytes);
  const walkState = walkCtl + tableBytes;
  {
    const m = words();
    for (let b = 0; b < blockCount; b++) {
      const from = (tablePtr >>> 2) + b * W;
      const to = (walkCtl >>> 2) + b * W;
      m[to + BLK.NAME_PTR] = m[from + BLK.NAME_PTR]!;
      m[to + BLK.NAME_LEN] = m[from + BLK.NAME_LEN]!;
      m[to + BLK.BASE] = 0; // validate and count, write nothing
      m[to + BLK.LEN_LO] = m[from + BLK.LEN_LO]!;
      m[to + BLK.LEN_HI] = m[from + BLK.BASE] !== 0 ? 0 : m[from + BLK.LEN_HI]!;
      m[to + BLK.ZERO] = m[to + BLK.NORMAL] = m[to + BLK.XBZRLE] = 0;
    }
  }
  const inFlight = new Tokens(Math.max(1, options.runs ?? 2 * pool.workers + 1));
  const runs: DecodeRun[] = [];
  let failure: unknown;
  try {
    let pos = 0;
    let block = words()[(statePtr >>> 2) + DEC.BLOCK]!;
    for (;;) {
      let len = inLen - pos;
      let last = true;
      if (len > runBytes) {
        // The walk: whole records within the next runBytes; where it stops, the next run starts.
        const m = words();
        m[(walkState >>> 2) + DEC.BLOCK] = block;
        const status = k.ramDecode(inPtr + pos, runBytes, walkCtl, blockCount, pageSize, walkState);
        const consumed = words()[(walkState >>> 2) + DEC.CONSUMED]!;
        if (status === DEC_STATUS.NEED_MORE && consumed > 0) {
          len = consumed;
          last = false;
        }
      }
      await inFlight.take();
      if (failure !== undefined) break;
      const ctl = pool.take(key, ctlBytes);
      const m = words();
      m.copyWithin(ctl >>> 2, tablePtr >>> 2, (tablePtr >>> 2) + blockCount * W);
      for (let b = 0; b < blockCount; b++) {
        const e = (ctl >>> 2) + b * W;
        m[e + BLK.ZERO] = m[e + BLK.NORMAL] = m[e + BLK.XBZRLE] = 0;
      }
      m.fill(0, (ctl + tableBytes) >>> 2, ((ctl + tableBytes) >>> 2) + DEC.SIZE);
      m[((ctl + tableBytes) >>> 2) + DEC.BLOCK] = block;
      const done = pool.run(POOL_OP.RAM_DECODE, [inPtr + pos, len, ctl, blockCount, pageSize, ctl + tableBytes]);
      done.then(
        () => inFlight.give(),
        (e) => {
          failure ??= e;
          inFlight.give();
        },
      );
      runs.push({ pos, len, ctl, done });
      if (last) break;
      block = words()[(walkState >>> 2) + DEC.BLOCK]!;
      pos += len;
    }
  } catch (e) {
    failure ??= e;
  }
  const statuses = await Promise.allSettled(runs.map((r) => r.done));
  let status: number = DEC_STATUS.NEED_MORE;
  if (failure === undefined) {
    // Merge: block counters summed, the state of the last run (offsets from the window's start).
    const m = words();
    let records = 0;
    for (let i = 0; i < runs.length; i++) {
      const r = runs[i]!;
      const s = (r.ctl + tableBytes) >>> 2;
      const st = (statuses[i] as PromiseFulfilledResult<number>).value;
      if (i < runs.length - 1 && (st !== DEC_STATUS.NEED_MORE || m[s + DEC.CONSUMED] !== r.len)) {
        failure = new Error(`ramDecode: run ${i} stopped at ${m[s + DEC.CONSUMED]} of ${r.len} bytes (status ${st}), where the walk found whole records`);
        break;
      }
      records += m[s + DEC.RECORDS]!;
      for (let b = 0; b < blockCount; b++) {
        const to = (tablePtr >>> 2) + b * W;
        const from = (r.ctl >>> 2) + b * W;
        for (const c of [BLK.ZERO, BLK.NORMAL, BLK.XBZRLE]) m[to + c] = (m[to + c]! + m[from + c]!) >>> 0;
      }
      if (i === runs.length - 1) {
        const out = statePtr >>> 2;
        m[out + DEC.BLOCK] = m[s + DEC.BLOCK]!;
        m[out + DEC.CONSUMED] = r.pos + m[s + DEC.CONSUMED]!;
        m[out + DEC.RECORDS] = records >>> 0;
        m[out + DEC.ERR_AT] = r.pos + m[s + DEC.ERR_AT]!;
        m[out + DEC.HDR_HI] = m[s + DEC.HDR_HI]!;
        m[out + DEC.HDR_LO] = m[s + DEC.HDR_LO]!;
        status = st;
      }
    }
  }
  for (const r of runs) pool.release(key, r.ctl);
  pool.release(key, walkCtl);
  if (failure !== undefined) throw failure;
  return status;
}
