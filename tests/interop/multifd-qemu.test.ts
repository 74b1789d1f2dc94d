// Issue 12: QEMU 7.2's multifd mode with real QEMU over TCP.
//  - QEMU (multifd, 2 and 4 channels; none, zlib, zstd) -> `vmstream receive --extract --out`: the extracted RAM
//    equals QEMU's pmemsave of the source; the --out recording is one ordinary stream that `check` passes and a
//    QEMU without multifd loads (memory equal again);
//  - `receive --forward` between two multifd QEMUs: the destination completes and its guest runs on; the --raw
//    connections replayed with `send DIR` into a fresh multifd QEMU load the same memory;
//  - a channel cut mid-migration (a proxy drops one channel's connection): QEMU and receive both fail, receive
//    naming the channel, and nothing complete-looking is left;
//  - `vmstream send --multifd-channels N` of a recorded stream into a multifd QEMU: memory = the stream's RAM,
//    the guest runs on;
//  - the library's live source engine over 2 multifd channels (runLiveSourceTcp) into a multifd QEMU: the RAM and
//    devices of a saved guest, its dirtied pages rewritten between PARTs; the destination completes, its memory
//    equals the source RAM at the pause, the guest runs on; also with each channel on a worker thread of its own.
// The source guest is the multiboot guest of tests/helpers/mbguest.ts (rewrites a word in each of 1024 pages).
import { existsSync, readFileSync } from "node:fs";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { beforeAll, expect, it } from "vitest";
import { nodeStreamCodecs } from "../../src/io/codecs-node.js";
import { nodeInflate } from "../../src/io/node.js";
import { createKernels } from "../../src/kernels/index.js";
import { sharedKernelMemory } from "../../src/kernels/pool.js";
import { runLiveSourceTcp } from "../../src/migration/multifd-out.js";
import { MigrationSource } from "../../src/migration/source.js";
import type { QmpMigrationInfo } from "../../src/qmp/index.js";
import { decodeBytes, ramOf } from "../../src/sections/stream.js";
import {
  cliExitCode,
  cliListeningPort,
  expectMemory,
  listenIncoming,
  loadInto,
  mbguestCounter,
  pcRamRanges,
  qemuSuite,
  runVmstream,
  saveStopped,
  sleep,
  startMbguest,
  waitIncoming,
} from "../helpers/interop.js";
import { tsWorkerScript } from "../helpers/kernel-workers.js";
import { MBGUEST_DIRTY, writeMbguest } from "../helpers/mbguest.js";
import { engineOptionsOf, ramBlockBytes } from "../helpers/model-stream.js";
import { describeQemu, pmemsave, type QemuInstance, startQemu } from "../helpers/qemu.js";

const X86 = "qemu-system-x86_64";
const MIB = 1024 * 1024;
const GUEST_MIB = 32;
const RANGES = pcRamRanges(GUEST_MIB);
const FINAL = new Set(["completed", "failed", "cancelled"]);

type Compression = "none" | "zlib" | "zstd";

/** multifd on, N channels, the compression; as fast as the machine goes. */
async function multifd(q: QemuInstance, channels: number, compression: Compression): Promise<void> {
  await q.qmp.execute("migrate-set-capabilities", { capabilities: [{ capability: "multifd", state: true }] });
  await q.qmp.execute("migrate-set-parameters", { "multifd-channels": channels, "multifd-compression": compression, "max-bandwidth": 10 * 2 ** 30 });
}

async function migrate(src: QemuInstance, uri: string, timeoutMs = 30_000): Promise<QmpMigrationInfo> {
  await src.qmp.execute("migrate", { uri });
  const t0 = performance.now();
  for (;;) {
    const info = await src.qmp.execute("query-migrate");
    if (info.status !== undefined && FINAL.has(info.status)) return info;
    if (performance.now() - t0 > timeoutMs) throw new Error(`source: no final status within ${timeoutMs} ms: ${JSON.stringify(info)}`);
    await sleep(20);
  }
}

const guestArgs = (kernel: string): string[] => ["-machine", "pc", "-m", String(GUEST_MIB), "-kernel", kernel];

describeQemu(X86, "multifd with real QEMU 7.2", () => {
  const scratchOf = qemuSuite();
  let scratch = "";
  let kernel = "";
  beforeAll(() => {
    scratch = scratchOf();
    kernel = join(scratch, "mbguest.bin");
    writeMbguest(kernel);
  });

  const matrix: [number, Compression][] = [
    [2, "none"],
    [2, "zlib"],
    [2, "zstd"],
    [4, "none"],
    [4, "zlib"],
    [4, "zstd"],
  ];
  for (const [channels, compression] of matrix) {
    it(`QEMU multifd ${channels} channels, ${compression} -> receive --extract --out: RAM = source's, the recording checks and loads without multifd`, async () => {
      const tag = `${channels}-${compression}`;
      const dir = join(scratch, `x-${tag}`);
      const rec = join(scratch, `${tag}.mig`);
      const recv = runVmstream(["receive", "tcp:127.0.0.1:0", "--extract", dir, "--out", rec]);
      const port = await cliListeningPort(recv);
      const src = await startMbguest(X86, guestArgs(kernel));
      await multifd(src, channels, compression);
      const info = await migrate(src, `tcp:127.0.0.1:${port}`);
      expect(info.status, src.stderr()).toBe("completed");
      expect(await cliExitCode(recv), recv.stderr()).toBe(0);
      // QEMU 7.2 may queue the last page of a full packet twice (a race in multifd_queue_page, docs/wire-format.md
      // §5.6): the channels can carry a few pages more than QEMU counts as sent
      const pages = Number(new RegExp(`^multifd: ${channels} channels, (\\d+) pages`, "m").exec(recv.stdout())?.[1]);
      expect(pages, recv.stdout()).toBeGreaterThanOrEqual(info.ram!.normal!);
      expect(pages).toBeLessThan(info.ram!.normal! + 64);

      const extracted = readFileSync(join(dir, "ram", "pc.ram.bin"));
      const ram = new Uint8Array(GUEST_MIB * MIB);
      ram.set(extracted);
      await expectMemory(src, ram, RANGES, `receive --extract (${tag})`);
      await src.stop();

      const check = runVmstream(["check", rec]);
      expect(await cliExitCode(check), check.stderr()).toBe(0);
      expect(check.stdout()).toMatch(/^OK: .*complete$/m);
      const r = decodeBytes(new Uint8Array(readFileSync(rec)), { materialize: { ram: true }, inflate: nodeInflate });
      try {
        // every page that came over the channels is a PAGE record of the one stream
        expect(ramOf(r)!.records.normal).toBe(pages);
        expect(Buffer.compare(ramBlockBytes(r, "pc.ram"), ram)).toBe(0);
      } finally {
        r.dispose();
      }
      const dst = await loadInto(X86, guestArgs(kernel), rec);
      await expectMemory(dst, ram, RANGES, `QEMU without multifd loading the recording (${tag})`);
      await dst.stop();
    }, 60_000);
  }

  it("receive --forward between two multifd QEMUs (3 channels, zstd): the destination completes and its guest runs on", async () => {
    const dst = await startQemu({ binary: X86, args: guestArgs(kernel), incoming: "defer" });
    await multifd(dst, 3, "zstd");
    const dstPort = await listenIncoming(dst);
    const rec = join(scratch, "fwd.mig");
    const tap = runVmstream(["receive", "tcp:127.0.0.1:0", "--forward", `tcp:127.0.0.1:${dstPort}`, "--out", rec, "--raw", join(scratch, "fwd-raw")]);
    const port = await cliListeningPort(tap);
    const src = await startMbguest(X86, guestArgs(kernel));
    await multifd(src, 3, "zstd");
    const info = await migrate(src, `tcp:127.0.0.1:${port}`);
    expect(info.status, src.stderr()).toBe("completed");
    const dinfo = await waitIncoming(dst);
    expect(dinfo.status, dst.stderr()).toBe("completed");
    expect(await cliExitCode(tap), tap.stderr()).toBe(0);
    expect(tap.stdout()).toMatch(/^multifd: 3 channels/m);
    // byte-exact relay: what the raw capture kept is what the source sent, connection by connection
    const kept = ["main", "channel-0", "channel-1", "channel-2"].map((n) => readFileSync(join(scratch, "fwd-raw", `${n}.bin`)).length);
    const relayed = Number(/^forward: (\d+) bytes/m.exec(tap.stdout())?.[1]);
    expect(relayed).toBe(kept.reduce((a, b) => a + b, 0));

    const r = decodeBytes(new Uint8Array(readFileSync(rec)), { materialize: { ram: true }, inflate: nodeInflate });
    let counter: number;
    try {
      const ram = ramBlockBytes(r, "pc.ram");
      await expectMemory(src, ram, RANGES, "source vs recording");
      await expectMemory(dst, ram, RANGES, "destination vs recording");
      counter = new DataView(ram.buffer, ram.byteOffset).getUint32(MBGUEST_DIRTY.start, true);
    } finally {
      r.dispose();
    }
    await src.stop();
    await dst.qmp.execute("cont");
    await sleep(300);
    expect((await dst.qmp.execute("query-status")).status).toBe("running");
    expect(await mbguestCounter(dst)).toBeGreaterThan(counter);
    await dst.stop();

    // the raw connections replayed (send DIR) into a fresh multifd QEMU: it loads the same memory again
    const again = await startQemu({ binary: X86, args: guestArgs(kernel), incoming: "defer" });
    await multifd(again, 3, "zstd");
    const againPort = await listenIncoming(again);
    const replay = runVmstream(["send", join(scratch, "fwd-raw"), `tcp:127.0.0.1:${againPort}`]);
    expect(await cliExitCode(replay), replay.stderr()).toBe(0);
    expect((await waitIncoming(again)).status, again.stderr()).toBe("completed");
    const r2 = decodeBytes(new Uint8Array(readFileSync(rec)), { materialize: { ram: true }, inflate: nodeInflate });
    try {
      await expectMemory(again, ramBlockBytes(r2, "pc.ram"), RANGES, "replayed raw connections vs recording");
    } finally {
      r2.dispose();
    }
    await again.stop();
  }, 90_000);

  it("a channel cut mid-migration: QEMU fails, receive fails naming the channel, no complete-looking --out or --extract", async () => {
    const dir = join(scratch, "cut-extract");
    const rec = join(scratch, "cut.mig");
    // an idle timeout well inside the test's time: whatever way QEMU fails, receive must fail too
    const recv = runVmstream(["receive", "tcp:127.0.0.1:0", "--extract", dir, "--out", rec, "--idle-timeout", "10"]);
    const port = await cliListeningPort(recv);
    // a proxy in front of receive: the second connection (QEMU's first channel) is dropped after 200 KB
    const sockets: Socket[] = [];
    let connections = 0;
    const proxy: Server = createServer((inbound) => {
      const n = connections++;
      const outbound = connect(port, "127.0.0.1");
      sockets.push(inbound, outbound);
      let bytes = 0;
      inbound.on("data", (d: Buffer) => {
        bytes += d.length;
        if (n === 1 && bytes > 200_000) {
          inbound.destroy();
          outbound.resetAndDestroy();
          return;
        }
        outbound.write(d);
      });
      outbound.on("data", (d: Buffer) => inbound.write(d));
      for (const s of [inbound, outbound]) s.on("error", () => undefined);
      inbound.on("end", () => outbound.end());
      // QEMU giving up resets its other connections: so does the proxy towards receive
      inbound.on("close", (hadError) => {
        if (hadError) outbound.destroy();
      });
    });
    const proxyPort = await new Promise<number>((ok) => proxy.listen(0, "127.0.0.1", () => ok((proxy.address() as AddressInfo).port)));
    try {
      const src = await startMbguest(X86, guestArgs(kernel));
      await multifd(src, 2, "none");
      // slow enough that QEMU is still writing when the channel goes
      await src.qmp.execute("migrate-set-parameters", { "max-bandwidth": 4 * MIB });
      const info = await migrate(src, `tcp:127.0.0.1:${proxyPort}`);
      expect(info.status).toBe("failed");
      const why = `QEMU: ${info["error-desc"] ?? "?"}; proxy saw ${connections} connections; receive: ${recv.stderr()}`;
      expect(await cliExitCode(recv, 20_000), why).toBe(1);
      expect(recv.stderr(), why).toMatch(/migration failed: .*multifd channel \d.* at byte \d+/);
      expect(existsSync(rec)).toBe(false);
      expect(existsSync(dir)).toBe(false);
      expect((await src.qmp.execute("query-status")).status).toBe("running");
      await src.stop();
    } finally {
      proxy.close();
      for (const s of sockets) s.destroy();
    }
  }, 60_000);

  // the x86-pc-xbzrle fixture (pc -m 64, a multiboot guest, XBZRLE rounds: those records stay on the main stream)
  const sendArgs = ["-machine", "pc", "-m", "64", "-serial", "null"];
  const sendRanges = pcRamRanges(64);
  const fixture = new URL("../fixtures/x86-pc-xbzrle.mig.gz", import.meta.url);
  for (const [channels, compression] of [
    [2, "none"],
    [2, "zlib"],
    [2, "zstd"],
    [4, "none"],
  ] as [number, Compression][]) {
    it(`send --multifd-channels ${channels} --multifd-compression ${compression} into a multifd QEMU: memory = the stream's RAM, the guest runs`, async () => {
      const r = decodeBytes(new Uint8Array(gunzipSync(readFileSync(fixture))), { materialize: { ram: true }, inflate: nodeInflate });
      try {
        const dst = await startQemu({ binary: X86, args: sendArgs, incoming: "defer" });
        await multifd(dst, channels, compression);
        const port = await listenIncoming(dst);
        const send = runVmstream([
          "send",
          fixture.pathname,
          `tcp:127.0.0.1:${port}`,
          "--multifd-channels",
          String(channels),
          "--multifd-compression",
          compression,
        ]);
        expect(await cliExitCode(send), send.stderr()).toBe(0);
        expect(send.stdout()).toMatch(new RegExp(`^multifd: ${channels} channels.* [1-9]\\d* pages`, "m"));
        const dinfo = await waitIncoming(dst);
        expect(dinfo.status, dst.stderr()).toBe("completed");
        const ram = ramBlockBytes(r, "pc.ram");
        await expectMemory(dst, ram, sendRanges, `multifd destination vs sent stream (${channels}, ${compression})`);
        await dst.qmp.execute("cont");
        await sleep(300);
        expect((await dst.qmp.execute("query-status")).status).toBe("running");
        const f = join(dst.dir, "after.bin");
        const range = sendRanges[1]!;
        await pmemsave(dst, range.addr, range.size, f);
        expect(Buffer.compare(readFileSync(f), ram.subarray(range.addr, range.addr + range.size))).not.toBe(0);
        await dst.stop();
      } finally {
        r.dispose();
      }
    }, 60_000);
  }

  const liveCases: [Compression, boolean][] = [
    ["none", false],
    ["zstd", false],
    ["zstd", true],
  ];
  for (const [compression, threads] of liveCases) {
    const how = threads ? "2 channels on worker threads" : "2 channels";
    it(`runLiveSourceTcp, ${how}, ${compression}, into a multifd QEMU: destination completes, memory = source RAM at the pause, the guest runs`, async () => {
      const saved = join(scratch, `live-src-${compression}-${threads}.mig`);
      await saveStopped(X86, guestArgs(kernel), saved, { runMs: 500 });
      const dst = await startQemu({ binary: X86, args: guestArgs(kernel), incoming: "defer" });
      await multifd(dst, 2, compression);
      const port = await listenIncoming(dst);
      // channel threads read the guest's pages out of a shared memory
      const kernels = threads ? { kernels: createKernels({ memory: sharedKernelMemory(64 * MIB) }) } : {};
      const decoded = decodeBytes(new Uint8Array(readFileSync(saved)), { materialize: { ram: true }, inflate: nodeInflate, ...kernels });
      const { atPause, live } = await (async () => {
        // the saved guest's RAM and devices, migrated live: no dirty log (scan against a shadow), and between
        // PARTs the test rewrites words in the pages the guest itself keeps rewriting
        const { dirtyLog: _nothingChanges, ...engine } = engineOptionsOf(decoded);
        const ram = () => ramBlockBytes(decoded, "pc.ram");
        let turn = 0;
        let atPause: Uint8Array | undefined;
        const live = await runLiveSourceTcp(
          `tcp:127.0.0.1:${port}`,
          (sink, channelSink) =>
            new MigrationSource(
              { ...engine, bandwidth: 1e9, downtimeTarget: 0, maxRounds: 4, multifd: { channels: 2, compression, codecs: nodeStreamCodecs } },
              sink,
              channelSink,
            ),
          {
            ...(threads ? { channelWorkers: { script: tsWorkerScript(new URL("../../src/migration/multifd-channel-worker.ts", import.meta.url)) } } : {}),
            partBytes: 1 << 20,
            maxRounds: 4,
            downtimeTarget: 0,
            letGuestRun: () => {
              const dv = new DataView(ram().buffer, ram().byteOffset);
              turn++;
              for (let p = MBGUEST_DIRTY.start; p < MBGUEST_DIRTY.end; p += 4096 * 7) dv.setUint32(p, dv.getUint32(p, true) + turn, true);
            },
            pause: () => {
              atPause = ram().slice();
            },
          },
        );
        return { atPause: atPause!, live };
      })().finally(() => decoded.dispose());
      expect(live.reason).toBe("max-rounds");
      expect(live.rounds.length).toBe(4);
      expect(live.rounds[0]!.parts).toBeGreaterThan(1);
      expect(live.rounds[1]!.pagesSent).toBeGreaterThan(0); // the rewritten pages went again
      const dinfo = await waitIncoming(dst);
      expect(dinfo.status, dst.stderr()).toBe("completed");
      await expectMemory(dst, atPause, RANGES, `multifd destination vs the live source at the pause (${compression})`);
      const counter = new DataView(atPause.buffer).getUint32(MBGUEST_DIRTY.start, true);
      await dst.qmp.execute("cont");
      await sleep(300);
      expect((await dst.qmp.execute("query-status")).status).toBe("running");
      expect(await mbguestCounter(dst)).not.toBe(counter);
      await dst.stop();
    }, 60_000);
  }
});
