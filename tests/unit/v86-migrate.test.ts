// Live migration of a running v86 guest between two Node processes over TCP (127.0.0.1, ephemeral port): the
// destination's serial counter continues the source's without a reboot, RAM at the pause equals RAM at the
// destination, and a broken or refused transfer leaves the source guest running and reports the failure.
import { afterAll, expect, it } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";
import { GUEST, migrateV86Source, parseGuestLines, V86Machine } from "../../src/v86/index.js";
import { sha256 } from "../helpers/bytes.js";
import { thrownByAsync } from "../helpers/errors.js";
import { describeV86, startPeer, type V86Peer } from "../helpers/v86.js";

const MIB = 32;

describeV86("v86 live migration between two processes", () => {
  const machines: V86Machine[] = [];
  const peers: V86Peer[] = [];
  afterAll(async () => {
    for (const p of peers) await p.kill();
    for (const m of machines) await m.destroy();
  });
  const source = async () => {
    const m = await V86Machine.create({ memorySize: MIB << 20 });
    machines.push(m);
    await m.waitForSerial(/C=\w{8} T=\w{8}\r\n/, 20_000);
    return m;
  };
  const peer = async (...args: string[]) => {
    const p = startPeer(["receive", String(MIB), ...args]);
    peers.push(p);
    const msg = await p.next();
    expect(msg["listening"], JSON.stringify(msg)).toBeDefined();
    return { p, port: (msg["listening"] as { port: number }).port };
  };
  const lastCounter = (m: V86Machine) => parseGuestLines(m.serial).at(-1)!.counter;

  for (const channels of [0, 2]) {
    it(`moves the running guest${channels ? ` over ${channels} multifd channels` : ""}: counter continues, RAM at the pause equals the destination's`, async () => {
      const src = await source();
      const { p, port } = await peer("--verify", ...(channels ? ["--channels", String(channels)] : []));
      let pausedSha = "";
      let pausedCounter = 0;
      const rounds: number[] = [];
      const r = await migrateV86Source(
        src,
        { port },
        {
          verify: true,
          ...(channels ? { multifd: { channels } } : {}),
          onRound: (x) => rounds.push(x.round),
          onPaused: (m) => {
            pausedSha = sha256(m.ramView());
            pausedCounter = new DataView(m.ramView().buffer, m.ramOffset).getUint32(GUEST.counter, true);
          },
        },
      );
      expect(r.reply.ok).toBe(true);
      expect(rounds.length).toBeGreaterThan(0);
      expect(r.ramMatches).toBe(true);
      expect(r.reply.ramSha256).toBe(pausedSha);
      expect(r.live.totalBytes).toBeGreaterThan(0);
      // every page went over at least once
      const pages = r.reply.pages!;
      expect(pages.zero + pages.normal + pages.xbzrle).toBeGreaterThanOrEqual((MIB << 20) / 4096);
      expect(src.running).toBe(false); // the source stays stopped after a confirmed switch-over
      const received = await p.next();
      expect(received["received"], JSON.stringify(received)).toBeDefined();
      const serial = (await p.next())["serial"] as string;
      expect(serial).not.toContain(GUEST.banner); // no reboot
      const lines = parseGuestLines(serial);
      expect(lines.length, JSON.stringify(serial)).toBeGreaterThan(0);
      expect(lines[0]!.counter).toBeGreaterThan(pausedCounter);
      expect(lines[0]!.counter).toBeGreaterThan(lastCounter(src));
      // the counter is a multiple of the print interval: the destination printed at the first multiple after the pause
      expect(lines[0]!.counter - (pausedCounter - (pausedCounter % GUEST.printEvery))).toBeLessThanOrEqual(GUEST.printEvery);
    });
  }

  it("a transfer that breaks off leaves the source running and rejects", async () => {
    const src = await source();
    const { p, port } = await peer("--die-after-bytes", "300000");
    await expect(migrateV86Source(src, { port })).rejects.toThrow(VmstreamError);
    await p.kill();
    expect(src.running).toBe(true);
    const before = lastCounter(src);
    await src.waitForSerial(/C=\w{8} T=\w{8}\r\n/, 20_000, src.serial.length);
    expect(lastCounter(src)).toBeGreaterThan(before);
  });

  it("a destination built differently refuses, and the source resumes", async () => {
    const src = await source();
    const { p, port } = await peer("--vga-kib", "512");
    const err = await thrownByAsync(migrateV86Source(src, { port }));
    expect(String(err.message)).toMatch(/refused.*vga_memory_size/);
    const msg = await p.next();
    expect(String(msg["error"])).toMatch(/vga_memory_size/);
    expect(src.running).toBe(true);
    const before = lastCounter(src);
    await src.waitForSerial(/C=\w{8} T=\w{8}\r\n/, 20_000, src.serial.length);
    expect(lastCounter(src)).toBeGreaterThan(before);
  });
});
