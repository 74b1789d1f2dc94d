// Entry script of one multifd channel's worker thread (started by MultifdChannelWorkers, multifd-workers.ts):
// it owns the channel's TCP connection and compression stream, and turns the packet descriptions the engine
// posts into bytes, reading the pages straight out of the shared kernels' memory (no copy for `none`). Like
// QEMU's one thread per channel. Node-only. Messages: multifd-workers.ts.
import type { Socket } from "node:net";
import { parentPort } from "node:worker_threads";
import { nodeStreamCodecs } from "../io/codecs-node.js";
import { ByteWriter } from "../io/writer.js";
import { MultifdChannelWriter } from "../sections/ram/multifd.js";
import type { ChannelWorkerReply, ChannelWorkerRequest } from "./multifd-workers.js";
import { connectTcp } from "./transport.js";

const port = parentPort;
if (!port) throw new Error("multifd-channel-worker.js runs as a worker thread of MultifdChannelWorkers");
const reply = (m: ChannelWorkerReply) => port.postMessage(m);
const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

let memory: WebAssembly.Memory | undefined;
let writer: MultifdChannelWriter | undefined;
let socket: Socket | undefined;
let failed = false;
/** What came before the connection: written once it is up, in order. */
const early: ChannelWorkerRequest[] = [];
// Runs of pages under 16 KiB are copied next to their header, bigger ones go out as views of guest memory: a
// writev of many page-sized pieces cost the socket several times a copy (measured: bench:live, worker rows).
const out = new ByteWriter({ initialCapacity: 1 << 20, borrowMin: 16 << 10 });

function fail(e: unknown): void {
  if (failed) return;
  failed = true;
  socket?.destroy();
  reply({ kind: "error", message: messageOf(e) });
}

/** Hand `chunks` to the socket as one write batch; `bytes` are reported once it took them all. */
function send(chunks: Uint8Array[], bytes: number): void {
  const s = socket!;
  s.cork();
  for (let i = 0; i < chunks.length - 1; i++) s.write(chunks[i]!);
  s.write(chunks[chunks.length - 1]!, (e) => {
    if (e) return fail(e);
    for (const c of chunks) ByteWriter.release(c);
    reply({ kind: "written", bytes });
  });
  s.uncork();
}

function handle(m: ChannelWorkerRequest): void {
  if (failed) return;
  if (m.kind === "raw") {
    send([m.bytes], m.bytes.length);
    return;
  }
  if (m.kind === "packet") {
    const j = m.job;
    // a fresh view each time: a grown shared memory has a longer buffer (the old one stays valid)
    const u8 = new Uint8Array(memory!.buffer);
    const data: Uint8Array[] = [];
    for (let r = 0; r < j.runs.length; r += 2) data.push(u8.subarray(j.runs[r]!, j.runs[r]! + j.runs[r + 1]!));
    writer!.packetInto(
      out,
      { sync: j.sync, normalPages: j.normalPages, packetNum: j.packetNum, offsets: j.offsets, ...(j.block ? { block: j.block } : {}) },
      data,
    );
    const chunks = out.takeChunks().filter((c) => c.length > 0);
    let bytes = 0;
    for (const c of chunks) bytes += c.length;
    send(chunks, bytes);
    return;
  }
  if (m.kind === "end") {
    socket!.end(() => reply({ kind: "ended" }));
  }
}

port.on("message", (m: ChannelWorkerRequest) => {
  try {
    if (m.kind === "init") {
      // a new migration on this thread: the last one ended (or the thread is new)
      writer?.dispose();
      socket = undefined;
      failed = false;
      early.length = 0;
      memory = m.memory;
      writer = new MultifdChannelWriter(m.pageSize, m.compression, { codecs: nodeStreamCodecs, ...(m.level !== undefined ? { level: m.level } : {}) });
      return;
    }
    if (m.kind === "connect") {
      connectTcp({ host: m.host, port: m.port, ...(m.timeoutMs !== undefined ? { timeoutMs: m.timeoutMs } : {}) }).then((s) => {
        socket = s;
        s.setNoDelay(true);
        s.on("error", fail);
        reply({ kind: "connected" });
        try {
          for (const e of early.splice(0)) handle(e);
        } catch (e) {
          fail(e);
        }
      }, fail);
      return;
    }
    if (!socket) early.push(m);
    else handle(m);
  } catch (e) {
    fail(e);
  }
});
reply({ kind: "idle" });
