// `vmstream receive` taking a multifd migration over real TCP sockets, without QEMU: a fixture split into a main
// stream and channels (MultifdSplit) is sent over N+1 connections in different orders; the recording (--out) has
// the fixture's content, --raw keeps each connection's bytes exactly; a connection that is neither a migration
// nor a channel is refused without harm; a channel cut off fails the migration, naming the channel; `send DIR`
// replays a --raw folder byte for byte.
import { existsSync, readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { MultifdSplit } from "../../src/convert/multifd-split.js";
import { joinChunks } from "../../src/io/chunks.js";
import { nodeInflate } from "../../src/io/node.js";
import { decodeBytes, ramOf } from "../../src/sections/stream.js";
import { sha256 } from "../helpers/bytes.js";
import { cliExitCode, cliListeningPort, runVmstream, sleep } from "../helpers/interop.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const tmp = suiteTempDir("multifd-receive");
const input = new Uint8Array(gunzipSync(readFileSync(new URL("../fixtures/x86-pc-64m.mig.gz", import.meta.url))));

function split(channels: number): { main: Uint8Array; channels: Uint8Array[] } {
  const s = new MultifdSplit({ channels, decode: { inflate: nodeInflate } });
  const main: Uint8Array[] = [];
  const chans: Uint8Array[][] = [];
  const take = () => {
    const o = s.output();
    main.push(...o.main);
    o.channels.forEach((c, i) => (chans[i] ??= []).push(...c));
  };
  s.push(input);
  take();
  main.push(...s.end().chunks);
  take();
  return { main: joinChunks(main), channels: chans.map((c) => joinChunks(c)) };
}

function ramDigest(bytes: Uint8Array): string[] {
  const r = decodeBytes(bytes, { materialize: { ram: true }, inflate: nodeInflate });
  try {
    expect(r.completeness.complete).toBe(true);
    return ramOf(r)!.blocks.map((b) => `${b.name}:${b.data ? sha256(b.data) : "-"}`);
  } finally {
    r.dispose();
  }
}

async function open(port: number): Promise<Socket> {
  const s = connect(port, "127.0.0.1");
  s.on("error", () => undefined);
  await new Promise<void>((ok) => s.once("connect", () => ok()));
  return s;
}

/** Write `bytes` in pieces with a pause between them, then end (or destroy after `cut` bytes). */
async function send(s: Socket, bytes: Uint8Array, o: { piece?: number; cut?: number } = {}): Promise<void> {
  const piece = o.piece ?? 1 << 16;
  for (let at = 0; at < bytes.length; at += piece) {
    if (o.cut !== undefined && at >= o.cut) {
      s.resetAndDestroy();
      return;
    }
    const ok = s.write(bytes.subarray(at, at + piece));
    if (!ok) await new Promise<void>((r) => s.once("drain", () => r()));
  }
  await new Promise<void>((r) => s.end(() => r()));
}

describe("vmstream receive: multifd over TCP without QEMU", () => {
  const want = ramDigest(input);
  const parts = split(3);

  for (const order of ["main first, channels later", "channels first, main later", "all at once"] as const) {
    it(`3 channels, ${order}: complete; --out has the fixture's RAM; --raw keeps each connection's bytes`, async () => {
      const tag = order.replace(/\W+/g, "-");
      const out = join(tmp(), `${tag}.mig`);
      const raw = join(tmp(), `${tag}-raw`);
      const recv = runVmstream(["receive", "tcp:127.0.0.1:0", "--out", out, "--raw", raw]);
      const port = await cliListeningPort(recv);
      const main = await open(port);
      const chans = await Promise.all(parts.channels.map(() => open(port)));
      if (order === "main first, channels later") {
        // QEMU's order is the other one; a main stream that runs ahead must wait for the channels at its sync points
        const first = send(main, parts.main);
        await sleep(200);
        await Promise.all([first, ...chans.map((c, i) => send(c, parts.channels[i]!))]);
      } else if (order === "channels first, main later") {
        await Promise.all(chans.map((c, i) => send(c, parts.channels[i]!)));
        await send(main, parts.main);
      } else await Promise.all([send(main, parts.main, { piece: 4096 }), ...chans.map((c, i) => send(c, parts.channels[i]!, { piece: 5000 }))]);
      expect(await cliExitCode(recv), recv.stderr()).toBe(0);
      expect(recv.stdout(), recv.stderr()).toMatch(/^multifd: 3 channels, \d+ pages/m);
      expect(ramDigest(new Uint8Array(readFileSync(out)))).toEqual(want);
      expect(Buffer.compare(readFileSync(join(raw, "main.bin")), parts.main)).toBe(0);
      for (const [i, c] of parts.channels.entries()) expect(Buffer.compare(readFileSync(join(raw, `channel-${i}.bin`)), c), `channel-${i}.bin`).toBe(0);
    }, 60_000);
  }

  it("send DIR replays what --raw kept, byte for byte, into another receive", async () => {
    const first = join(tmp(), "replay-src");
    const again = join(tmp(), "replay-dst");
    const recv1 = runVmstream(["receive", "tcp:127.0.0.1:0", "--raw", first]);
    const port1 = await cliListeningPort(recv1);
    const main = await open(port1);
    const chans = await Promise.all(parts.channels.map(() => open(port1)));
    await Promise.all([...chans.map((c, i) => send(c, parts.channels[i]!)), send(main, parts.main)]);
    expect(await cliExitCode(recv1), recv1.stderr()).toBe(0);

    const recv2 = runVmstream(["receive", "tcp:127.0.0.1:0", "--raw", again, "--out", join(tmp(), "replayed.mig")]);
    const port2 = await cliListeningPort(recv2);
    const replay = runVmstream(["send", first, `tcp:127.0.0.1:${port2}`]);
    expect(await cliExitCode(replay), replay.stderr()).toBe(0);
    expect(replay.stdout()).toMatch(/^replayed: .* 4 connections, .*complete$/m);
    expect(await cliExitCode(recv2), recv2.stderr()).toBe(0);
    for (const f of ["main.bin", "channel-0.bin", "channel-1.bin", "channel-2.bin"])
      expect(Buffer.compare(readFileSync(join(first, f)), readFileSync(join(again, f))), f).toBe(0);
    expect(ramDigest(new Uint8Array(readFileSync(join(tmp(), "replayed.mig"))))).toEqual(want);
  }, 60_000);

  it("a connection that is neither a migration nor a channel is refused; the migration completes", async () => {
    const out = join(tmp(), "stranger.mig");
    const recv = runVmstream(["receive", "tcp:127.0.0.1:0", "--out", out]);
    const port = await cliListeningPort(recv);
    const stranger = await open(port);
    stranger.write("GET / HTTP/1.0\r\n\r\n");
    const main = await open(port);
    const chans = await Promise.all(parts.channels.map(() => open(port)));
    await Promise.all([...chans.map((c, i) => send(c, parts.channels[i]!)), send(main, parts.main)]);
    expect(await cliExitCode(recv), recv.stderr()).toBe(0);
    expect(recv.stderr()).toMatch(/refused connection 0 .*neither a migration stream nor a multifd channel \(first bytes 47 45 54 20/);
    expect(ramDigest(new Uint8Array(readFileSync(out)))).toEqual(want);
  }, 60_000);

  it("a channel cut off: exit 1 naming the channel and its byte offset; no --out", async () => {
    const out = join(tmp(), "cut.mig");
    const recv = runVmstream(["receive", "tcp:127.0.0.1:0", "--out", out]);
    const port = await cliListeningPort(recv);
    const main = await open(port);
    const chans = await Promise.all(parts.channels.map(() => open(port)));
    // channel 0 carries the most pages: cut it half-way
    const cut = Math.floor(parts.channels[0]!.length / 2);
    await Promise.all([send(main, parts.main), ...chans.map((c, i) => send(c, parts.channels[i]!, i === 0 ? { cut } : {}))]);
    expect(await cliExitCode(recv), recv.stderr()).toBe(1);
    expect(recv.stderr()).toMatch(/migration failed: .*multifd channel 0.* at byte \d+/);
    expect(existsSync(out)).toBe(false);
  }, 60_000);
});
