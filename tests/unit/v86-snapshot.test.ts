// One-shot vmstream snapshots of a v86 guest: readable by the CLI (check, analyze, dump), restorable into a second
// emulator where the guest continues without a reboot; a snapshot of a differently built machine is refused.
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";
import { GUEST, parseGuestLines, restoreSnapshot, type SnapshotStats, saveSnapshot, V86Machine } from "../../src/v86/index.js";
import { suiteTempDir } from "../helpers/temp-dir.js";
import { describeV86 } from "../helpers/v86.js";

const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const cli = (...args: string[]) => spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", maxBuffer: 64 << 20 });
const counterOf = (m: V86Machine) => new DataView(m.ramView().buffer, m.ramOffset).getUint32(GUEST.counter, true);

describeV86("v86 snapshots", () => {
  const machines: V86Machine[] = [];
  const dir = suiteTempDir("vmstream-v86-");
  afterAll(async () => {
    for (const m of machines) await m.destroy();
  });
  const make = async (o: Parameters<typeof V86Machine.create>[0]) => {
    const m = await V86Machine.create(o);
    machines.push(m);
    return m;
  };

  // the snapshot every test reads: a running guest, paused, saved
  let a: V86Machine;
  let snap: Uint8Array;
  let ramAtSave: Uint8Array;
  let counterAtSave = 0;
  let stats: SnapshotStats | undefined;
  beforeAll(async () => {
    a = await make({ memorySize: 32 << 20 });
    await a.waitForSerial(/C=\w{8}/, 20_000);
    await a.pause();
    snap = await saveSnapshot(a, { stats: (s) => (stats = s) });
    ramAtSave = a.ramView().slice();
    counterAtSave = counterOf(a);
  });

  it("writes a QEMU-framed stream that check, analyze and dump read", () => {
    expect(a.running).toBe(false); // paused before: stays paused
    expect(stats!.zeroPages + stats!.normalPages).toBe((32 << 20) / 4096);
    expect(stats!.normalPages).toBeGreaterThan(0);
    const file = join(dir(), "v86.mig");
    writeFileSync(file, snap);
    const check = cli("check", file);
    expect(check.status, check.stderr).toBe(0);
    expect(check.stdout).toMatch(/^OK: .*machine v86.*complete/);
    const analyze = cli("analyze", file);
    expect(analyze.status, analyze.stderr).toBe(0);
    const doc = JSON.parse(analyze.stdout) as Record<string, Record<string, unknown>>;
    expect(doc["ram (2)"]!["section sizes"]).toEqual({ "v86.ram": "0x0000000002000000" });
    expect(Object.keys(doc)).toContain("v86/state (3)");
    const dump = cli("dump", file);
    expect(dump.status, dump.stderr).toBe(0);
    expect(dump.stdout).toMatch(/# ram: 1 blocks, 33554432 bytes/);
    expect(dump.stdout).toMatch(/v86\/state/);
  });

  it("restores into a second emulator: RAM equal, the counter continues without a reboot", async () => {
    const b = await make({ memorySize: 32 << 20, autostart: false });
    await restoreSnapshot(b, snap, { run: false });
    expect(Buffer.compare(b.ramView(), ramAtSave)).toBe(0);
    expect(counterOf(b)).toBe(counterAtSave);
    await b.resume();
    const m = await b.waitForSerial(/C=\w{8} T=\w{8}\r\n/, 20_000);
    const line = parseGuestLines(m.input!.slice(0, m.index! + m[0].length))[0]!;
    expect(b.serial).not.toContain(GUEST.banner); // no reboot
    expect(line.counter).toBeGreaterThan(counterAtSave);
  });

  it("refuses a snapshot of a differently configured machine, before touching it", async () => {
    const c = await make({ memorySize: 32 << 20, vgaMemorySize: 512 << 10, autostart: false });
    const before = c.ramView().slice();
    await expect(restoreSnapshot(c, snap)).rejects.toThrow(/vga_memory_size: 262144 in the stream, 524288 here/);
    expect(Buffer.compare(c.ramView(), before)).toBe(0);
    expect(c.running).toBe(false);
  });

  it("refuses truncated and damaged snapshots with a VmstreamError", async () => {
    const d = await make({ memorySize: 32 << 20, autostart: false });
    await expect(restoreSnapshot(d, snap.subarray(0, snap.length - 100))).rejects.toThrow(VmstreamError);
    const damaged = snap.slice();
    // a byte in the middle of the v86/state payload's deflated body
    const at = Buffer.from(damaged).lastIndexOf(Buffer.from("V86S"));
    const dv = new DataView(damaged.buffer);
    const body = at + 12 + dv.getUint32(at + 4);
    damaged[body + (dv.getUint32(at + 8) >> 1)] ^= 0xff;
    await expect(restoreSnapshot(d, damaged)).rejects.toThrow(VmstreamError);
    expect(d.running).toBe(false);
  });
});
