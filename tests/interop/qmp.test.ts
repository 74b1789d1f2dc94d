// The QMP client: framing (unit level), against a scripted in-process server, and against a real QEMU 7.2
// (`qemu-system-x86_64 -machine none -S`).
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { QmpClient, QmpClientError, QmpError, type QmpEvent, QmpMessageFramer } from "../../src/qmp/index.js";
import { thrownBy, thrownByAsync } from "../helpers/errors.js";
import { describeQemu, findProcesses, type QemuInstance, startQemu, stopAllQemu } from "../helpers/qemu.js";

const X86 = "qemu-system-x86_64";

// ------------------------------------------------------------------------------------------------ framing

const GREETING =
  '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}\r\n';

describe("QmpMessageFramer", () => {
  const sample =
    GREETING +
    '{"return": {}, "id": 1}\r\n' +
    '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}\r\n' +
    '{"id": 5, "error": {"class": "GenericError", "desc": "Parameter \'x\' is unexpected {[\\"}]"}}\r\n' +
    '{"return": {"s": "caf\u00e9 \u20ac \ud83d\ude00 \\\\", "a": [1, {"b": []}]}, "id": 7}\r\n';
  const expected = sample
    .split("\r\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as unknown);
  const bytes = new TextEncoder().encode(sample);

  it("whole input in one chunk: every message, in order", () => {
    expect(new QmpMessageFramer().push(bytes)).toEqual(expected);
  });

  it("fed byte by byte (splits inside strings, escapes and multi-byte UTF-8)", () => {
    const f = new QmpMessageFramer();
    const got: unknown[] = [];
    for (let i = 0; i < bytes.length; i++) {
      got.push(...f.push(bytes.subarray(i, i + 1)));
      if (i < bytes.length - 1) expect(got.length).toBeLessThanOrEqual(expected.length);
    }
    expect(got).toEqual(expected);
    expect(f.pending).toBe(false);
  });

  it("every 2-way split point gives the same messages", () => {
    for (let cut = 0; cut <= bytes.length; cut++) {
      const f = new QmpMessageFramer();
      const got = [...f.push(bytes.subarray(0, cut)), ...f.push(bytes.subarray(cut))];
      expect(got).toEqual(expected);
    }
  });

  it("pretty-printed (multi-line) messages and no separators between messages", () => {
    const f = new QmpMessageFramer();
    expect(f.push('{\n  "return": {\n    "a": 1\n  },\n  "id": 3\n}{"return": 2}  {"return": "}"}\n')).toEqual([
      { return: { a: 1 }, id: 3 },
      { return: 2 },
      { return: "}" },
    ]);
  });

  it("the caller's chunk buffer may be reused after push", () => {
    const f = new QmpMessageFramer();
    const buf = new Uint8Array(8);
    const text = new TextEncoder().encode('{"return": "abcdefghijklmnop"}');
    const got: unknown[] = [];
    for (let i = 0; i < text.length; i += 8) {
      const n = Math.min(8, text.length - i);
      buf.set(text.subarray(i, i + n));
      got.push(...f.push(buf.subarray(0, n)));
      buf.fill(0x41);
    }
    expect(got).toEqual([{ return: "abcdefghijklmnop" }]);
  });

  it("garbage between messages, invalid JSON and oversized messages are PROTOCOL errors", () => {
    const f = new QmpMessageFramer();
    expect(() => f.push("x")).toThrow(QmpClientError);
    expect(() => new QmpMessageFramer().push('{"a": tru}')).toThrow(/invalid JSON/);
    const small = new QmpMessageFramer({ maxMessageBytes: 16 });
    expect(() => {
      small.push('{"return": "0123');
      small.push('456789abcdef"}');
    }).toThrow(/larger than 16 bytes/);
    expect(thrownBy(() => new QmpMessageFramer().push("]"), QmpClientError).code).toBe("PROTOCOL");
  });
});

// ------------------------------------------------------------------------------------------------ scripted server

/** A tiny in-process QMP server: sends the greeting, answers qmp_capabilities, then hands lines to `onCommand`. */
class FakeQmp {
  readonly dir = mkdtempSync(join(tmpdir(), "vmstream-fakeqmp-"));
  readonly path = join(this.dir, "qmp.sock");
  server: Server | undefined;
  conns: Socket[] = [];
  onCommand: (cmd: { execute: string; id?: unknown; arguments?: unknown }, sock: Socket) => void = () => undefined;
  /** How to send the greeting (e.g. split into pieces). */
  sendGreeting: (sock: Socket) => void = (s) => s.write(GREETING);

  listen(): Promise<void> {
    const server = createServer((sock) => {
      this.conns.push(sock);
      this.sendGreeting(sock);
      const f = new QmpMessageFramer();
      sock.on("data", (chunk) => {
        for (const m of f.push(chunk) as { execute: string; id?: unknown }[]) {
          if (m.execute === "qmp_capabilities") sock.write(JSON.stringify({ return: {}, id: m.id }) + "\r\n");
          else this.onCommand(m, sock);
        }
      });
      sock.on("error", () => undefined);
    });
    this.server = server;
    return new Promise((r) => server.listen(this.path, () => r()));
  }

  async dispose(): Promise<void> {
    for (const c of this.conns) c.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

describe("QmpClient against a scripted server", () => {
  let fake: FakeQmp;
  afterEach(async () => {
    await fake.dispose();
  });

  it("retries until the socket appears, then negotiates", async () => {
    fake = new FakeQmp();
    const connecting = QmpClient.connect(fake.path, { connectTimeoutMs: 5000, retryIntervalMs: 10 });
    await new Promise((r) => setTimeout(r, 150));
    await fake.listen();
    const qmp = await connecting;
    expect(qmp.version).toEqual({ major: 7, minor: 2, micro: 22 });
    expect(qmp.greeting.QMP.capabilities).toEqual(["oob"]);
    qmp.close();
  });

  it("gives up after connectTimeoutMs with a CONNECT error naming the path", async () => {
    fake = new FakeQmp();
    const t0 = performance.now();
    const e = await thrownByAsync(QmpClient.connect(fake.path, { connectTimeoutMs: 200 }), Error);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(e).toBeInstanceOf(QmpClientError);
    expect((e as QmpClientError).code).toBe("CONNECT");
    expect(e.message).toContain(fake.path);
  });

  it("connect is aborted by the signal", async () => {
    fake = new FakeQmp();
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error("QEMU exited")), 50);
    const e = await thrownByAsync(QmpClient.connect(fake.path, { connectTimeoutMs: 5000, signal: ac.signal }), Error);
    expect((e as QmpClientError).code).toBe("CONNECT");
    expect(e.message).toContain("QEMU exited");
  });

  it("a greeting split into single bytes; replies and events several per chunk, out of order", async () => {
    fake = new FakeQmp();
    fake.sendGreeting = (s) => {
      const b = Buffer.from(GREETING);
      let i = 0;
      const tick = (): void => {
        if (i < b.length) {
          s.write(b.subarray(i, i + 1));
          i++;
          setImmediate(tick);
        }
      };
      tick();
    };
    const seen: { id: unknown; execute: string }[] = [];
    fake.onCommand = (m, sock) => {
      seen.push({ id: m.id, execute: m.execute });
      if (seen.length === 3) {
        // Answer the three at once, in reverse order, with an event in between, in one write.
        const [a, b, c] = seen;
        sock.write(
          JSON.stringify({ return: "C", id: c!.id }) +
            "\r\n" +
            JSON.stringify({ event: "X", data: { n: 1 }, timestamp: { seconds: 0, microseconds: 0 } }) +
            "\r\n" +
            JSON.stringify({ return: "A", id: a!.id }) +
            JSON.stringify({ error: { class: "GenericError", desc: "nope" }, id: b!.id }) +
            "\r\n",
        );
      }
    };
    await fake.listen();
    const qmp = await QmpClient.connect(fake.path);
    const events: QmpEvent[] = [];
    qmp.on("event", (e) => events.push(e));
    const pa = qmp.execute("a");
    const pb = qmp.execute("b", { x: 1 });
    const pc = qmp.execute("c");
    expect(await pa).toBe("A");
    const eb = await thrownByAsync(pb, Error);
    expect(eb).toBeInstanceOf(QmpError);
    expect((eb as QmpError).command).toBe("b");
    expect(await pc).toBe("C");
    expect(events.map((e) => [e.event, e.data])).toEqual([["X", { n: 1 }]]);
    expect(qmp.pendingCount).toBe(0);
    qmp.close();
  });

  it("a reply without an id goes to the oldest pending command", async () => {
    fake = new FakeQmp();
    fake.onCommand = (_m, sock) => sock.write('{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\r\n');
    await fake.listen();
    const qmp = await QmpClient.connect(fake.path);
    const e = await thrownByAsync(qmp.execute("first"), Error);
    expect(e).toBeInstanceOf(QmpError);
    expect((e as QmpError).class).toBe("GenericError");
    expect((e as QmpError).command).toBe("first");
    qmp.close();
  });

  it("command timeout: TIMEOUT error, the late reply is discarded, the session goes on", async () => {
    fake = new FakeQmp();
    fake.onCommand = (m, sock) => {
      const delayMs = m.execute === "slow" ? 300 : 0;
      setTimeout(() => sock.write(JSON.stringify({ return: m.execute, id: m.id }) + "\r\n"), delayMs);
    };
    await fake.listen();
    const qmp = await QmpClient.connect(fake.path);
    const e = await thrownByAsync(qmp.execute("slow", undefined, { timeoutMs: 50 }), Error);
    expect((e as QmpClientError).code).toBe("TIMEOUT");
    expect((e as QmpClientError).command).toBe("slow");
    await new Promise((r) => setTimeout(r, 400)); // the late reply arrives and is dropped
    expect(await qmp.execute("fast")).toBe("fast");
    qmp.close();
  });

  it("server closing mid-command rejects pending commands and waits with CLOSED; later calls reject at once", async () => {
    fake = new FakeQmp();
    fake.onCommand = (_m, sock) => setTimeout(() => sock.destroy(), 20);
    await fake.listen();
    const qmp = await QmpClient.connect(fake.path);
    let closeSeen = false;
    qmp.on("close", () => (closeSeen = true));
    const w = qmp.waitEvent("NEVER", undefined, 0);
    const e = await thrownByAsync(qmp.execute("hang"), Error);
    expect(e).toBeInstanceOf(QmpClientError);
    expect((e as QmpClientError).code).toBe("CLOSED");
    expect(e.message).toMatch(/'hang' got no reply: connection closed by QEMU/);
    expect((await thrownByAsync(w, Error)).message).toMatch(/closed while waiting for event NEVER/);
    expect(closeSeen).toBe(true);
    expect(qmp.closed).toBe(true);
    expect((await thrownByAsync(qmp.execute("after"), Error)).message).toMatch(/not sent/);
  });

  it("close() by the client rejects pending commands", async () => {
    fake = new FakeQmp();
    await fake.listen();
    const qmp = await QmpClient.connect(fake.path);
    const p = qmp.execute("never-answered");
    qmp.close();
    const e = await thrownByAsync(p, Error);
    expect((e as QmpClientError).code).toBe("CLOSED");
    expect(e.message).toContain("closed by the client");
    qmp.close(); // idempotent
  });

  it("a bad greeting is a GREETING error", async () => {
    fake = new FakeQmp();
    fake.sendGreeting = (s) => s.write('{"hello": 1}\r\n');
    await fake.listen();
    const e = await thrownByAsync(QmpClient.connect(fake.path), Error);
    expect((e as QmpClientError).code).toBe("GREETING");
  });

  it("waitEvent: predicate and timeout", async () => {
    fake = new FakeQmp();
    fake.onCommand = (m, sock) => {
      for (const n of [1, 2, 3]) sock.write(JSON.stringify({ event: "TICK", data: { n }, timestamp: { seconds: n, microseconds: 0 } }) + "\n");
      sock.write(JSON.stringify({ return: {}, id: m.id }) + "\n");
    };
    await fake.listen();
    const qmp = await QmpClient.connect(fake.path);
    const w = qmp.waitEvent("TICK", (e) => e.data?.["n"] === 2, 1000);
    await qmp.execute("go");
    expect((await w).data).toEqual({ n: 2 });
    const t = await thrownByAsync(qmp.waitEvent("TICK", undefined, 50), Error);
    expect((t as QmpClientError).code).toBe("TIMEOUT");
    qmp.close();
  });
});

// ------------------------------------------------------------------------------------------------ real QEMU

describeQemu(X86, "QmpClient against qemu-system-x86_64 -machine none -S", () => {
  // a fresh QEMU for every test (stopped when the test ends): no test sees the run state another one left
  let q: QemuInstance;
  beforeEach(async () => {
    q = await startQemu({ binary: X86, args: ["-machine", "none"], paused: true });
  });
  afterAll(async () => {
    await stopAllQemu();
    expect(findProcesses()).toEqual([]);
  });

  it("greeting names QEMU 7.2 and offers oob", () => {
    expect(q.qmp.greeting.QMP.version.qemu.major).toBe(7);
    expect(q.qmp.greeting.QMP.version.qemu.minor).toBe(2);
    expect(q.qmp.greeting.QMP.capabilities).toContain("oob");
  });

  it("query-status: prelaunch, not running", async () => {
    const st = await q.qmp.execute("query-status");
    expect(st.status).toBe("prelaunch");
    expect(st.running).toBe(false);
  });

  it("query-version: 7.2", async () => {
    const v = await q.qmp.execute("query-version");
    expect([v.qemu.major, v.qemu.minor]).toEqual([7, 2]);
    expect(v).toEqual(q.qmp.greeting.QMP.version);
  });

  it("many commands in flight at once are answered by id", async () => {
    const names = ["query-status", "query-version", "query-migrate", "query-name", "query-uuid"] as const;
    const all = await Promise.all(Array.from({ length: 40 }, (_, i) => q.qmp.execute(names[i % names.length]!)));
    for (let i = 0; i < all.length; i++) {
      const r = all[i] as Record<string, unknown>;
      if (names[i % names.length] === "query-status") expect(r["status"]).toBe("prelaunch");
      if (names[i % names.length] === "query-version") expect(r["qemu"]).toBeDefined();
      if (names[i % names.length] === "query-uuid") expect(r["UUID"]).toBeDefined();
    }
  });

  it("unknown command → QmpError CommandNotFound; bad argument → GenericError; session continues", async () => {
    const e = await thrownByAsync(q.qmp.execute("no-such-command"), Error);
    expect(e).toBeInstanceOf(QmpError);
    const qe = e as QmpError;
    expect(qe.class).toBe("CommandNotFound");
    expect(qe.command).toBe("no-such-command");
    expect(qe.desc).toContain("no-such-command");
    const e2 = (await thrownByAsync(q.qmp.execute("query-status", { bogus: 1 }), Error)) as QmpError;
    expect(e2.class).toBe("GenericError");
    expect(e2.desc).toMatch(/bogus/);
    expect((await q.qmp.execute("query-status")).status).toBe("prelaunch");
  });

  it("cont → RESUME event, stop → STOP event (listener and waitEvent)", async () => {
    const seen: string[] = [];
    const listener = (ev: QmpEvent): void => {
      seen.push(ev.event);
    };
    q.qmp.on("event", listener);
    const resumed = q.qmp.waitEvent("RESUME", undefined, 5000);
    await q.qmp.execute("cont");
    const r = await resumed;
    expect(r.timestamp.seconds).toBeGreaterThan(0);
    expect((await q.qmp.execute("query-status")).running).toBe(true);
    const stopped = q.qmp.waitEvent("STOP", undefined, 5000);
    await q.qmp.execute("stop");
    await stopped;
    q.qmp.off("event", listener);
    expect(seen).toEqual(["RESUME", "STOP"]);
    expect((await q.qmp.execute("query-status")).status).toBe("paused");
  });

  it("a QEMU that stops answering: command TIMEOUT, then the session resumes", async () => {
    process.kill(q.pid, "SIGSTOP");
    try {
      const e = await thrownByAsync(q.qmp.execute("query-status", undefined, { timeoutMs: 200 }), Error);
      expect((e as QmpClientError).code).toBe("TIMEOUT");
    } finally {
      process.kill(q.pid, "SIGCONT");
    }
    expect((await q.qmp.execute("query-status")).status).toBe("prelaunch");
  });

  it("QEMU killed mid-command: the pending command is rejected with CLOSED; exit is seen", async () => {
    const victim = await startQemu({ binary: X86, args: ["-machine", "none"], paused: true });
    const closed = new Promise<Error | undefined>((r) => victim.qmp.on("close", r));
    // Freeze it so the command cannot be answered, then kill it by pid.
    process.kill(victim.pid, "SIGSTOP");
    const pending = victim.qmp.execute("query-status", undefined, { timeoutMs: 10_000 });
    const ev = victim.qmp.waitEvent("SHUTDOWN", undefined, 10_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(victim.qmp.pendingCount).toBe(1);
    process.kill(victim.pid, "SIGKILL");
    const e = await thrownByAsync(pending, Error);
    expect(e).toBeInstanceOf(QmpClientError);
    expect((e as QmpClientError).code).toBe("CLOSED");
    expect(e.message).toMatch(/'query-status' got no reply/);
    expect((await thrownByAsync(ev, Error)).message).toMatch(/closed while waiting for event SHUTDOWN/);
    await closed;
    const exit = await victim.exited;
    expect(exit.signal).toBe("SIGKILL");
    expect((await thrownByAsync(victim.qmp.execute("query-status"), Error)).message).toMatch(/not sent/);
    await victim.stop();
  });

  it("quit via stop(): SHUTDOWN, clean exit, temp dir removed", async () => {
    const other = await startQemu({ binary: X86, args: ["-machine", "none"], paused: true });
    const shutdown = other.qmp.waitEvent("SHUTDOWN", undefined, 5000);
    const exit = await other.stop();
    expect((await shutdown).data).toMatchObject({ guest: false });
    expect(exit.code).toBe(0);
    expect(findProcesses(other.dir)).toEqual([]);
  });
});
