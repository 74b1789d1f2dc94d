// The vmdesc as text: QEMU's JSON format written independently of src/, and a save that writes a device's
// vmdesc object in the same walk (as the stream encoder does).
import { ByteWriter } from "../../src/io/writer.js";
import { WireOutputVisitor } from "../../src/visitor/wire.js";
import { saveState } from "../../src/vmstate/engine.js";
import { QemuJsonWriter } from "../../src/vmstate/json-writer.js";
import type { State, VMStateDescription } from "../../src/vmstate/types.js";

/** A value as QEMU's JSON writer formats it: the independent writer of stream-sections.ts. */
export { qemuJsonText as qemuText } from "./stream-sections.js";

/** Save `s` with the vmdesc written in the same walk, as the stream encoder does: the device's object and the bytes. */
export function describedSave(vmsd: VMStateDescription, s: State, name: string, instanceId: number): { text: string; bytes: Uint8Array } {
  const w = new ByteWriter();
  const json = new QemuJsonWriter();
  json.startObject();
  json.str("name", name);
  json.int("instance_id", instanceId);
  const v = new WireOutputVisitor(w);
  saveState(v, vmsd, s, name, { json, pos: () => w.pos });
  json.endObject();
  if (v.error) throw v.error;
  return { text: json.text(), bytes: w.concat() };
}
