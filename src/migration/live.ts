// runLiveSource: drives a MigrationSource (source.ts, virtual clock, synchronous sink) against a wall clock and an
// asynchronous transport: bounded PARTs with the guest running between them, a bandwidth cap, the switch-over at
// the measured throughput, the downtime measured, a paused guest resumed on failure; with multifd, every
// channel's connection written at once with the main stream's. Which chunks are copied and why:
// docs/live-migration.md, "The real-time driver". Browser-safe.
import { VmstreamError } from "../io/errors.js";
import { ByteWriter } from "../io/writer.js";
import type { ChannelOutput, ChannelSink, MultifdPacketPort } from "../sections/ram/multifd-source.js";
import type { MigrationSource, SwitchReason } from "./source.js";

export interface LiveSourceOptions {
  /**
   * Transport. The chunks of one PART are written together; their returned promises are awaited before the
   * next PART's chunks are written (backpressure; the next PART is encoded meanwhile). A transport that calls
   * `written()` once it no longer needs the chunk (a socket's write callback) lets the encoder reuse the chunk's
   * buffer (warm memory instead of a fresh buffer per PART); one that never calls it is fine too.
   */
  readonly write: (chunk: Uint8Array, written: () => void) => void | Promise<void>;
  /**
   * multifd (a source built with `multifd`): channel `channel`'s connection, as `write` is the main stream's.
   * A PART's chunks of every connection are written together, and all their writes awaited before the next
   * PART's (QEMU's destination holds the main stream at a sync point until every channel's SYNC is in, so no
   * connection may wait for another). The first chunk of each channel is its init message.
   */
  readonly writeChannel?: (channel: number, chunk: Uint8Array, written: () => void) => void | Promise<void>;
  /**
   * multifd with channels written by their own threads (vmstream/node: MultifdChannelWorkers), instead of
   * `writeChannel`: the engine hands them packet descriptions; a PART's packets are awaited (settled()) with its
   * main-stream chunks. `end` must end them too.
   */
  readonly channelPort?: LiveChannelPort;
  /** Called after the last chunk; the downtime ends when it resolves (e.g. a socket's end() callback; with multifd: every connection's). */
  readonly end?: () => void | Promise<void>;
  /** Stops the guest at the switch-over (v86's stop() is async). */
  readonly pause?: () => void | Promise<void>;
  /** Restarts the guest when the migration fails after the pause. */
  readonly resume?: () => void | Promise<void>;
  /** Awaited between PARTs and between rounds, so an emulator on this event loop keeps running. Default: yield one macrotask turn. */
  readonly letGuestRun?: () => void | Promise<void>;
  /** Bytes per wall-clock second while the guest runs (default Infinity); the complete phase is not capped, as in QEMU. */
  readonly bandwidth?: number;
  /** Stream bytes of one round before the dirty bitmap is synced (default Infinity: one pass over the dirty pages). */
  readonly roundBytes?: number;
  /** Wall seconds after which a round ends early (default Infinity). */
  readonly roundSeconds?: number;
  /** Seconds the guest may stay paused (default: the source's downtimeTarget). */
  readonly downtimeTarget?: number;
  /** Iteration rounds before the switch-over is forced (default: the source's maxRounds). */
  readonly maxRounds?: number;
  /** Stream bytes of one PART (default 4 MiB; with a bandwidth cap at most 50 ms of it, at least 64 KiB). */
  readonly partBytes?: number;
  /** "auto" (default): copy chunks that are views of the kernels' memory or of a SharedArrayBuffer; "always"; "never". */
  readonly copy?: "auto" | "always" | "never";
  readonly signal?: AbortSignal;
  readonly onRound?: (r: LiveRound) => void;
}

/** A MultifdPacketPort the driver can wait for. */
export interface LiveChannelPort extends MultifdPacketPort {
  /** Resolves once everything handed over so far is written; rejects with the channels' first failure. */
  settled(): Promise<void>;
  /** Bytes the channels wrote so far. */
  readonly bytes: number;
}

/** One iteration round, on the wall clock. */
export interface LiveRound {
  /** 1-based. */
  readonly round: number;
  /** Stream bytes of the round (with multifd: the channels' too, counted as the source counts them). */
  readonly bytes: number;
  /** ram PARTs written. */
  readonly parts: number;
  /** Dirty pages sent (page records and XBZRLE hits alike). */
  readonly pagesSent: number;
  /** Wall seconds of the round, sync included. */
  readonly seconds: number;
  /** Wall seconds spent in the guest hook. */
  readonly guestSeconds: number;
  /** Wall seconds of the dirty-bitmap sync after the round. */
  readonly syncSeconds: number;
  /** Pages found dirty by the sync. */
  readonly dirtied: number;
  /** Dirty pages pending after the sync. */
  readonly dirtyPages: number;
  readonly pendingBytes: number;
  /** Stream bytes per second over all rounds so far, guest hook time excluded. */
  readonly throughput: number;
  /** This round's sync time (the pause syncs once more) + pendingBytes / min(throughput, bandwidth), seconds. */
  readonly expectedDowntime: number;
}

/**
 * Why the source switched over. "sync-bound": the pending pages alone would go out within the target, and
 * what keeps the estimate above it is the dirty-bitmap sync itself: a scan of all RAM (the host has no dirty
 * log), which the pause repeats whatever the number of rounds, so more rounds cannot lower it. Not with a
 * dirty log, whose sync is cheap and only noise would make it look otherwise.
 */
export type LiveSwitchReason = SwitchReason | "sync-bound";

export interface LiveOutcome {
  readonly reason: LiveSwitchReason;
  readonly converged: boolean;
  readonly rounds: readonly LiveRound[];
  /** The complete phase: bytes, dirty pages sent, wall seconds from the pause to the last byte written. */
  readonly final: { readonly bytes: number; readonly pagesSent: number; readonly seconds: number };
  /** The estimate at the switch-over, seconds. */
  readonly expectedDowntime: number;
  /** Wall seconds from the start of pause() to the last byte written (end() resolved). */
  readonly downtime: number;
  /** Wall seconds pause() took. */
  readonly pauseSeconds: number;
  /** Wall seconds from the start to the last byte written. */
  readonly totalTime: number;
  /** Bytes handed to the transport, all connections. */
  readonly totalBytes: number;
  /** Bytes copied before write (see `copy`) and the wall seconds it took. */
  readonly copiedBytes: number;
  readonly copySeconds: number;
}

/** A live migration that did not complete. The guest was resumed when it had been paused (see `resumed`). */
export class LiveMigrationError extends VmstreamError {
  /** "setup" | "iterate" | "complete". */
  readonly stage: string;
  readonly paused: boolean;
  /** The guest was paused and resume() completed. */
  readonly resumed: boolean;
  readonly rounds: readonly LiveRound[];
  constructor(
    code: string,
    summary: string,
    info: { stage: string; paused: boolean; resumed: boolean; rounds: readonly LiveRound[]; offset: number; detail?: string; cause?: unknown },
  ) {
    super(code, summary, {
      offset: info.offset,
      ...(info.detail !== undefined ? { detail: info.detail } : {}),
      ...(info.cause !== undefined ? { cause: info.cause } : {}),
    });
    this.stage = info.stage;
    this.paused = info.paused;
    this.resumed = info.resumed;
    this.rounds = info.rounds;
  }
}
LiveMigrationError.prototype.name = "LiveMigrationError";

const now = (): number => performance.now() / 1000;
const sleep = (s: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, s * 1000)));
const immediate = (globalThis as { setImmediate?: (f: () => void) => unknown }).setImmediate;
/** One macrotask turn (setTimeout(0) is clamped to >= 1 ms; setImmediate is not). */
const yieldTurn = (): Promise<void> => new Promise((r) => (immediate ? immediate(r) : setTimeout(r, 0)));

/** Bytes of the channels' copy buffers: the views of guest RAM the channels get are copied into these. */
const CHANNEL_COPY_BYTES = 4 << 20;
/** A channel's chunks shorter than this (packet headers) are copied too, so that a PART goes out in one write. */
const CHANNEL_COPY_SMALL = 16 << 10;

/**
 * Run a live migration in real time. `create(sink, channelSink)` builds the MigrationSource writing to `sink`
 * (and, with multifd, to `channelSink`; the driver owns it and disposes it at the end); give pause() to the
 * driver, not to the source. Resolves with the outcome once the last byte is written; rejects with a
 * LiveMigrationError otherwise (after resuming a paused guest).
 */
export async function runLiveSource(
  create: (sink: (chunk: Uint8Array) => void, channelSink: ChannelOutput) => MigrationSource,
  options: LiveSourceOptions,
): Promise<LiveOutcome> {
  const o = options;
  const bandwidth = o.bandwidth ?? Infinity;
  if (!(bandwidth > 0)) throw new VmstreamError("RANGE", "bandwidth must be > 0 bytes/s", { detail: String(bandwidth) });
  const queue: Uint8Array[] = [];
  const copyMode = o.copy ?? "auto";
  let copiedBytes = 0;
  let copySeconds = 0;
  let memory: WebAssembly.Memory | undefined;
  const mustCopy = (c: Uint8Array) =>
    copyMode === "always" ||
    (copyMode === "auto" && ((memory && c.buffer === memory.buffer) || (typeof SharedArrayBuffer !== "undefined" && c.buffer instanceof SharedArrayBuffer)));
  // multifd: per channel, the chunks of the PART being made. A channel gets its pages as views of guest RAM
  // (zero copy in the engine), runs of a few pages each, and its packet headers as small chunks: all are copied,
  // one after another, into one writer shared by the channels (its buffers given back once written, as the
  // encoder's), so that a packet goes out in one write and the buffers in use stay as few as for one stream
  // (first-touched memory is slow to come by). A chunk of the writer holds one channel's bytes. The copies of
  // one engine step are timed together, from the first to the end of the step (a clock read per run of pages
  // costs more than the copy of a small run).
  const channelQueues: Uint8Array[][] = [];
  const copies = new ByteWriter({ initialCapacity: CHANNEL_COPY_BYTES });
  let copiesOwner = -1;
  let copyStart = -1;
  const takeCopies = () => {
    if (copiesOwner < 0) return;
    for (const c of copies.takeChunks()) if (c.length > 0) channelQueues[copiesOwner]!.push(c);
    copiesOwner = -1;
  };
  const channelSink: ChannelSink = (i, c) => {
    if (!o.writeChannel) throw new VmstreamError("STATE", "a multifd source needs the transport's writeChannel");
    if (!channelQueues[i]) {
      if (!Number.isInteger(i) || i < 0 || i > 255) throw new VmstreamError("RANGE", "multifd channel id", { detail: String(i) });
      channelQueues[i] = [];
    }
    if (c.length < CHANNEL_COPY_SMALL || mustCopy(c)) {
      if (copyStart < 0) copyStart = now();
      if (copiesOwner !== i) {
        takeCopies();
        copiesOwner = i;
      }
      copies.bulk(c);
      if (c.buffer !== memory?.buffer) ByteWriter.release(c); // a packet header: the engine's buffer is free again
      copiedBytes += c.length;
      return;
    }
    if (copiesOwner === i) takeCopies();
    channelQueues[i].push(c);
  };
  // Copied as they are emitted: a view is valid only during the sink call (the encoder may reuse its scratch).
  const source = create((c) => {
    if (mustCopy(c)) {
      const t = now();
      const v = c;
      c = c.slice();
      ByteWriter.release(v); // an encoder buffer (copy: "always") is free again at once
      copySeconds += now() - t;
      copiedBytes += c.length;
    }
    queue.push(c);
  }, o.channelPort ?? channelSink);
  memory = source.options.kernels.memory;
  if (source.options.multifd && !o.writeChannel && !o.channelPort) {
    source.dispose();
    throw new VmstreamError("RANGE", "a multifd source needs the transport's writeChannel");
  }
  const downtimeTarget = o.downtimeTarget ?? source.options.downtimeTarget;
  const maxRounds = o.maxRounds ?? source.options.maxRounds;
  const roundBytes = o.roundBytes ?? Infinity;
  const roundSeconds = o.roundSeconds ?? Infinity;
  const partCap = Math.floor(Math.min(o.partBytes ?? 4 << 20, Number.isFinite(bandwidth) ? Math.max(64 << 10, bandwidth * 0.05) : Infinity));
  if (!(partCap >= 64) || !(downtimeTarget >= 0) || !Number.isInteger(maxRounds) || maxRounds < 1 || !(roundBytes > 0) || !(roundSeconds > 0)) {
    source.dispose();
    throw new VmstreamError("RANGE", "bad live options", {
      detail: `partBytes ${o.partBytes} downtimeTarget ${downtimeTarget} maxRounds ${maxRounds} roundBytes ${roundBytes} roundSeconds ${roundSeconds}`,
    });
  }

  const t0 = now();
  let written = 0; // bytes handed to write() and writeChannel()
  let sendSeconds = 0; // wall time outside the guest hook while iterating (for the throughput)
  let sendBytes = 0;
  let stage = "setup";
  let paused = false;
  const rounds: LiveRound[] = [];

  const check = () => {
    if (o.signal?.aborted) throw new VmstreamError("ABORTED", "live migration aborted", { cause: o.signal.reason });
  };
  const abortable = <T>(p: Promise<T>): Promise<T> => {
    const sig = o.signal;
    if (!sig) return p;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(new VmstreamError("ABORTED", "live migration aborted", { cause: sig.reason }));
      if (sig.aborted) return onAbort();
      sig.addEventListener("abort", onAbort, { once: true });
      p.then(
        (v) => (sig.removeEventListener("abort", onAbort), resolve(v)),
        (e) => (sig.removeEventListener("abort", onAbort), reject(e)),
      );
    });
  };
  // Hand the queued chunks (one PART, or setup / the complete phase) to the transport in order, all at once.
  // Their writes stay outstanding while the next PART is encoded: the OS sends this PART meanwhile (double
  // buffering; the chunks are immutable until written: docs/live-migration.md, "Chunk lifetimes").
  let outstanding: Promise<void> | undefined;
  const settle = async () => {
    const p = outstanding;
    outstanding = undefined;
    if (p) await abortable(p);
  };
  const drain = async () => {
    if (copyStart >= 0) {
      copySeconds += now() - copyStart;
      copyStart = -1;
    }
    takeCopies();
    if (queue.length === 0 && !channelQueues.some((q) => q && q.length > 0) && !o.channelPort) return;
    await settle();
    const waits: Promise<void>[] = [];
    const wait = (r: void | Promise<void>) => {
      if (r && typeof (r as Promise<void>).then === "function") waits.push(r as Promise<void>);
    };
    for (const c of queue) {
      written += c.length;
      wait(o.write(c, () => ByteWriter.release(c)));
    }
    queue.length = 0;
    channelQueues.forEach((q, i) => {
      for (const c of q) {
        written += c.length;
        wait(o.writeChannel!(i, c, () => ByteWriter.release(c)));
      }
      q.length = 0;
    });
    if (o.channelPort) waits.push(o.channelPort.settled());
    if (waits.length > 0) {
      outstanding = waits.length === 1 ? waits[0]! : Promise.all(waits).then(() => undefined);
      outstanding.catch(() => undefined); // observed by the next settle()
    }
  };
  // The bandwidth cap: wait until `written` is within the budget of the wall time since t0.
  const pace = async () => {
    if (!Number.isFinite(bandwidth)) return;
    const ahead = written / bandwidth - (now() - t0);
    if (ahead > 0) await abortable(sleep(ahead));
  };
  // Channel threads read their pages when they write them, as QEMU's do: safe with a dirty log (a later write
  // marks the page again), not with the scan against a shadow (a page written and written back before the scan
  // would look unchanged), so then the guest waits for the channels.
  const channelsRead = async () => {
    if (o.channelPort && !source.options.dirtyLog) await settle();
  };
  const guest = async (): Promise<number> => {
    const t = now();
    if (o.letGuestRun) await abortable(Promise.resolve(o.letGuestRun()));
    else await yieldTurn();
    return now() - t;
  };

  try {
    source.setup();
    await drain();
    stage = "iterate";
    let reason: LiveSwitchReason | undefined;
    let expected = Infinity;
    // the round's bytes as the source counts them (multifd with compression: pages uncompressed; else the bytes written)
    const counted = () => source.bytesWritten;
    for (;;) {
      check();
      const rs = now();
      const before = counted();
      const dirtyBefore = source.dirtyPages();
      let parts = 0;
      let guestSeconds = 0;
      for (;;) {
        const left = roundBytes - (counted() - before);
        const budget = Math.max(64, Math.min(partCap, left));
        const at = counted();
        const ts = now();
        source.iterate(budget);
        await drain();
        parts++;
        const part = counted() - at;
        sendSeconds += now() - ts;
        sendBytes += part;
        // the engine stops a PART under its budget only when nothing is left to send
        if (part < budget || counted() - before >= roundBytes || now() - rs >= roundSeconds) break;
        await pace();
        await channelsRead();
        guestSeconds += await guest();
        check();
      }
      const dirtyAfterSend = source.dirtyPages();
      await pace();
      await channelsRead();
      guestSeconds += await guest();
      const ss = now();
      const p = source.sync(now() - rs);
      const syncSeconds = now() - ss;
      const throughput = sendSeconds > 0 ? sendBytes / sendSeconds : Infinity;
      const rate = Math.min(throughput, bandwidth);
      const pending = source.pendingBytes(p.dirtyPages);
      expected = syncSeconds + pending / rate;
      const r: LiveRound = {
        round: rounds.length + 1,
        bytes: counted() - before,
        parts,
        pagesSent: dirtyBefore - dirtyAfterSend,
        seconds: now() - rs,
        guestSeconds,
        syncSeconds,
        dirtied: p.dirtied,
        dirtyPages: p.dirtyPages,
        pendingBytes: pending,
        throughput,
        expectedDowntime: expected,
      };
      rounds.push(r);
      o.onRound?.(r);
      const s = source.shouldSwitch();
      reason =
        s === "forced"
          ? "forced"
          : expected <= downtimeTarget
            ? "converged"
            : p.dirtySource === "scan" && pending / rate <= downtimeTarget
              ? "sync-bound"
              : rounds.length >= maxRounds
                ? "max-rounds"
                : undefined;
      if (reason) break;
    }
    check();
    stage = "complete";
    const tp = now();
    paused = true;
    if (o.pause) await abortable(Promise.resolve(o.pause()));
    const pauseSeconds = now() - tp;
    const finalBefore = written;
    const fp = source.complete();
    await drain();
    await settle();
    if (o.end) await abortable(Promise.resolve(o.end()));
    const tEnd = now();
    return {
      reason,
      converged: reason === "converged",
      rounds,
      final: { bytes: written - finalBefore, pagesSent: fp.dirtyPages, seconds: tEnd - tp },
      expectedDowntime: expected,
      downtime: tEnd - tp,
      pauseSeconds,
      totalTime: tEnd - t0,
      totalBytes: written + (o.channelPort?.bytes ?? 0),
      copiedBytes,
      copySeconds,
    };
  } catch (e) {
    let resumed = false;
    let resumeError: unknown;
    if (paused && o.resume) {
      try {
        await o.resume();
        resumed = true;
      } catch (re) {
        resumeError = re;
      }
    }
    const aborted = e instanceof VmstreamError && e.code === "ABORTED";
    const why = e instanceof Error ? e.message : String(e);
    throw new LiveMigrationError(aborted ? "ABORTED" : "MIGRATION_FAILED", aborted ? "live migration aborted" : "live migration failed", {
      stage,
      paused,
      resumed,
      rounds,
      offset: written,
      detail: `${stage}: ${why}${paused ? (resumed ? "; guest resumed" : resumeError !== undefined ? `; resume failed: ${String(resumeError)}` : "; guest left paused (no resume hook)") : ""}`,
      cause: e,
    });
  } finally {
    source.dispose();
  }
}
