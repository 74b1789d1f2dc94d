// A `-machine none` stream built from scratch with the library's encoder and its own descriptions
// (timer, globalstate): ram START (empty MEM_SIZE) / END, the two FULL sections, EOF, and the vmdesc written
// by the device walks. With QEMU's own section ids (the default) it is the 747-byte stream QEMU 7.2 writes.
import { ByteWriter } from "../../src/io/writer.js";
import { type FramingOptions, StreamEncoder } from "../../src/savevm/encoder.js";
import { RamWriter } from "../../src/sections/ram/writer.js";
import { globalState, timers } from "../../src/vmstate/devices/index.js";

export interface NoneStreamOptions {
  readonly runstate?: string;
  readonly framing?: FramingOptions;
  readonly machine?: string;
  /** Section ids (QEMU's: ram 2, timer 0, globalstate 4). */
  readonly ids?: { readonly ram?: number; readonly timer?: number; readonly globalstate?: number };
  /** The timer's cpu_ticks_offset (default 0). */
  readonly cpuTicksOffset?: bigint;
}

export function encodeNoneStream(opts: NoneStreamOptions = {}): Uint8Array {
  const ramId = opts.ids?.ram ?? 2;
  const w = new ByteWriter();
  const enc = new StreamEncoder(w, opts.framing ?? {});
  const ram = new RamWriter(w, 4096);
  enc.header();
  enc.configuration({ machine: opts.machine ?? "none" });
  enc.begin("start", ramId, "ram", 0, 4);
  ram.memSize([]);
  ram.eos();
  enc.end();
  enc.begin("end", ramId);
  ram.eos();
  enc.end();
  enc.device({
    id: opts.ids?.timer ?? 0,
    idstr: "timer",
    instanceId: 0,
    description: timers,
    state: { cpu_ticks_offset: opts.cpuTicksOffset ?? 0n, cpu_clock_offset: 0n },
  });
  const name = opts.runstate ?? "prelaunch";
  const runstate = new Uint8Array(100);
  runstate.set(new TextEncoder().encode(name));
  enc.device({ id: opts.ids?.globalstate ?? 4, idstr: "globalstate", instanceId: 0, description: globalState, state: { size: name.length + 1, runstate } });
  enc.finishStream();
  return enc.bytes();
}
