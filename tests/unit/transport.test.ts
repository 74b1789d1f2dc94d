// Transports: endpoint parsing, the one-connection TCP server and the client on 127.0.0.1 (ephemeral ports),
// backpressure (a slow consumer bounds what the producer has queued), copy semantics, files written under a
// .partial name, and clear errors for a refused connection or a peer that hangs up.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";
import { connectTcp, type Endpoint, formatEndpoint, listenTcp, openInput, openOutput, parseEndpoint, StreamWriter } from "../../src/migration/transport.js";
import { thrownByAsync } from "../helpers/errors.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const tmp = suiteTempDir("vmstream-transport-");
const sockets: Socket[] = [];
afterAll(() => {
  for (const s of sockets) s.destroy();
});
const track = <T extends Socket>(s: T): T => {
  sockets.push(s);
  return s;
};
const tick = (ms = 0) => new Promise((ok) => setTimeout(ok, ms));

describe("endpoints", () => {
  it.each<[string, Endpoint]>([
    ["tcp:127.0.0.1:4444", { kind: "tcp", host: "127.0.0.1", port: 4444 }],
    ["tcp::0", { kind: "tcp", host: "127.0.0.1", port: 0 }],
    ["tcp:localhost:65535", { kind: "tcp", host: "localhost", port: 65535 }],
    ["tcp:0.0.0.0:5", { kind: "tcp", host: "0.0.0.0", port: 5 }],
    ["tcp:[::1]:4444", { kind: "tcp", host: "::1", port: 4444 }],
    ["file:/tmp/a.mig", { kind: "file", path: "/tmp/a.mig" }],
    ["file:tcp:odd", { kind: "file", path: "tcp:odd" }],
    ["out/a.mig", { kind: "file", path: "out/a.mig" }],
    ["-", { kind: "stdio" }],
  ])("parses %s", (text, want) => {
    expect(parseEndpoint(text)).toEqual(want);
    if (want.kind !== "file" || !want.path.startsWith("tcp:")) expect(parseEndpoint(formatEndpoint(want))).toEqual(want);
  });

  it.each(["tcp:1.2.3.4", "tcp:h:65536", "tcp:h:-1", "tcp:h:", "tcp:h:12ab", "tcp:::1:5", "file:", ""])("rejects %j with a VmstreamError", (text) => {
    expect(() => parseEndpoint(text)).toThrow(VmstreamError);
  });
});

describe("TCP", () => {
  it("listens on 127.0.0.1 (port 0: the real port is reported), accepts one connection, then refuses", async () => {
    const l = await listenTcp({ port: 0 });
    expect(l.host).toBe("127.0.0.1");
    expect(l.port).toBeGreaterThan(0);
    expect(l.address).toBe(`tcp:127.0.0.1:${l.port}`);
    const client = track(await connectTcp({ port: l.port }));
    const server = track(await l.accept());
    expect(server.remoteAddress).toBe("127.0.0.1");
    client.end(Buffer.from("hello"));
    const got: Buffer[] = [];
    for await (const c of server) got.push(c as Buffer);
    expect(Buffer.concat(got).toString()).toBe("hello");
    // the listener is gone after its one connection
    await expect(connectTcp({ port: l.port })).rejects.toThrow(/connection refused/);
    await l.close();
  });

  it("a refused connection is a VmstreamError naming the endpoint", async () => {
    const l = await listenTcp({ port: 0 });
    const port = l.port;
    await l.close();
    const e = await thrownByAsync(connectTcp({ port }));
    expect(e.code).toBe("IO");
    expect(e.message).toContain(`tcp:127.0.0.1:${port}`);
    // and an accept() pending on a closed listener rejects instead of hanging
    const l2 = await listenTcp({ port: 0 });
    const pending = l2.accept();
    await l2.close();
    await expect(pending).rejects.toThrow(/closed before a peer connected/);
  });

  it("a port already in use is an error", async () => {
    const l = await listenTcp({ port: 0 });
    await expect(listenTcp({ port: l.port })).rejects.toThrow(VmstreamError);
    await l.close();
  });

  it("backpressure through TCP: a stalled reader stalls the writer, which keeps at most one highWaterMark queued", async () => {
    const total = 96 << 20; // more than loopback's socket buffers can hold (tcp_rmem max 32 MiB + tcp_wmem max 4 MiB here)
    const chunk = 256 << 10;
    const l = await listenTcp({ port: 0 });
    const client = track(await connectTcp({ port: l.port }));
    const server = track(await l.accept());
    const w = new StreamWriter(client);
    // one buffer, changed after each write: the writer's copy keeps what was written
    const buf = new Uint8Array(chunk);
    const sent = createHash("sha256");
    const producer = (async () => {
      for (let i = 0; i < total / chunk; i++) {
        buf.fill(i & 0xff);
        buf[0] = i >> 8;
        sent.update(buf);
        await w.write(buf);
      }
      await w.end();
    })();
    // let the producer run until it is blocked on 'drain' and makes no more progress
    let last = -1;
    for (let stable = 0; stable < 5; ) {
      await tick(20);
      if (w.waiting && w.bytes === last) stable++;
      else stable = 0;
      last = w.bytes;
    }
    expect(w.bytes).toBeLessThan(total);
    expect(w.maxBuffered).toBeLessThanOrEqual(client.writableHighWaterMark + chunk);
    const got = createHash("sha256");
    let n = 0;
    for await (const c of server) {
      got.update(c as Buffer);
      n += (c as Buffer).length;
    }
    await producer;
    expect(n).toBe(total);
    expect(got.digest("hex")).toBe(sent.digest("hex"));
    expect(w.maxBuffered).toBeLessThanOrEqual(client.writableHighWaterMark + chunk);
  }, 60_000);

  it("a peer that hangs up makes the next writes fail with a VmstreamError (no hang)", async () => {
    const l = await listenTcp({ port: 0 });
    const client = track(await connectTcp({ port: l.port }));
    const server = await l.accept();
    server.destroy();
    const w = new StreamWriter(client, { name: "tcp:test" });
    const big = new Uint8Array(1 << 20);
    let err: unknown;
    for (let i = 0; i < 1000 && !err; i++) await w.write(big).catch((e: unknown) => (err = e));
    expect(err).toBeInstanceOf(VmstreamError);
    expect((err as VmstreamError).message).toMatch(/tcp:test/);
  });
});

describe("StreamWriter backpressure and copies (in process)", () => {
  /** A Writable that takes a chunk only when released: a consumer as slow as the test wants. */
  function slowSink(hwm: number) {
    const pending: (() => void)[] = [];
    const taken: Uint8Array[] = [];
    const sink = new Writable({
      highWaterMark: hwm,
      write(c: Buffer, _e, cb) {
        taken.push(new Uint8Array(c));
        pending.push(cb);
      },
    });
    return { sink, taken, release: () => pending.shift()?.() };
  }

  it("the producer never has more than highWaterMark + one chunk queued, and writes in order", async () => {
    const hwm = 64 << 10;
    const chunk = 16 << 10;
    const { sink, taken, release } = slowSink(hwm);
    const w = new StreamWriter(sink);
    const count = 200;
    let worst = 0;
    const producer = (async () => {
      for (let i = 0; i < count; i++) {
        await w.write(new Uint8Array(chunk).fill(i & 0xff));
        const consumed = taken.length * chunk;
        worst = Math.max(worst, w.bytes - consumed);
      }
      await w.end();
    })();
    let rounds = 0;
    while (taken.length < count) {
      await tick();
      release();
      if (++rounds > 100_000) throw new Error("no progress");
    }
    release();
    await producer;
    expect(worst).toBeLessThanOrEqual(hwm + chunk);
    expect(w.maxBuffered).toBeLessThanOrEqual(hwm + chunk);
    expect(taken.map((c) => c[0])).toEqual(Array.from({ length: count }, (_, i) => i & 0xff));
  });

  it("copies by default; with copy:false the chunk is referenced until flush()", async () => {
    const { sink, taken, release } = slowSink(1 << 20);
    const copying = new StreamWriter(sink);
    const buf = new Uint8Array(8).fill(1);
    await copying.write(buf);
    buf.fill(2);
    release();
    await copying.flush();
    expect(taken[0]![0]).toBe(1);

    // a Writable that keeps references (as a socket does until the OS takes the bytes)
    const held: Uint8Array[] = [];
    const later: (() => void)[] = [];
    const ref = new Writable({
      write(c: Buffer, _e, cb) {
        held.push(c);
        later.push(cb);
      },
    });
    const noCopy = new StreamWriter(ref, { copy: false });
    const b2 = new Uint8Array(8).fill(1);
    await noCopy.write(b2);
    let flushed = false;
    const f = noCopy.flush().then(() => (flushed = true));
    await tick();
    expect(flushed).toBe(false); // the caller must not touch b2 yet
    later.shift()!();
    await f;
    expect(flushed).toBe(true);
    b2.fill(9);
    expect(held[0]![0]).toBe(9); // it was the caller's own buffer
  });
});

describe("openInput / openOutput", () => {
  it("a file output is written as .partial and renamed only by commit(); abort keeps or removes it", async () => {
    const path = join(tmp(), "out.mig");
    const o = await openOutput(path);
    await o.writer.write(new Uint8Array([1, 2, 3]));
    expect(existsSync(path)).toBe(false);
    expect(existsSync(path + ".partial")).toBe(true);
    await o.commit();
    expect([...readFileSync(path)]).toEqual([1, 2, 3]);
    expect(existsSync(path + ".partial")).toBe(false);

    const bad = join(tmp(), "bad.mig");
    const a = await openOutput(`file:${bad}`);
    await a.writer.write(new Uint8Array([4]));
    expect(await a.abort()).toBe(bad + ".partial");
    expect(existsSync(bad)).toBe(false);
    expect([...readFileSync(bad + ".partial")]).toEqual([4]);
    const gone = await openOutput(bad);
    expect(await gone.abort({ remove: true })).toBeUndefined();
    expect(existsSync(bad + ".partial")).toBe(false);
  });

  it("reads a file, and a tcp endpoint listens (reporting its address) and yields the peer's bytes", async () => {
    const path = join(tmp(), "in.bin");
    const data = new Uint8Array(3 << 20).map((_, i) => (i * 7) & 0xff);
    writeFileSync(path, data);
    const f = await openInput(path, { highWaterMark: 1 << 20 });
    const parts: Uint8Array[] = [];
    for await (const c of f.source) parts.push(c);
    expect(Buffer.concat(parts).equals(Buffer.from(data))).toBe(true);
    await expect(openInput(join(tmp(), "missing"))).rejects.toThrow(VmstreamError);

    let address = "";
    const opening = openInput("tcp:127.0.0.1:0", { onListening: (a) => (address = a) });
    while (!address) await tick(5);
    expect(address).toMatch(/^tcp:127\.0\.0\.1:\d+$/);
    const out = await openOutput(address);
    await out.writer.write(data);
    await out.commit();
    const input = await opening;
    const got: Uint8Array[] = [];
    for await (const c of input.source) got.push(c);
    expect(Buffer.concat(got).equals(Buffer.from(data))).toBe(true);
    input.close();
  });
});

describe("StreamWriter written() callbacks", () => {
  /** A Writable that takes a chunk only when released (its callback fires then). */
  function heldSink() {
    const pending: (() => void)[] = [];
    let taken = 0;
    const sink = new Writable({
      highWaterMark: 1 << 20,
      write(_c: Buffer, _e, cb) {
        taken++;
        pending.push(cb);
      },
    });
    return { sink, taken: () => taken, release: () => pending.shift()?.() };
  }

  it("without a copy, written() fires only once the stream has taken the chunk, in order", async () => {
    const { sink, release } = heldSink();
    const w = new StreamWriter(sink, { copy: false });
    const log: number[] = [];
    for (let i = 0; i < 3; i++) await w.write(new Uint8Array(100).fill(i), () => log.push(i));
    await tick();
    expect(log).toEqual([]);
    release();
    await tick();
    expect(log).toEqual([0]);
    release();
    release();
    await w.flush();
    expect(log).toEqual([0, 1, 2]);
  });

  it("with a copy (the default), written() fires at once: the chunk itself is free", async () => {
    const { sink, release } = heldSink();
    const w = new StreamWriter(sink);
    let done = 0;
    await w.write(new Uint8Array(100), () => done++);
    await w.write(new Uint8Array(0), () => done++);
    expect(done).toBe(2);
    release();
    await w.flush();
  });
});

describe("StreamWriter with many writes pending", () => {
  it("writes not awaited one by one share one wait for 'drain' (no listener per write), all resolve, in order", async () => {
    const pending: (() => void)[] = [];
    const got: number[] = [];
    const sink = new Writable({
      highWaterMark: 16,
      write(c: Buffer, _e, cb) {
        got.push(c[0]!);
        pending.push(cb);
      },
    });
    const w = new StreamWriter(sink, { copy: false });
    const writes = Array.from({ length: 50 }, (_, i) => w.write(new Uint8Array(64).fill(i)));
    expect(sink.listenerCount("drain")).toBeLessThanOrEqual(2);
    expect(sink.listenerCount("error")).toBeLessThanOrEqual(3);
    while (got.length < 50 || pending.length > 0) {
      pending.shift()?.();
      await tick();
    }
    await Promise.all(writes);
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(sink.listenerCount("drain")).toBe(0);
  });
});
