// Live (precopy) migration of a running v86 guest over TCP, between two emulators (usually two Node processes):
// the source engine over v86's memory driven in real time, the destination decoding pages straight into the
// stopped v86's RAM, and a return path (one JSON line) on which the source's guest stays stopped only after an
// "ok"; RAM pages optionally over QEMU-style multifd channels (extra connections). docs/v86.md, "Live migration".
import { createHash } from "node:crypto";
import type { Socket } from "node:net";
import type { StreamCodecs } from "../io/codec.js";
import { VmstreamError } from "../io/errors.js";
import { type DestinationPages, MigrationDestination } from "../migration/destination.js";
import { IncomingMigration } from "../migration/incoming.js";
import { type LiveOutcome, type LiveRound, runLiveSource } from "../migration/live.js";
import { MultifdConnections } from "../migration/multifd-out.js";
import { type MigrationDevice, MigrationSource } from "../migration/source.js";
import { listenTcp, parseEndpoint } from "../migration/transport.js";
import type { MultifdCompression } from "../sections/ram/multifd.js";
import type { MultifdSourceOptions } from "../sections/ram/multifd-source.js";
import { V86_MACHINE, V86_RAM_BLOCK, type V86Machine } from "./adapter.js";
import { RAM_SECTION_ID, stateDevice, v86Devices, v86StateOf } from "./snapshot.js";

export type TcpEndpoint = string | { readonly host?: string; readonly port: number };

function tcp(e: TcpEndpoint): { host: string; port: number } {
  if (typeof e !== "string") return { host: e.host ?? "127.0.0.1", port: e.port };
  const p = parseEndpoint(e.startsWith("tcp:") ? e : `tcp:${e}`);
  if (p.kind !== "tcp") throw new VmstreamError("RANGE", "a v86 migration endpoint is tcp:HOST:PORT", { detail: e });
  return { host: p.host, port: p.port };
}

const now = () => performance.now();

/** The destination's answer. */
export interface DestinationReply {
  readonly ok: boolean;
  readonly error?: string;
  /** Stream bytes received. */
  readonly bytes?: number;
  /** Page records applied, by kind. */
  readonly pages?: DestinationPages;
  /** ms from the last stream byte to the guest running (state check, restore, run). */
  readonly restoreMs?: number;
  /** sha256 of the RAM before the guest ran (when asked to verify). */
  readonly ramSha256?: string;
  readonly verifyMs?: number;
}

export interface V86SourceOptions {
  /** Seconds the guest may stay stopped (default 0.1: a 256 MiB RAM scan alone takes tens of ms). */
  readonly downtimeTarget?: number;
  /** Rounds before the switch-over is forced (default 30). */
  readonly maxRounds?: number;
  /** Bytes per second (default: as fast as the socket takes them). */
  readonly bandwidth?: number;
  /** Bytes of one ram PART (default 2 MiB: the guest runs between PARTs). */
  readonly partBytes?: number;
  /**
   * XBZRLE after the first pass against the dirty scan's shadow copy, which always holds what the destination
   * has (default true without multifd): one slot per page, no memory beyond the shadow. Not with multifd.
   */
  readonly xbzrle?: boolean;
  /**
   * RAM pages over this many extra connections, as QEMU's multifd (the destination must expect them:
   * receiveV86's `channels`); zero pages and everything else stay on the main connection.
   */
  readonly multifd?: MultifdSourceOptions;
  /** Hash RAM at the pause and ask the destination to do the same before its guest runs (adds to the downtime). */
  readonly verify?: boolean;
  /** Called with the stopped machine right before the final pages go out (tests read RAM here). */
  readonly onPaused?: (machine: V86Machine) => void | Promise<void>;
  readonly onRound?: (r: LiveRound) => void;
  /** How long to wait for the destination's answer after the last byte (default 30 s). */
  readonly replyTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface V86SourceOutcome {
  readonly live: LiveOutcome;
  readonly reply: DestinationReply;
  /** ms from the source's stop() to the destination's answer that its guest runs. */
  readonly downtimeMs: number;
  /** ms of the whole migration (connect to answer). */
  readonly totalMs: number;
  /** Bytes of the v86/state section. */
  readonly stateBytes: number;
  /** sha256 of the source RAM at the pause (verify only) and whether the destination's equals it. */
  readonly ramSha256?: string;
  readonly ramMatches?: boolean;
}

function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** Read one JSON line from a socket (the destination's answer), or fail when it closes first. */
function readReply(socket: Socket): Promise<DestinationReply> {
  return new Promise((resolve, reject) => {
    let text = "";
    const done = (f: () => void) => {
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.off("error", onClose);
      f();
    };
    const onData = (b: Buffer) => {
      text += b.toString("utf8");
      const nl = text.indexOf("\n");
      if (nl < 0) {
        if (text.length > 65536) done(() => reject(new VmstreamError("BAD_VALUE", "the destination's answer is not a JSON line")));
        return;
      }
      done(() => {
        try {
          const r = JSON.parse(text.slice(0, nl)) as DestinationReply;
          if (typeof r.ok !== "boolean") throw new Error("no ok field");
          resolve(r);
        } catch (e) {
          reject(new VmstreamError("BAD_VALUE", "the destination's answer is not valid", { detail: e instanceof Error ? e.message : String(e) }));
        }
      });
    };
    const onClose = () => done(() => reject(new VmstreamError("IO", "the destination closed the connection without an answer")));
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.once("error", onClose);
  });
}

/**
 * Migrate a running v86 guest to a destination listening at `endpoint` (`receiveV86`). Resolves once the
 * destination's guest runs; the source's guest is then left stopped (destroy it: resuming it would fork the
 * guest). Rejects with a VmstreamError when the migration failed, with the source's guest running again.
 */
export async function migrateV86Source(machine: V86Machine, endpoint: TcpEndpoint, opts: V86SourceOptions = {}): Promise<V86SourceOutcome> {
  const t0 = now();
  const { host, port } = tcp(endpoint);
  // the main connection, then the multifd channels' (none without multifd); the live driver copies chunks that
  // view v86's memory, so the writers need not copy again
  const conns = await MultifdConnections.open({ host, port }, opts.multifd?.channels ?? 0, { timeoutMs: opts.connectTimeoutMs ?? 10_000 });
  const socket = conns.mainSocket;
  const reply = readReply(socket);
  reply.catch(() => undefined); // observed below; a failure before then surfaces through the writer
  const devices: MigrationDevice[] = [];
  let stateBytes = 0;
  let pauseAt = 0;
  let ramSha: string | undefined;
  let live: LiveOutcome;
  const k = machine.kernels();
  try {
    live = await runLiveSource(
      (sink, channelSink) =>
        new MigrationSource(
          {
            kernels: k,
            blocks: [machine.ramBlock()],
            // the engine's virtual clock: one iterate() of the pre-extension engine sends partBytes
            bandwidth: (opts.partBytes ?? 2 << 20) / 0.1,
            roundTime: 0.1,
            downtimeTarget: opts.downtimeTarget ?? 0.1,
            maxRounds: opts.maxRounds ?? 30,
            ...((opts.xbzrle ?? !opts.multifd) ? { xbzrleShadow: true } : {}),
            ...(opts.multifd ? { multifd: opts.multifd } : {}),
            devices,
            machine: V86_MACHINE,
            ramSectionId: RAM_SECTION_ID,
          },
          sink,
          channelSink,
        ),
      {
        // the end half-closes each connection (the channels first): the destination sees the end of the stream
        // and answers on the main connection's open half
        ...conns.liveTransport(),
        pause: async () => {
          pauseAt = now();
          await machine.pause();
          // device state at the pause; the engine writes it after the ram END
          const payload = await machine.stateSection();
          stateBytes = payload.length;
          devices.push(stateDevice(payload) as MigrationDevice);
          if (opts.verify) ramSha = sha256(machine.ramView());
          await opts.onPaused?.(machine);
        },
        resume: () => machine.resume(),
        downtimeTarget: opts.downtimeTarget ?? 0.1,
        maxRounds: opts.maxRounds ?? 30,
        partBytes: opts.partBytes ?? 2 << 20,
        ...(opts.bandwidth !== undefined ? { bandwidth: opts.bandwidth } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(opts.onRound ? { onRound: opts.onRound } : {}),
      },
    );
  } catch (e) {
    // runLiveSource resumed the guest if it had stopped it
    conns.abort();
    throw e;
  }
  // From here the guest is stopped and every byte is out: only an "ok" keeps it stopped.
  let r: DestinationReply;
  try {
    let timer: NodeJS.Timeout | undefined;
    const ms = opts.replyTimeoutMs ?? 30_000;
    try {
      r = await Promise.race([
        reply,
        new Promise<never>((_, fail) => {
          timer = setTimeout(() => fail(new VmstreamError("TIMEOUT", "no answer from the destination", { detail: `${ms} ms` })), ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    if (!r.ok) throw new VmstreamError("MIGRATION_FAILED", "the destination refused the migration", { detail: r.error ?? "no reason given" });
    if (ramSha !== undefined && r.ramSha256 !== undefined && r.ramSha256 !== ramSha) {
      // the destination's guest already runs on different RAM: stop nothing, but say so loudly
      throw new VmstreamError("MISMATCH", "the destination's RAM differs from the source's at the pause", { detail: `${r.ramSha256} vs ${ramSha}` });
    }
  } catch (e) {
    const mismatch = e instanceof VmstreamError && e.code === "MISMATCH";
    if (!mismatch) await machine.resume();
    conns.abort();
    throw e;
  }
  const end = now();
  socket.end();
  return {
    live,
    reply: r,
    downtimeMs: end - pauseAt,
    totalMs: end - t0,
    stateBytes,
    ...(ramSha !== undefined ? { ramSha256: ramSha, ramMatches: r.ramSha256 === ramSha } : {}),
  };
}

export interface V86ReceiveOptions {
  /** Called once listening, with the real port (listen on port 0 for an ephemeral one). */
  readonly onListening?: (address: { host: string; port: number }) => void;
  /** Start the guest after the restore (default true). */
  readonly run?: boolean;
  /** Hash RAM before the guest runs and send it back (adds to the downtime). */
  readonly verify?: boolean;
  /** Called with the machine after the restore and before it runs (tests read RAM here). */
  readonly beforeRun?: (machine: V86Machine) => void | Promise<void>;
  readonly onProgress?: (p: { bytes: number; phase: string; pages: DestinationPages }) => void;
  /** Give up when no peer connects within this time (default: wait forever). */
  readonly acceptTimeoutMs?: number;
  /** The source sends RAM pages over this many multifd channels (V86SourceOptions.multifd). */
  readonly channels?: number;
  /** The channels' compression, when the source uses one (default: whatever they carry). */
  readonly compression?: MultifdCompression;
  /** Decompressors for zlib / zstd channels (vmstream/node: nodeStreamCodecs). */
  readonly codecs?: StreamCodecs;
}

export interface V86ReceiveOutcome {
  readonly bytes: number;
  readonly pages: DestinationPages;
  readonly restoreMs: number;
  readonly ramSha256?: string;
}

/**
 * Receive one live migration into `machine` (built with the source's options and `autostart: false`; it must
 * not have run). Resolves once the guest runs; rejects with a VmstreamError (the source is told why, and its
 * guest resumes) when the stream breaks off, is malformed, or comes from a differently built machine.
 */
export async function receiveV86(machine: V86Machine, endpoint: TcpEndpoint, opts: V86ReceiveOptions = {}): Promise<V86ReceiveOutcome> {
  if (machine.running) throw new VmstreamError("STATE", "the destination machine must be stopped (create it with autostart: false)");
  const { host, port } = tcp(endpoint);
  const inbound = opts.channels ? await listenMultifd(host, port, opts) : await acceptOne(host, port, opts);
  const answer = (r: DestinationReply) =>
    new Promise<void>((ok) => {
      const socket = inbound.answerSocket();
      if (!socket || socket.destroyed || !socket.writable) return ok();
      socket.write(JSON.stringify(r) + "\n", () => ok());
    });
  let trailerDone = false;
  const dest = new MigrationDestination({
    kernels: machine.kernels(),
    devices: v86Devices,
    strictDevices: true,
    requireVmdesc: true,
    ramBlock: (name, length) => {
      if (name !== V86_RAM_BLOCK) throw new VmstreamError("MISMATCH", "the stream has a RAM block v86 does not", { detail: `"${name}" (${length} bytes)` });
      return machine.ramBlock();
    },
    onEvent: (e) => {
      // refuse another machine's stream at its first section instead of after the whole RAM
      if (e.type === "configuration" && e.configuration.machine !== V86_MACHINE) {
        throw new VmstreamError("MISMATCH", "not a v86 migration", {
          section: { idstr: "configuration", id: 0 },
          detail: `machine "${e.configuration.machine}"`,
        });
      }
      if (e.type === "vmdesc") trailerDone = true;
    },
    ...(opts.onProgress ? { onProgress: (p) => opts.onProgress!({ bytes: p.bytes, phase: p.phase, pages: p.pages }) } : {}),
  });
  try {
    // Read until the vmdesc trailer is complete: the source keeps its side open for the answer.
    await inbound.read(
      (c) => dest.push(c) && !trailerDone,
      (e) => dest.abort(e),
    );
    const result = dest.end();
    {
      if (result.status !== "complete" || !result.decoded) {
        throw result.error ?? new VmstreamError("MIGRATION_FAILED", "the migration did not complete");
      }
      const t = now();
      const ram = result.ram?.blocks ?? [];
      if (ram.length !== 1)
        throw new VmstreamError("MISMATCH", "a v86 migration has exactly one RAM block", {
          section: { idstr: "ram", id: RAM_SECTION_ID },
          detail: `${ram.length} blocks`,
        });
      await machine.restoreStateSection(v86StateOf(result.decoded.devices));
      let ramSha256: string | undefined;
      let verifyMs: number | undefined;
      if (opts.verify) {
        const tv = now();
        ramSha256 = sha256(machine.ramView());
        verifyMs = now() - tv;
      }
      await opts.beforeRun?.(machine);
      if (opts.run !== false) await machine.resume();
      const restoreMs = now() - t;
      const pages = result.progress.pages;
      await answer({ ok: true, bytes: result.bytes, pages, restoreMs, ...(ramSha256 ? { ramSha256, verifyMs } : {}) });
      inbound.answerSocket()?.end();
      inbound.close();
      return { bytes: result.bytes, pages, restoreMs, ...(ramSha256 ? { ramSha256 } : {}) };
    }
  } catch (e) {
    const err = VmstreamError.wrap(e);
    await answer({ ok: false, error: err.message });
    inbound.answerSocket()?.destroy();
    inbound.close();
    throw err;
  } finally {
    dest.dispose();
  }
}

/** The destination's side of the connections: the stream's bytes in order, and the socket the answer goes back on. */
interface Inbound {
  answerSocket(): Socket | undefined;
  /** Hand every chunk to `push` until it returns false or the stream ends; a broken input goes to `fail`. */
  read(push: (chunk: Uint8Array) => boolean, fail: (e: unknown) => void): Promise<void>;
  /** Stop listening; drop what is left open (the answer has been written). */
  close(): void;
}

/** One connection: the whole stream. */
async function acceptOne(host: string, port: number, opts: V86ReceiveOptions): Promise<Inbound> {
  const listener = await listenTcp({ host, port });
  opts.onListening?.({ host: listener.host, port: listener.port });
  let timer: NodeJS.Timeout | undefined;
  if (opts.acceptTimeoutMs !== undefined) timer = setTimeout(() => void listener.close(), opts.acceptTimeoutMs);
  let socket: Socket;
  try {
    socket = await listener.accept();
  } finally {
    if (timer) clearTimeout(timer);
    await listener.close();
  }
  // a peer that resets the connection must not crash the process: errors are handled where data is read
  socket.on("error", () => undefined);
  // The source half-closes after the vmdesc; our side stays open for the answer.
  socket.allowHalfOpen = true;
  return {
    answerSocket: () => socket,
    read: (push, fail) =>
      new Promise<void>((resolve) => {
        const finish = () => {
          socket.off("data", onData);
          socket.off("end", finish);
          socket.off("close", finish);
          socket.off("error", onError);
          resolve();
        };
        const onData = (b: Buffer) => {
          if (!push(new Uint8Array(b.buffer, b.byteOffset, b.byteLength))) finish();
        };
        const onError = (e: Error) => {
          fail(e);
          finish();
        };
        socket.on("data", onData);
        socket.once("end", finish);
        socket.once("close", finish);
        socket.once("error", onError);
      }),
    close: () => undefined,
  };
}

/** A multifd migration: the main connection and the channels, joined into one stream (IncomingMigration). */
async function listenMultifd(host: string, port: number, opts: V86ReceiveOptions): Promise<Inbound> {
  const incoming = await IncomingMigration.listen(
    { host, port },
    {
      channels: opts.channels!,
      ...(opts.compression ? { compression: opts.compression } : {}),
      ...(opts.codecs ? { codecs: opts.codecs } : {}),
      allowHalfOpen: true,
    },
  );
  opts.onListening?.({ host, port: incoming.port });
  return {
    answerSocket: () => incoming.mainSocket,
    read: async (push, fail) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((_, reject) => {
        if (opts.acceptTimeoutMs === undefined) return;
        timer = setTimeout(() => {
          if (incoming.mainSocket) return;
          incoming.close();
          reject(new VmstreamError("TIMEOUT", "no migration connected", { detail: `${opts.acceptTimeoutMs} ms` }));
        }, opts.acceptTimeoutMs);
      });
      try {
        const all = (async () => {
          for await (const c of incoming.source) if (!push(c)) break;
        })();
        await Promise.race([all, timeout]);
      } catch (e) {
        fail(e);
      } finally {
        clearTimeout(timer);
      }
    },
    close: () => incoming.close(),
  };
}
