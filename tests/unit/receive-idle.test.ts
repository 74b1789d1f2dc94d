// `vmstream receive --idle-timeout` and refused connections, over real sockets on 127.0.0.1 with short timeouts:
// a peer that connects and sends nothing, a main stream or a multifd channel that stalls half-way, and stdin
// that stays silent fail with one clear line and exit 1, leaving nothing complete-looking; a slow migration whose
// pauses are shorter than the timeout, or a first peer that comes late, is not cut; a second main stream or a
// stranger while a migration is active is refused with a line naming its address and the migration completes.
// In the library: IncomingMigration and openInput do not count the time their consumer holds the data.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { MultifdSplit } from "../../src/convert/multifd-split.js";
import { joinChunks } from "../../src/io/chunks.js";
import { nodeInflate } from "../../src/io/node.js";
import { IncomingMigration } from "../../src/migration/incoming.js";
import { openInput } from "../../src/migration/transport.js";
import { sha256 } from "../helpers/bytes.js";
import { cliExitCode, cliListeningPort, runVmstream, sleep } from "../helpers/interop.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const tmp = suiteTempDir("vmstream-idle-");
const input = new Uint8Array(gunzipSync(readFileSync(new URL("../fixtures/x86-pc-64m.mig.gz", import.meta.url))));

async function open(port: number): Promise<Socket> {
  const s = connect(port, "127.0.0.1");
  s.on("error", () => undefined);
  await new Promise<void>((ok) => s.once("connect", () => ok()));
  return s;
}

/** Write `bytes` in `pieces` pieces, `pauseMs` apart; end the connection unless told to keep it open. */
async function send(s: Socket, bytes: Uint8Array, o: { pieces?: number; pauseMs?: number; keepOpen?: boolean } = {}): Promise<void> {
  const n = o.pieces ?? 1;
  const size = Math.ceil(bytes.length / n);
  for (let at = 0; at < bytes.length; at += size) {
    if (at > 0 && o.pauseMs) await sleep(o.pauseMs);
    if (!s.write(bytes.subarray(at, at + size))) await new Promise<void>((r) => s.once("drain", () => r()));
  }
  if (!o.keepOpen) await new Promise<void>((r) => s.end(() => r()));
}

/** A failed receive: one "migration failed" line naming the idle timeout; no --out file, no --extract DIR. */
function expectStalled(stderr: string, out: string, dir: string, where: RegExp): void {
  const failed = stderr.split("\n").filter((l) => l.startsWith("vmstream: migration failed:"));
  expect(failed, stderr).toHaveLength(1);
  expect(failed[0]).toMatch(/nothing received for 1 s \(idle timeout\)/);
  expect(failed[0]).toMatch(where);
  expect(existsSync(out)).toBe(false);
  expect(existsSync(dir)).toBe(false);
  expect(existsSync(`${dir}.partial`)).toBe(false);
}

describe("vmstream receive --idle-timeout", () => {
  it("a peer that connects and sends nothing: exit 1 after the timeout, naming it", async () => {
    const out = join(tmp(), "silent.mig");
    const dir = join(tmp(), "silent-x");
    const recv = runVmstream(["receive", "tcp:127.0.0.1:0", "--idle-timeout", "1", "--out", out, "--extract", dir]);
    const port = await cliListeningPort(recv);
    const peer = await open(port);
    const peerPort = peer.localPort; // a closed socket forgets it
    const t0 = performance.now();
    expect(await cliExitCode(recv)).toBe(1);
    const took = performance.now() - t0;
    expect(took).toBeGreaterThan(900);
    expect(took).toBeLessThan(4000); // well before the 5 s after which a silent connection is dropped
    expectStalled(recv.stderr(), out, dir, new RegExp(`no migration stream came \\(1 connection, the first from 127\\.0\\.0\\.1:${peerPort}\\)`));
    peer.destroy();
  }, 20_000);

  it("a migration that stalls half-way: exit 1 naming the byte reached; the partial recording is kept as .partial", async () => {
    const out = join(tmp(), "stall.mig");
    const dir = join(tmp(), "stall-x");
    const recv = runVmstream(["receive", "tcp:127.0.0.1:0", "--idle-timeout", "1", "--out", out, "--extract", dir]);
    const peer = await open(await cliListeningPort(recv));
    const half = 400_000;
    await send(peer, input.subarray(0, half), { keepOpen: true });
    expect(await cliExitCode(recv)).toBe(1);
    expectStalled(recv.stderr(), out, dir, new RegExp(`the main stream at byte ${half}`));
    expect(readFileSync(`${out}.partial`).length).toBe(half);
    peer.destroy();
  }, 20_000);

  it("a slow migration (pauses shorter than the timeout, longer in total) and a late first peer are not cut", async () => {
    const out = join(tmp(), "slow.mig");
    const recv = runVmstream(["receive", "tcp:127.0.0.1:0", "--idle-timeout", "1", "--out", out]);
    const port = await cliListeningPort(recv);
    await sleep(1500); // nobody connects for longer than the timeout: waiting for the first peer is not limited
    const peer = await open(port);
    await send(peer, input, { pieces: 8, pauseMs: 400 }); // 2.8 s in all
    expect(await cliExitCode(recv), recv.stderr()).toBe(0);
    expect(sha256(readFileSync(out))).toBe(sha256(input));
  }, 30_000);

  it("a multifd channel that stalls: exit 1; the main stream waiting for it does not count as data", async () => {
    const s = new MultifdSplit({ channels: 2, decode: { inflate: nodeInflate } });
    const main: Uint8Array[] = [];
    const chans: Uint8Array[][] = [[], []];
    const take = () => {
      const o = s.output();
      main.push(...o.main);
      o.channels.forEach((c, i) => chans[i]!.push(...c));
    };
    s.push(input);
    take();
    main.push(...s.end().chunks);
    take();
    const out = join(tmp(), "chan-stall.mig");
    const dir = join(tmp(), "chan-stall-x");
    const recv = runVmstream(["receive", "tcp:127.0.0.1:0", "--idle-timeout", "1", "--out", out, "--extract", dir]);
    const port = await cliListeningPort(recv);
    const m = await open(port);
    const c0 = await open(port);
    const c1 = await open(port);
    const ch1 = joinChunks(chans[1]!);
    await Promise.all([send(c0, joinChunks(chans[0]!)), send(c1, ch1.subarray(0, ch1.length >> 1), { keepOpen: true }), send(m, joinChunks(main))]);
    expect(await cliExitCode(recv)).toBe(1);
    expectStalled(recv.stderr(), out, dir, /the main stream at byte \d+, 2 channels/);
    c1.destroy();
  }, 30_000);

  it("stdin that stays silent: exit 1 after the timeout", async () => {
    const out = join(tmp(), "stdin.mig");
    const child = spawn(process.execPath, [MAIN, "receive", "-", "--idle-timeout", "1", "--out", out], { stdio: ["pipe", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.stdin.write(input.subarray(0, 1000));
    const code = await new Promise<number | null>((ok) => child.on("close", (c) => ok(c)));
    child.stdin.destroy();
    expect(code).toBe(1);
    expect(err).toMatch(/^vmstream: migration failed: .*stdin stalled at byte 1000: nothing received for 1 s \(idle timeout\)$/m);
    expect(existsSync(out)).toBe(false);
  }, 20_000);

  it("--idle-timeout takes seconds (0: none); anything else is a usage error", async () => {
    const bad = runVmstream(["receive", "tcp:127.0.0.1:0", "--idle-timeout", "soon"]);
    expect(await cliExitCode(bad)).toBe(2);
    expect(bad.stderr()).toMatch(/--idle-timeout must be 0\.\.86400 seconds, not soon/);
    const help = runVmstream(["--help"]);
    expect(await cliExitCode(help)).toBe(0);
    expect(help.stdout()).toMatch(/--idle-timeout SECONDS \(default 60; 0: none\)/);
  });
});

describe("vmstream receive: connections refused while a migration is active", () => {
  it("a second main stream and a stranger are refused, each named by its address; the migration completes", async () => {
    const out = join(tmp(), "second.mig");
    const recv = runVmstream(["receive", "tcp:127.0.0.1:0", "--out", out]);
    const port = await cliListeningPort(recv);
    const first = await open(port);
    const sending = send(first, input, { pieces: 10, pauseMs: 100 });
    await sleep(700); // past the first 64 KiB and 500 ms: an ordinary migration, under way
    const second = await open(port);
    const secondPort = second.localPort;
    second.write(input.subarray(0, 4096));
    const stranger = await open(port);
    const strangerPort = stranger.localPort;
    stranger.write("SSH-2.0-x\r\n");
    const closed = (s: Socket) => new Promise<void>((ok) => (s.destroyed ? ok() : s.once("close", () => ok())));
    await Promise.all([closed(second), closed(stranger)]);
    await sending;
    expect(await cliExitCode(recv), recv.stderr()).toBe(0);
    const err = recv.stderr();
    expect(err).toContain(`vmstream: refused connection 1 from 127.0.0.1:${secondPort}: a migration is already active (this is a second main stream)`);
    expect(err).toMatch(new RegExp(`vmstream: refused connection 2 from 127\\.0\\.0\\.1:${strangerPort}: neither a migration stream nor a multifd channel`));
    expect(sha256(readFileSync(out))).toBe(sha256(input));
  }, 30_000);
});

describe("idle timeouts in the library do not count the consumer's time", () => {
  /** Take every chunk, sleeping `holdMs` at the first one; resolves with the bytes or rejects. */
  async function consume(source: AsyncIterable<Uint8Array>, holdMs: number): Promise<number> {
    let n = 0;
    for await (const c of source) {
      if (n === 0) await sleep(holdMs);
      n += c.length;
    }
    return n;
  }

  it("IncomingMigration: a consumer that holds the data longer than the timeout is not a stall; a silent peer is", async () => {
    for (const peerQuietMs of [150, 1500]) {
      const inc = await IncomingMigration.listen({ port: 0 }, { idleTimeoutMs: 500, decode: { inflate: nodeInflate } });
      const peer = await open(inc.port);
      const sending = send(peer, input, { keepOpen: true }).then(async () => {
        await sleep(1200 + peerQuietMs); // the consumer holds its first chunk 1200 ms, then the peer is quiet a while
        peer.end();
      });
      const got = consume(inc.source, 1200);
      if (peerQuietMs < 500) expect(await got).toBe(input.length);
      else await expect(got).rejects.toThrow(/the migration stalled: nothing received for 0\.5 s \(idle timeout\); the main stream at byte 908844/);
      await sending;
      inc.close();
    }
  }, 20_000);

  it("openInput over TCP: the same, for a single connection", async () => {
    for (const peerQuietMs of [150, 1500]) {
      let port = 0;
      const opening = openInput("tcp:127.0.0.1:0", { idleTimeoutMs: 500, onListener: (l) => (port = l.port) });
      while (port === 0) await sleep(5);
      const peer = await open(port);
      const i = await opening;
      const sending = send(peer, input, { keepOpen: true }).then(async () => {
        await sleep(1200 + peerQuietMs);
        peer.end();
      });
      const got = consume(i.source, 1200);
      if (peerQuietMs < 500) expect(await got).toBe(input.length);
      else await expect(got).rejects.toThrow(/^the connection from 127\.0\.0\.1:\d+ stalled at byte 908844: nothing received for 0\.5 s \(idle timeout\)$/);
      i.close();
      await sending;
    }
  }, 20_000);
});
