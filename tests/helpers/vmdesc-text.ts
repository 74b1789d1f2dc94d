// The vmdesc as text: an independent writer of QEMU's JSON format, and a save that writes a device's
// vmdesc object in the same walk (as the stream encoder does).
import { ByteWriter } from "../../src/io/writer.js";
import { WireOutputVisitor } from "../../src/visitor/wire.js";
import { saveState } from "../../src/vmstate/engine.js";
import { QemuJsonWriter } from "../../src/vmstate/json-writer.js";
import type { State, VMStateDescription } from "../../src/vmstate/types.js";

/** A value as QEMU's JSON writer formats it (", " and ": " separators, \\uXXXX upper-case above ASCII): an independent writer. */
export function qemuText(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(qemuText).join(", ")}]`;
  if (typeof v === "object" && v !== null) {
    return `{${Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => `${qemuText(k)}: ${qemuText(x)}`).join(", ")}}`;
  }
  if (typeof v === "string") return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0"));
  return String(v);
}

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
