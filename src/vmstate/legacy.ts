// Legacy ("old-style") sections: state a handler writes with its own put/get calls, not through a
// VMState description (in QEMU 7.2: slirp, vfio, s390 storage keys). Unconverted, such state
// travels as one opaque octet-stream — the vmdesc calls it a buffer named "data". A conversion
// describes those bytes after the fact: a description whose walk consumes exactly the legacy bytes,
// so they can be read, printed, checked and written field by field without changing one byte.
import { VmstreamError } from "../io/errors.js";
import { ByteReader } from "../io/reader.js";
import { ByteWriter } from "../io/writer.js";
import { WireInputVisitor, WireOutputVisitor } from "../visitor/wire.js";
import { loadState, saveState, type VmdescSink } from "./engine.js";
import { F } from "./fields.js";
import type { State, VMStateDescription } from "./types.js";

/**
 * The description of an unconverted legacy section of `size` bytes: one octet-stream field "data",
 * exactly what QEMU's vmdesc says of it (`{"name": "data", "size": S, "type": "buffer"}`).
 */
export function opaqueLegacy(name: string, version: number, size: number): VMStateDescription {
  return { name, version, minimumVersion: 0, fields: [F.buffer("data", size)] };
}

/**
 * The vmdesc device object QEMU 7.2 writes for a legacy section (wire-format §4.3): note the key
 * order `name, size, type` inside the field, which differs from VMState fields.
 */
export function writeLegacyVmdesc(json: VmdescSink["json"], idstr: string, instanceId: number, size: number): void {
  json.startObject();
  json.str("name", idstr);
  json.int("instance_id", instanceId);
  json.int("size", size);
  json.startArray("fields");
  json.startObject();
  json.str("name", "data");
  json.int("size", size);
  json.str("type", "buffer");
  json.endObject();
  json.endArray();
  json.endObject();
}

/**
 * Read a legacy section's bytes with a conversion (a description of its layout), at `version`.
 * Fails unless the description consumes every byte: a conversion that leaves bytes over, or needs
 * more, describes some other state.
 */
export function convertLegacy(vmsd: VMStateDescription, bytes: Uint8Array, version: number, baseOffset = 0): State {
  const r = new ByteReader(bytes, { sticky: true, baseOffset });
  const v = new WireInputVisitor(r);
  const s: State = {};
  loadState(v, vmsd, s, version);
  if (v.error) throw v.error;
  if (r.remaining !== 0) {
    throw new VmstreamError("MISMATCH", `${vmsd.name}: the conversion does not describe the whole legacy state`, {
      offset: r.offset,
      detail: `${r.remaining} of ${bytes.length} bytes left over`,
    });
  }
  return s;
}

/** The legacy bytes of a converted state: what the unconverted handler would have written. */
export function legacyBytes(vmsd: VMStateDescription, s: State): Uint8Array {
  const w = new ByteWriter();
  const v = new WireOutputVisitor(w);
  saveState(v, vmsd, s);
  if (v.error) throw v.error;
  return w.finish();
}
