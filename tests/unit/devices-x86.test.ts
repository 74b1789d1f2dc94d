// The x86 `pc` device descriptions against the real QEMU 7.2 stream x86-pc-64m: every device
// section decodes completely, re-encodes to the same bytes, and the vmdesc JSON written in the
// same walk is QEMU's text for that device, byte for byte.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { VmstreamError } from "../../src/io/errors.js";
import { ByteReader } from "../../src/io/reader.js";
import { WireInputVisitor } from "../../src/visitor/wire.js";
import {
  apic,
  fdcCore,
  fdcReconstructPhase,
  fwCfg,
  hpet,
  kbdOutportDefault,
  piix3,
  runStateName,
  serialIsa,
  x86DeviceForIdstr,
  x86DeviceList,
  x86Devices,
} from "../../src/vmstate/devices/index.js";
import { loadState } from "../../src/vmstate/engine.js";
import type { State, VMStateDescription } from "../../src/vmstate/types.js";
import { type DeviceSection, qemuJsonText, readStream } from "../helpers/stream-sections.js";
import { describedSave } from "../helpers/vmdesc-text.js";

const stream = readStream(new URL("../fixtures/x86-pc-64m.mig.gz", import.meta.url));
const analyzeDesc = JSON.parse(readFileSync(new URL("../fixtures/x86-pc-64m.analyze-desc.json", import.meta.url), "utf8")) as {
  page_size: number;
  devices: object[];
};

/** Load a section's payload into a fresh state; the reader's offsets are the stream's. */
function load(vmsd: VMStateDescription, sec: DeviceSection, payload = sec.payload, version = sec.version) {
  const r = new ByteReader(payload, { sticky: true, baseOffset: sec.offset });
  const v = new WireInputVisitor(r);
  const s: State = {};
  loadState(v, vmsd, s, version, sec.idstr);
  return { r, v, s };
}

/** Save as QEMU does for one FULL section: payload bytes, and the device's vmdesc object. */
/** The wire bytes and the vmdesc object of a save (throws on a visitor error). */
function save(vmsd: VMStateDescription, s: State, idstr: string, instanceId: number) {
  const { text, bytes } = describedSave(vmsd, s, idstr, instanceId);
  return { bytes, json: text };
}

function section(idstr: string, instanceId = 0): DeviceSection {
  const sec = stream.sections.find((x) => x.idstr === idstr && x.instanceId === instanceId);
  if (!sec) throw new Error(`no section ${idstr}/${instanceId}`);
  return sec;
}

describe("the x86-pc-64m stream (test helper)", () => {
  it("has the 33 device sections, in vmdesc order", () => {
    expect(stream.sections).toHaveLength(33);
    expect(stream.sections.map((s) => s.idstr)).toEqual(stream.vmdesc.devices.map((d) => d.name));
  });

  it("the fixture's analyze-desc.json is the stream's own vmdesc, and QEMU's formatting of it is the trailer's text", () => {
    expect(analyzeDesc).toEqual(stream.vmdesc);
    expect(qemuJsonText(analyzeDesc)).toBe(stream.vmdescText);
  });
});

describe("x86 device descriptions", () => {
  it("describe every one of the 33 device sections", () => {
    const missing = stream.sections.filter((s) => !x86DeviceForIdstr(s.idstr)).map((s) => s.idstr);
    expect(missing).toEqual([]);
    expect(new Set(stream.sections.map((s) => s.desc.vmsd_name))).toEqual(new Set(x86DeviceList.map((d) => d.name)));
  });

  describe.each(stream.sections.map((sec, i) => ({ sec, i, name: `${sec.idstr} #${sec.instanceId}` })))("$name", ({ sec, i }) => {
    const vmsd = x86DeviceForIdstr(sec.idstr)!;

    it("decodes the whole payload and re-encodes it byte for byte", () => {
      expect(vmsd.name).toBe(sec.desc.vmsd_name);
      const { r, v, s } = load(vmsd, sec);
      expect(v.error).toBeUndefined();
      expect(r.remaining).toBe(0);
      const out = save(vmsd, s, sec.idstr, sec.instanceId); // throws on a visitor error
      expect(out.bytes).toEqual(sec.payload);
    });

    it("writes the vmdesc entry QEMU wrote for it", () => {
      const { s } = load(vmsd, sec);
      const { json } = save(vmsd, s, sec.idstr, sec.instanceId);
      const expected = qemuJsonText(analyzeDesc.devices[i]);
      expect(json).toBe(expected);
      expect(stream.vmdescText).toContain(expected);
    });
  });

  it("together write the stream's whole vmdesc trailer text", () => {
    const parts = stream.sections.map((sec) => {
      const vmsd = x86DeviceForIdstr(sec.idstr)!;
      return save(vmsd, load(vmsd, sec).s, sec.idstr, sec.instanceId).json;
    });
    expect(`{"page_size": 4096, "devices": [${parts.join(", ")}]}`).toBe(stream.vmdescText);
  });

  it("decode to meaningful values", () => {
    const pci = load(piix3, section("0000:00:01.0/PIIX3")).s;
    expect(pci.dev.version_id).toBe(2);
    expect(pci.dev.config).toBeInstanceOf(Uint8Array);
    expect(pci.dev.config.length).toBe(256);
    // Vendor 8086, device 7000 (82371SB PIIX3 ISA).
    expect([pci.dev.config[0], pci.dev.config[1], pci.dev.config[2], pci.dev.config[3]]).toEqual([0x86, 0x80, 0x00, 0x70]);
    expect(pci.dev.irq_state).toEqual([0, 0, 0, 0]);

    const h = load(hpet, section("hpet")).s;
    expect(h.num_timers).toBe(3);
    expect(h.timer.map((t: State) => t.tn)).toEqual([0, 1, 2]);

    const g = load(x86Devices.globalstate!, section("globalstate")).s;
    expect(runStateName(g.runstate)).toBe("running");
    expect(g.size).toBe("running".length + 1);

    const cpu = load(x86Devices.cpu!, section("cpu")).s;
    expect(cpu["env.fpregs"]).toHaveLength(8);
    expect(typeof cpu["env.fpregs"][0].mant).toBe("bigint");
    expect(cpu["env.xmm_regs"]).toHaveLength(16);
    expect(Object.keys(cpu["env.xmm_regs"][0]).sort()).toEqual(["_q_ZMMReg[0]", "_q_ZMMReg[1]", "_q_ZMMReg[2]", "_q_ZMMReg[3]"]);

    const fdc = load(x86Devices.fdc!, section("fdc")).s;
    expect(fdc.state.phase).toBe(fdcReconstructPhase(fdc.state));
    const kbd = load(x86Devices.pckbd!, section("pckbd")).s;
    expect(kbd.kbd.outport).toBe(kbdOutportDefault(kbd.kbd));
    expect(fdcCore.subsections!.map((x) => x.name)).toEqual(["fdc/reset_sensei", "fdc/result_timer", "fdc/phase"]);
  });

  it("send a subsection exactly when `needed` says so", () => {
    const sec = section("fw_cfg");
    const { s } = load(fwCfg, sec);
    s.dma_enabled = false;
    const out = save(fwCfg, s, sec.idstr, 0);
    // The 1+1+10+4-byte header and 8-byte body of "fw_cfg/dma" are gone, and so is its JSON.
    expect(out.bytes.length).toBe(sec.payload.length - (1 + 1 + "fw_cfg/dma".length + 4 + 8));
    expect(out.json).not.toContain("fw_cfg/dma");
    expect(out.json).toContain("fw_cfg/acpi_mr");

    const ser = load(serialIsa, section("serial")).s;
    ser.state.recv_fifo = { data: new Uint8Array(16).fill(0x41), head: 0, num: 3 };
    const withFifo = save(serialIsa, ser, "serial", 0);
    expect(withFifo.json).toContain(
      `{"vmsd_name": "serial/recv_fifo", "version": 1, "fields": [{"name": "recv_fifo", "type": "struct", "struct": {"vmsd_name": "Fifo8", "version": 1, "fields": [{"name": "data", "type": "buffer", "size": 16}, {"name": "head", "type": "uint32", "size": 4}, {"name": "num", "type": "uint32", "size": 4}]}, "size": 24}]}`,
    );
    // And it loads back, subsection and all.
    const again = load(serialIsa, { ...section("serial"), payload: withFifo.bytes });
    expect(again.v.error).toBeUndefined();
    expect(again.r.remaining).toBe(0);
    expect(again.s.state.recv_fifo.num).toBe(3);
  });
});

describe("x86 device descriptions refuse bad input", () => {
  it("a truncated payload: VmstreamError with the stream offset and the field path", () => {
    const sec = section("hpet");
    // hpet: 3 x uint64, uint8 num_timers, then 3 timers of 42 bytes; timer [2] starts at 109 and
    // its `period` at 109 + 1 + 3*8 = 134. Cut one byte short of the end of `period`.
    const { v } = load(hpet, sec, sec.payload.subarray(0, 141));
    const err = v.error;
    expect(err).toBeInstanceOf(VmstreamError);
    expect(err!.code).toBe("EOF");
    expect(err!.offset).toBe(sec.offset + 134);
    expect(err!.path).toBe("hpet.timer(3)(42).[2].period");
    expect(err!.message).toContain(`at byte ${sec.offset + 134}`);
    expect(err!.message).toContain("field hpet.timer(3)(42).[2].period");
  });

  it("a version newer than the description's, or older than its minimum", () => {
    const sec = section("hpet");
    const tooNew = load(hpet, sec, sec.payload, hpet.version + 1).v.error;
    expect(tooNew).toBeInstanceOf(VmstreamError);
    expect(tooNew!.code).toBe("BAD_VERSION");
    expect(tooNew!.message).toContain("hpet: version 3 is too new");

    const tooOld = load(apic, section("apic"), section("apic").payload, 2).v.error;
    expect(tooOld!.code).toBe("BAD_VERSION");
    expect(tooOld!.message).toContain("apic: version 2 is too old");
  });

  it("a PCI interrupt pin level other than 0 or 1", () => {
    const sec = section("0000:00:01.0/PIIX3");
    const bad = sec.payload.slice();
    // PCIDevice: version_id (4) + config (256), then irq_state: pin 0's be32 ends at 263.
    bad[263] = 2;
    const { v } = load(piix3, sec, bad);
    expect(v.error!.code).toBe("BAD_VALUE");
    expect(v.error!.path).toBe("PIIX3.PCIDevice.irq_state(4)(4)");
    expect(v.error!.message).toContain("pin 0 is 2");
  });

  it("an HPET timer count outside 3..32", () => {
    const sec = section("hpet");
    const bad = sec.payload.slice();
    bad[24] = 33;
    const { v } = load(hpet, sec, bad);
    expect(v.error!.code).toBe("BAD_VALUE");
    expect(v.error!.message).toContain("num_timers 33 is not in 3..32");
  });

  it("an unknown run state", () => {
    const sec = section("globalstate");
    const bad = sec.payload.slice();
    bad.set(new TextEncoder().encode("jogging"), 4);
    const { v } = load(x86Devices.globalstate!, sec, bad);
    expect(v.error!.code).toBe("BAD_VALUE");
    expect(v.error!.message).toContain('unknown run state "jogging"');
  });
});
