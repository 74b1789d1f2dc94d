// One-shot vmstream snapshots of a v86 guest, in QEMU 7.2's framing (so `vmstream analyze`, `dump` and `check`
// read them): header, configuration (machine "v86"), ram START (MEM_SIZE) and END (every page: ZERO or PAGE
// records, written by the ramEncode kernel straight from v86's memory), the `v86/state` legacy section, EOF,
// vmdesc. Restoring checks the configuration before it touches the destination, writes RAM while the guest is
// stopped and before restore_state (which clears v86's JIT cache), then restores the RAM-less state.
import { VmstreamError } from "../io/errors.js";
import { ByteWriter } from "../io/writer.js";
import { StreamEncoder } from "../savevm/encoder.js";
import type { DeviceRegistry } from "../savevm/types.js";
import { RamWriter } from "../sections/ram/writer.js";
import { decodeBytes, ramOf } from "../sections/stream.js";
import { legacyBytes, opaqueLegacy } from "../vmstate/legacy.js";
import {
  checkConfig,
  decodeStateSection,
  V86_MACHINE,
  V86_RAM_BLOCK,
  V86_STATE_SECTION,
  type V86Machine,
  type V86MachineConfig,
  v86StateConversion,
} from "./adapter.js";

/** Section ids: ram as in an x86 pc stream, the state after it. */
export const RAM_SECTION_ID = 2;
export const STATE_SECTION_ID = 3;
/** Version of the `v86/state` section (of its payload layout, see adapter.ts). */
export const STATE_SECTION_VERSION = 1;

export interface SnapshotStats {
  readonly bytes: number;
  readonly zeroPages: number;
  readonly normalPages: number;
  readonly stateBytes: number;
}

/** The v86/state FULL section as a legacy octet-stream (QEMU's old-style vmdesc entry: one buffer "data"). */
export function stateDevice(payload: Uint8Array, id = STATE_SECTION_ID) {
  return {
    id,
    idstr: V86_STATE_SECTION,
    instanceId: 0,
    description: opaqueLegacy(V86_STATE_SECTION, STATE_SECTION_VERSION, payload.length),
    state: { data: payload },
    vmdesc: "legacy" as const,
  };
}

/**
 * A snapshot of the machine as stream bytes. The guest is paused for the copy (and resumed if it was running).
 */
export async function saveSnapshot(machine: V86Machine, opts: { compress?: boolean; stats?: (s: SnapshotStats) => void } = {}): Promise<Uint8Array> {
  const wasRunning = machine.running;
  await machine.pause();
  try {
    const k = machine.kernels();
    const enc = new StreamEncoder(new ByteWriter());
    enc.header();
    enc.configuration({ machine: V86_MACHINE });
    const ram = new RamWriter(enc.writer, 4096, {}, k);
    try {
      const block = machine.ramBlock();
      enc.begin("start", RAM_SECTION_ID, "ram", 0, 4);
      ram.memSize([{ name: block.name, length: BigInt(block.length) }]);
      ram.eos();
      enc.end();
      enc.begin("end", RAM_SECTION_ID);
      const st = ram.sendBlock(block);
      ram.eos();
      enc.end();
      const payload = await machine.stateSection(opts.compress === undefined ? {} : { compress: opts.compress });
      enc.device(stateDevice(payload));
      enc.finishStream();
      const bytes = enc.bytes();
      opts.stats?.({ bytes: bytes.length, zeroPages: st.zero, normalPages: st.normal, stateBytes: payload.length });
      return bytes;
    } finally {
      ram.dispose();
    }
  } finally {
    if (wasRunning) await machine.resume();
  }
}

/** The v86 parts of a decoded stream: the configuration of its state section and the section's payload. */
export function v86StateOf(devices: readonly { idstr: string; state: Record<string, unknown> }[]): Uint8Array {
  const d = devices.find((x) => x.idstr === V86_STATE_SECTION);
  if (!d) throw new VmstreamError("MISMATCH", "the stream has no v86/state section: not a v86 snapshot or migration", { path: V86_STATE_SECTION });
  const data = d.state["data"];
  if (data instanceof Uint8Array) return data; // decoded from the vmdesc (legacy octet-stream)
  if (d.state["body"] instanceof Uint8Array) return legacyBytes(v86StateConversion, d.state); // decoded with the conversion
  throw new VmstreamError("BAD_VALUE", "the v86/state section carries no octet-stream", { path: V86_STATE_SECTION });
}

/** Device registry for decoders: the `v86/state` section through its conversion, so it needs no vmdesc. */
export const v86Devices: DeviceRegistry = (idstr) => (idstr === V86_STATE_SECTION ? v86StateConversion : undefined);

/**
 * Restore a snapshot into `machine` (built with the same options). The guest continues where it was saved; it
 * is left running unless `run` is false.
 */
export async function restoreSnapshot(machine: V86Machine, bytes: Uint8Array, opts: { run?: boolean } = {}): Promise<V86MachineConfig> {
  const result = decodeBytes(bytes, { materialize: { ram: true }, devices: v86Devices, strictDevices: true });
  try {
    if (!result.completeness.complete)
      throw new VmstreamError("EOF", "the snapshot is incomplete", { detail: `EOF ${result.eof}, vmdesc ${result.completeness.vmdesc}` });
    const machineName = result.configuration?.machine;
    if (machineName !== undefined && machineName !== V86_MACHINE)
      throw new VmstreamError("MISMATCH", "not a v86 snapshot", { detail: `machine "${machineName}"` });
    const { config, state } = decodeStateSection(v86StateOf(result.devices));
    checkConfig(config, machine.config);
    const ram = ramOf(result);
    const blocks = ram?.blocks ?? [];
    const b = blocks.find((x) => x.name === V86_RAM_BLOCK);
    if (!b || blocks.length !== 1 || Number(b.length) !== machine.ramLength) {
      throw new VmstreamError("MISMATCH", "the snapshot's RAM does not match the machine", {
        section: { idstr: "ram", id: RAM_SECTION_ID },
        detail: `blocks ${JSON.stringify(blocks.map((x) => [x.name, Number(x.length)]))}, machine ${V86_RAM_BLOCK} ${machine.ramLength}`,
      });
    }
    await machine.pause();
    // RAM first: restore_state clears the JIT cache after it, so no stale compiled code survives
    const data = b.data;
    if (!data) throw new VmstreamError("INTERNAL", "the snapshot's RAM was not materialised");
    machine.ramView().set(data);
    await machine.restoreDeviceState(state);
    if (opts.run !== false) await machine.resume();
    return config;
  } finally {
    result.dispose();
  }
}
