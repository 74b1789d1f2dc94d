// A `-machine none` stream built from scratch with the library's encoder and its own descriptions
// (timer, globalstate): ram START (empty MEM_SIZE) / END, the two FULL sections, EOF, and the vmdesc written
// by the device walks. With QEMU's own section ids it is the 747-byte stream QEMU 7.2 writes.
import { ByteWriter } from "../../src/io/writer.js";
import { StreamEncoder, type FramingOptions } from "../../src/savevm/encoder.js";
import { RamWriter } from "../../src/sections/encode/ram.js";
import { globalState, timers } from "../../src/vmstate/devices/index.js";

export function encodeNoneStream(opts: { runstate?: string; framing?: FramingOptions; machine?: string } = {}): Uint8Array {
  const w = new ByteWriter();
  const enc = new StreamEncoder(w, opts.framing ?? {});
  const ram = new RamWriter(w, 4096);
  enc.header();
  enc.configuration({ machine: opts.machine ?? "none" });
  enc.begin("start", 2, "ram", 0, 4);
  ram.memSize([]);
  ram.eos();
  enc.end();
  enc.begin("end", 2);
  ram.eos();
  enc.end();
  enc.device({ id: 0, idstr: "timer", instanceId: 0, description: timers, state: { cpu_ticks_offset: 0n, cpu_clock_offset: 0n } });
  const name = opts.runstate ?? "prelaunch";
  const runstate = new Uint8Array(100);
  runstate.set(new TextEncoder().encode(name));
  enc.device({ id: 4, idstr: "globalstate", instanceId: 0, description: globalState, state: { size: name.length + 1, runstate } });
  enc.finishStream();
  return enc.bytes();
}
