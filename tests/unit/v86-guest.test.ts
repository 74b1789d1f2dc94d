// The boot-sector guest (bytes built without a toolchain) and the v86 adapter: boot, RAM view, RAM-less state.
import { afterAll, describe, expect, it } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";
import { checkConfig, decodeStateSection, encodeStateSection, findBios, V86Machine, type V86MachineConfig } from "../../src/v86/adapter.js";
import { GUEST, guestBootSector, guestDiskImage, parseGuestLines } from "../../src/v86/guest.js";
import { thrownBy } from "../helpers/errors.js";
import { describeV86 } from "../helpers/v86.js";

describe("v86 guest image", () => {
  it("is a 512-byte boot sector with the signature, the strings inside, and code that fits", () => {
    const s = guestBootSector();
    expect(s.length).toBe(512);
    expect([s[510], s[511]]).toEqual([0x55, 0xaa]);
    expect(Buffer.from(s).includes(Buffer.from(GUEST.banner + "\r\n\0"))).toBe(true);
    expect(s[0]).toBe(0xfa); // cli
    const hd = guestDiskImage("hda");
    expect(hd.length).toBe(64 * 1024);
    expect(hd.subarray(0, 512)).toEqual(s);
    expect(guestDiskImage("fda").length).toBe(1_474_560);
    expect(() => guestDiskImage("hda", 1000)).toThrow(RangeError);
  });

  it("parses status lines and ignores partial ones", () => {
    const lines = parseGuestLines(`${GUEST.banner}\r\nC=00400000 T=000E78D5\r\nC=00800000 T=000E78D7 MB=x\r\nC=00C0`);
    expect(lines).toEqual([
      { counter: 0x400000, ticks: 0xe78d5 },
      { counter: 0x800000, ticks: 0xe78d7, mailbox: "x" },
    ]);
  });

  it("names the seabios package when the BIOS is missing", () => {
    expect(thrownBy(() => findBios("/nonexistent/bios.bin")).message).toMatch(/seabios/);
  });
});

describe("v86/state section payload", () => {
  const config: V86MachineConfig = {
    v86: "0.5.462+g5f9a90f",
    stateVersion: 6,
    memorySize: 32 << 20,
    vgaMemorySize: 256 << 10,
    devices: { hda: 65536 },
    biosSha256: "ab",
  };
  const fakeState = () => {
    const s = new Uint8Array(4096);
    const dv = new DataView(s.buffer);
    dv.setInt32(0, 0x86768676 | 0, true);
    dv.setInt32(4, 6, true);
    for (let i = 16; i < s.length; i++) s[i] = (i * 7) & 0xff;
    return s;
  };

  it("round-trips, compressed or not", () => {
    for (const compress of [true, false]) {
      const p = encodeStateSection(config, fakeState(), compress);
      const d = decodeStateSection(p);
      expect(d.config).toEqual(config);
      expect(d.state).toEqual(fakeState());
    }
  });

  it("refuses every kind of damage with a VmstreamError", () => {
    const p = encodeStateSection(config, fakeState(), true);
    const cases: Uint8Array[] = [p.subarray(0, 5), p.subarray(0, p.length - 1), Uint8Array.from(p, (b, i) => (i === 0 ? b ^ 1 : b))];
    const badJson = p.slice();
    badJson[12] = 0x78; // the header's opening brace
    cases.push(badJson);
    const badBody = p.slice();
    badBody[p.length - 3] ^= 0xff;
    cases.push(badBody);
    for (const c of cases) expect(() => decodeStateSection(c)).toThrow(VmstreamError);
  });

  it("names every configuration difference", () => {
    const other = { ...config, memorySize: 64 << 20, devices: { fda: 1474560 } };
    expect(() => checkConfig(config, config)).not.toThrow();
    const msg = thrownBy(() => checkConfig(config, other)).message;
    expect(msg).toMatch(/memory_size: 33554432 in the stream, 67108864 here/);
    expect(msg).toMatch(/device fda/);
    expect(msg).toMatch(/device hda/);
  });
});

describeV86("v86 adapter (SeaBIOS boot)", () => {
  const machines: V86Machine[] = [];
  afterAll(async () => {
    for (const m of machines) await m.destroy();
  });

  it("boots the guest, counts on the serial port, exposes RAM and echoes the mailbox", async () => {
    const m = await V86Machine.create({ memorySize: 32 << 20 });
    machines.push(m);
    await m.waitForSerial(/C=\w{8} T=\w{8}\r\n/, 20_000);
    expect(m.serial.startsWith(GUEST.banner + "\r\n")).toBe(true);
    expect(m.config.memorySize).toBe(32 << 20);
    expect(m.config.stateVersion).toBeGreaterThan(0);
    expect(m.ramLength).toBe(32 << 20);
    // the RAM view shows the guest's own code and counter
    const ram = m.ramView();
    expect(ram.subarray(0x7c00, 0x7c00 + 512)).toEqual(guestBootSector());
    const counter = () => new DataView(m.ramView().buffer, m.ramOffset).getUint32(GUEST.counter, true);
    const c1 = counter();
    await m.waitForSerial(/C=\w{8} T=\w{8}\r\n/, 20_000, m.serial.length);
    expect(counter()).not.toBe(c1);
    // a write through the view reaches the guest
    m.ramView()[GUEST.mailbox] = "Q".charCodeAt(0);
    await m.waitForSerial(/ MB=Q\r\n/, 20_000, m.serial.length);
    // paused: the counter stands still
    await m.pause();
    const c2 = counter();
    await new Promise((r) => setTimeout(r, 100));
    expect(counter()).toBe(c2);
    await m.resume();
  });

  it("saves device state without RAM and restores it without touching RAM", async () => {
    const m = await V86Machine.create({ memorySize: 32 << 20 });
    machines.push(m);
    await m.waitForSerial(/C=\w{8}/, 20_000);
    await m.pause();
    const state = await m.deviceState();
    // far smaller than RAM: the RAM really is left out (the 64 KiB disk and 256 KiB VGA are inside)
    expect(state.length).toBeLessThan(4 << 20);
    const before = m.ramView().slice();
    await m.restoreDeviceState(state);
    expect(Buffer.compare(m.ramView(), before)).toBe(0);
    await expect(m.restoreDeviceState(new Uint8Array(64))).rejects.toThrow(VmstreamError);
    await m.resume();
    await m.waitForSerial(/C=\w{8}/, 20_000, m.serial.length);
  });
});
