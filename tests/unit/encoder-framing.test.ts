// The framing encoder: the none stream from scratch byte for byte, the machine-type switches, a synthetic
// stream with every record kind that the decoder reads back and the re-encoder reproduces.
import { describe, expect, it } from "vitest";
import { reencodeStream } from "../../src/convert/qemu.js";
import { joinChunks } from "../../src/io/chunks.js";
import { ByteWriter } from "../../src/io/writer.js";
import { CMD } from "../../src/savevm/constants.js";
import { framingForMachine, StreamEncoder } from "../../src/savevm/encoder.js";
import { BlockWriter } from "../../src/sections/block/writer.js";
import { registryFromMap } from "../../src/sections/device/registry.js";
import type { RamRecord } from "../../src/sections/ram/format.js";
import { RamWriter } from "../../src/sections/ram/writer.js";
import { HtabWriter } from "../../src/sections/spapr-htab/writer.js";
import { blockOf, decodeBytes, htabOf, ramOf } from "../../src/sections/stream.js";
import { globalState, timers } from "../../src/vmstate/devices/index.js";
import { encodeNoneStream } from "../helpers/encode-none.js";
import { NONE_VMDESC, noneStream } from "../helpers/none-stream.js";
import { liveRecords, recordsAt } from "../helpers/records.js";

const devices = registryFromMap({ timer: timers, globalstate: globalState });

describe("StreamEncoder framing", () => {
  it("writes QEMU's 747-byte -machine none stream from the library's descriptions, vmdesc from the walks", () => {
    const out = encodeNoneStream();
    expect(out).toEqual(noneStream());
    const enc = new StreamEncoder();
    enc.device({ id: 0, idstr: "timer", instanceId: 0, description: timers, state: { cpu_ticks_offset: 0n, cpu_clock_offset: 0n } });
    enc.device({ id: 4, idstr: "globalstate", instanceId: 0, description: globalState, state: { size: 10, runstate: new Uint8Array(100) } });
    expect(enc.vmdescText()).toBe(NONE_VMDESC);
  });

  it("derives QEMU's framing switches from the machine type", () => {
    expect(framingForMachine("pc-i440fx-7.2")).toEqual({ configuration: true, footers: true, vmdesc: true });
    expect(framingForMachine("none")).toEqual({ configuration: true, footers: true, vmdesc: true });
    expect(framingForMachine("pc-i440fx-2.4")).toEqual({ configuration: true, footers: true, vmdesc: true });
    expect(framingForMachine("pc-i440fx-2.3")).toEqual({ configuration: false, footers: false, vmdesc: true });
    expect(framingForMachine("pc-q35-2.3")).toEqual({ configuration: false, footers: false, vmdesc: true });
    expect(framingForMachine("pc-i440fx-2.2")).toEqual({ configuration: false, footers: false, vmdesc: false });
    expect(framingForMachine("pseries-2.1")).toEqual({ configuration: false, footers: false, vmdesc: false });
    expect(framingForMachine("pc-i440fx-1.7")).toEqual({ configuration: false, footers: false, vmdesc: false });
  });

  it("old machine types: no configuration, no footers (2.3), no vmdesc (2.2); the decoder reads them", () => {
    const old23 = encodeNoneStream({ framing: framingForMachine("pc-i440fx-2.3") });
    // header, then directly the ram START
    expect([...old23.subarray(8, 13)]).toEqual([0x01, 0, 0, 0, 2]);
    expect(old23.includes(0x7e)).toBe(false);
    const r23 = decodeBytes(old23, { devices });
    expect(r23.configuration).toBeUndefined();
    expect(r23.footers).toBe(false);
    expect(r23.vmdesc?.text).toBe(NONE_VMDESC);
    expect(r23.completeness.complete).toBe(true);
    const old22 = encodeNoneStream({ framing: framingForMachine("pc-i440fx-2.2") });
    expect(old22.length).toBe(old23.length - 5 - NONE_VMDESC.length);
    expect(old22[old22.length - 1]).toBe(0);
    const r22 = decodeBytes(old22, { devices });
    expect(r22.vmdesc).toBeUndefined();
    expect(r22.devices.map((d) => d.idstr)).toEqual(["timer", "globalstate"]);
    // and the re-encoder keeps each framing
    expect(joinChunks(reencodeStream(old23).chunks)).toEqual(old23);
    expect(joinChunks(reencodeStream(old22, { decode: { devices } }).chunks)).toEqual(old22);
  });

  it("writes configuration subsections in QEMU's order and the decoder reads them back", () => {
    const enc = new StreamEncoder();
    enc.header();
    const uuid = Uint8Array.from({ length: 16 }, (_, i) => i * 17);
    enc.configuration({ machine: "pc-i440fx-7.2", targetPageBits: 12, capabilities: ["x-ignore-shared"], uuid });
    enc.eof();
    const b = enc.bytes();
    const text = new TextDecoder("latin1").decode(b);
    expect(text.indexOf("target-page-bits")).toBeLessThan(text.indexOf("capabilities"));
    expect(text.indexOf("capabilities")).toBeLessThan(text.indexOf("configuration/uuid"));
    const r = decodeBytes(b);
    expect(r.configuration?.machine).toBe("pc-i440fx-7.2");
    expect(r.configuration?.targetPageBits).toBe(12);
    expect(r.configuration?.capabilities).toEqual(["x-ignore-shared"]);
    expect(r.configuration?.uuid).toEqual(uuid);
    expect(joinChunks(reencodeStream(b).chunks)).toEqual(b);
  });

  it("rejects misuse: nested sections, EOF in a section, vmdesc before EOF", () => {
    const enc = new StreamEncoder();
    enc.begin("start", 2, "ram", 0, 4);
    expect(() => enc.begin("part", 2)).toThrow(/still open/);
    expect(() => enc.eof()).toThrow(/open section/);
    enc.end();
    expect(() => enc.end()).toThrow(/no section/);
    expect(() => enc.vmdescTrailer()).toThrow(/after EOF/);
    expect(() => enc.begin("full", 1)).toThrow(/idstr/);
  });

  it("push sink: the same bytes, item by item", () => {
    const parts: Uint8Array[] = [];
    const enc = new StreamEncoder((c) => parts.push(c.slice()));
    enc.header();
    enc.configuration({ machine: "none" });
    enc.eof();
    enc.vmdescTrailer();
    const b = joinChunks(parts);
    const r = decodeBytes(b);
    expect(r.configuration?.machine).toBe("none");
    expect(r.vmdesc?.text).toBe('{"page_size": 4096, "devices": []}');
  });
});

describe("a synthetic stream with every record kind", () => {
  function build(): Uint8Array {
    const w = new ByteWriter();
    const enc = new StreamEncoder(w);
    const ram = new RamWriter(w, 4096);
    const blk = new BlockWriter(w);
    const htab = new HtabWriter(w);
    const page = (v: number) => new Uint8Array(4096).fill(v);
    enc.header();
    enc.configuration({ machine: "none" });
    enc.command(CMD.OPEN_RETURN_PATH);
    enc.ping(1);
    enc.begin("start", 3, "block", 0, 1);
    blk.eos();
    enc.end();
    enc.begin("start", 2, "ram", 0, 4);
    ram.memSize([
      { name: "pc.ram", length: 0x10000n },
      { name: "rom", length: 0x2000n },
    ]);
    ram.eos();
    enc.end();
    enc.begin("start", 5, "spapr/htab", 0, 1);
    htab.header(18);
    enc.end();
    enc.begin("part", 2);
    ram.zero("pc.ram", 0n);
    ram.zero("pc.ram", 0x1000n, 0x5a); // a non-zero fill byte (QEMU loads it)
    ram.page("pc.ram", 0x2000n, page(7));
    ram.page("rom", 0x1000n, page(9));
    ram.xbzrle("pc.ram", 0x2000n, Uint8Array.of(0x10, 2, 0xaa, 0xbb)); // zrun 16, nzrun 2
    ram.eos();
    enc.end();
    enc.begin("part", 3);
    blk.progress(0);
    blk.chunk("drv0", 0n, page(3));
    blk.chunk("drv0", 2048n, undefined);
    blk.progress(100);
    blk.eos();
    enc.end();
    enc.begin("part", 5);
    htab.header(0);
    const hptes = new Uint8Array(32);
    hptes[7] = 1;
    hptes[23] = 1;
    htab.chunk({ index: 4, nValid: 2, nInvalid: 3, hptes });
    htab.endMarker();
    enc.end();
    enc.begin("end", 2);
    ram.eos();
    enc.end();
    enc.begin("end", 3);
    blk.eos();
    enc.end();
    enc.begin("end", 5);
    htab.header(0);
    htab.endMarker();
    enc.end();
    enc.device({ id: 0, idstr: "timer", instanceId: 0, description: timers, state: { cpu_ticks_offset: -5n, cpu_clock_offset: 7n } });
    enc.finishStream();
    return enc.bytes();
  }

  it("decodes to what was written", () => {
    const b = build();
    const r = decodeBytes(b, { materialize: true, devices });
    try {
      expect(r.completeness.complete).toBe(true);
      expect(r.commands.map((c) => c.name)).toEqual(["OPEN_RETURN_PATH", "PING"]);
      const ram = ramOf(r)!;
      expect(ram.records).toMatchObject({ zero: 2, normal: 2, xbzrle: 1, memSize: 1 });
      const pc = ram.blocks[0]!.data!;
      expect(pc[0x1000]).toBe(0x5a);
      expect(pc[0x2000 + 15]).toBe(7);
      expect([pc[0x2000 + 16], pc[0x2000 + 17], pc[0x2000 + 18]]).toEqual([0xaa, 0xbb, 7]);
      expect(ram.blocks[1]!.data![0x1000]).toBe(9);
      const blk = blockOf(r)!;
      expect(blk.records).toMatchObject({ device: 1, zero: 1, progress: 2 });
      expect(blk.progress).toEqual([0, 100]);
      const htab = htabOf(r)!;
      expect(htab).toMatchObject({ shift: 18, chunks: 1, valid: 2, invalidated: 3 });
      expect(r.devices[0]!.state).toMatchObject({ cpu_ticks_offset: -5n, cpu_clock_offset: 7n });
      // CONTINUE: the second ZERO record and the XBZRLE after the rom page
      const part = r.sections.find((s) => s.type === "part" && s.idstr === "ram")!;
      const recs = recordsAt<RamRecord>(liveRecords(b), part.offset);
      expect(recs.map((x) => (x.flags & 0x20) !== 0)).toEqual([false, true, true, false, false, false]);
    } finally {
      r.dispose();
    }
  });

  it("re-encodes byte for byte, every record replayed", () => {
    const b = build();
    const r = reencodeStream(b);
    expect(joinChunks(r.chunks)).toEqual(b);
    expect(r.report).toMatchObject({ ramRecords: 9, blockRecords: 7, htabChunks: 1, commands: 2, rawSections: [], vmdescGenerated: true });
  });
});
