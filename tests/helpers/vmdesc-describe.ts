// TEST-ONLY stand-in for the analyzer's descriptionFromVmdesc: turns a vmdesc device entry into a VMState
// description whose walk consumes exactly the bytes QEMU wrote — integers by their type, structs recursively,
// subsections by name, anything else as a buffer of its size. Enough for the decoder's `describe` hook tests.
import type { VmdescEntryBody, VmdescEntry, VmdescEntryField } from "../../src/savevm/vmdesc.js";
import { F } from "../../src/vmstate/fields.js";
import type { Field, VMStateDescription } from "../../src/vmstate/types.js";

const INTS: Record<string, [keyof typeof F, number]> = {
  bool: ["bool", 1], int8: ["int8", 1], uint8: ["uint8", 1], int16: ["int16", 2], uint16: ["uint16", 2],
  int32: ["int32", 4], uint32: ["uint32", 4], int64: ["int64", 8], uint64: ["uint64", 8],
};

function field(f: VmdescEntryField): Field[] {
  const n = f.array_len ?? 1;
  const int = INTS[f.type];
  if (int && int[1] === f.size) {
    return n === 1 ? [(F[int[0]] as (name: string) => Field)(f.name)] : [F.array(f.name, int[0] as "uint8", n)];
  }
  if (f.type === "struct" && f.struct) {
    const vmsd = body(f.struct, f.name);
    return n === 1 ? [F.struct(f.name, vmsd)] : [F.structArray(f.name, vmsd, n)];
  }
  return [F.buffer(f.name, f.size * n)];
}

function body(b: VmdescEntryBody, name: string): VMStateDescription {
  return {
    name: b.vmsd_name ?? name,
    version: b.version ?? 0,
    fields: (b.fields ?? []).flatMap(field),
    subsections: (b.subsections ?? []).map((s) => body(s, s.vmsd_name!)),
  };
}

export function describeFromVmdesc(_idstr: string, _instanceId: number, d: VmdescEntry): VMStateDescription | undefined {
  if (d.vmsd_name === undefined) return undefined; // legacy: the decoder's fallback handles it
  return body(d, d.name);
}
