#!/usr/bin/env node
import { createHash } from "node:crypto";
// One side of a two-process live migration over TCP (tests/unit/live-two-process.test.ts), on the built dist/.
// Prints JSON lines on stdout: {event:"listening",port} (dest), {event:"round",...} and {event:"paused",hashes}
// (source), then one final {event:"result",status:"complete"|"failed",...}. Exit 0 only when complete.
//
//   node live-peer.mjs dest [--die-after-bytes N]
//   node live-peer.mjs source --port P [--ram-mib 32] [--bandwidth-mib 32] [--dirty-rate 2000] [--dirty log|scan]
//        [--xbzrle-mib N] [--downtime-ms 20] [--max-rounds 30] [--break-after-pause] [--seed 1]
import net from "node:net";
import { parseArgs } from "node:util";

const lib = await import(new URL("../../dist/index.js", import.meta.url).href);
const { createKernels, GuestWorkload, MigrationSource, StreamDecoder, ramOf, runLiveSource } = lib;
const { connectTcp, StreamWriter } = await import(new URL("../../dist/node.js", import.meta.url).href);

const mode = process.argv[2];
const { values: a } = parseArgs({
  args: process.argv.slice(3),
  options: {
    port: { type: "string" },
    "ram-mib": { type: "string", default: "32" },
    "bandwidth-mib": { type: "string", default: "32" },
    "dirty-rate": { type: "string", default: "2000" },
    dirty: { type: "string", default: "log" },
    "xbzrle-mib": { type: "string", default: "0" },
    "downtime-ms": { type: "string", default: "20" },
    "max-rounds": { type: "string", default: "30" },
    "break-after-pause": { type: "boolean", default: false },
    "die-after-bytes": { type: "string" },
    seed: { type: "string", default: "1" },
  },
});
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const sha = (u8) => createHash("sha256").update(u8).digest("hex");

if (mode === "dest") {
  const dieAfter = a["die-after-bytes"] !== undefined ? Number(a["die-after-bytes"]) : Infinity;
  const server = net.createServer((sock) => {
    server.close(); // one migration
    const d = new StreamDecoder({ materialize: { ram: true } });
    let bytes = 0;
    let failed = null;
    let done = false;
    const finish = (status, extra) => {
      if (done) return;
      done = true;
      out({ event: "result", status, bytes, ...extra });
      process.exitCode = status === "complete" ? 0 : 1;
      sock.destroy();
    };
    sock.on("data", (c) => {
      bytes += c.length;
      if (bytes >= dieAfter) process.kill(process.pid, "SIGKILL");
      if (failed) return;
      try {
        d.push(c);
      } catch (e) {
        failed = e;
      }
    });
    sock.on("error", (e) => {
      failed ??= e;
    });
    sock.on("close", () => {
      if (done) return;
      if (failed) return finish("failed", { error: String(failed.message ?? failed) });
      try {
        const r = d.end();
        const ram = ramOf(r);
        if (!r.completeness?.complete || !ram) return finish("failed", { error: "incomplete stream" });
        const hashes = Object.fromEntries(ram.blocks.map((b) => [b.name, sha(b.data)]));
        finish("complete", { hashes, records: { zero: ram.records.zero, normal: ram.records.normal, xbzrle: ram.records.xbzrle } });
      } catch (e) {
        finish("failed", { error: String(e.message ?? e) });
      }
    });
  });
  server.listen(0, "127.0.0.1", () => out({ event: "listening", port: server.address().port }));
} else if (mode === "source") {
  const P = 4096;
  const ramBytes = Number(a["ram-mib"]) << 20;
  const k = createKernels();
  const ptr = k.alloc(ramBytes, 4096);
  const guest = new GuestWorkload(k, ptr, {
    ramBytes,
    dirtyRate: Number(a["dirty-rate"]),
    workingSetPages: Math.min(ramBytes / P, 2048),
    hotPages: 128,
    seed: Number(a.seed),
  });
  guest.init();
  const block = { name: "pc.ram", ptr, length: ramBytes };
  // The guest on a real timer: every tick it writes what its dirty rate allows for the wall time since the last.
  let last = performance.now();
  const tick = setInterval(() => {
    const t = performance.now();
    guest.run((t - last) / 1000);
    last = t;
  }, 2);

  // vmstream's transport: backpressure, and a peer that hung up rejects the next write
  const sock = await connectTcp({ port: Number(a.port) });
  const out_ = new StreamWriter(sock, { copy: false, name: "the destination" });
  let paused = false;
  let afterPause = 0;
  const write = (c, written) => {
    if (a["break-after-pause"] && paused && afterPause++ === 1) sock.destroy(); // the stream breaks in the complete phase
    return out_.write(c, written); // written(): the chunk's buffer may be reused
  };
  const end = () => out_.end();
  const bw = Number(a["bandwidth-mib"]) * 1048576;
  const xbz = Number(a["xbzrle-mib"]) << 20;
  try {
    const r = await runLiveSource(
      (sink) =>
        new MigrationSource(
          {
            kernels: k,
            blocks: [block],
            bandwidth: bw,
            downtimeTarget: Number(a["downtime-ms"]) / 1000,
            maxRounds: Number(a["max-rounds"]),
            ...(a.dirty === "log" ? { dirtyLog: () => guest.takeDirtyLog() } : {}),
            ...(xbz ? { xbzrleCacheBytes: xbz } : {}),
          },
          sink,
        ),
      {
        write,
        end,
        bandwidth: bw,
        pause: () => {
          guest.paused = true;
          paused = true;
          out({ event: "paused", writes: guest.writes, hashes: { "pc.ram": sha(k.u8.subarray(ptr, ptr + ramBytes)) } });
        },
        resume: () => {
          guest.paused = false;
          last = performance.now();
        },
        onRound: (r) => out({ event: "round", ...r }),
      },
    );
    out({ event: "result", status: "complete", ...r, guestWrites: guest.writes });
  } catch (e) {
    // the guest must be running again: its writes go on
    const w0 = guest.writes;
    await new Promise((res) => setTimeout(res, 100));
    out({
      event: "result",
      status: "failed",
      error: String(e.message),
      code: e.code,
      stage: e.stage,
      paused: e.paused,
      resumed: e.resumed,
      guestPaused: guest.paused,
      guestWritesAfter: guest.writes - w0,
    });
    process.exitCode = 1;
  } finally {
    clearInterval(tick);
    sock.destroy();
  }
} else {
  process.stderr.write("usage: live-peer.mjs dest|source ...\n");
  process.exitCode = 2;
}
