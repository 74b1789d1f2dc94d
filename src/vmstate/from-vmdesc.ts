// Descriptions built from a stream's own vmdesc JSON (wire-format §4): walked with the wire input
// visitor, one consumes exactly the bytes QEMU wrote for its device and re-saves them byte for byte,
// its vmdesc objects too. The vmdesc is untrusted: anything malformed is a BAD_VMDESC VmstreamError
// with the JSON path. The rules: docs/vmstate.md, "Descriptions from a stream's vmdesc, and their
// vmdesc written again".
import { VmstreamError } from "../io/errors.js";
import { bad, ConversionContext, convertBody, isObject, isSize, isU32, own, show, type VmdescLimits } from "./from-vmdesc-convert.js";
import type { VMStateDescription } from "./types.js";
import type { Vmdesc, VmdescDevice } from "./vmdesc.js";

export type { VmdescLimits } from "./from-vmdesc-convert.js";
export type { Vmdesc, VmdescBody, VmdescDevice, VmdescField, VmdescLegacyDevice, VmdescVmstateDevice } from "./vmdesc.js";

/** A description from a vmdesc device entry, and the number of payload bytes it describes. */
export interface VmdescConversion {
  readonly vmsd: VMStateDescription;
  /** Payload bytes the vmdesc describes for this device (what the walk consumes when the vmdesc is truthful). */
  readonly wireSize: number;
}

/** Version given to a device whose vmdesc entry has none (old-style sections): any section version loads. */
export const ANY_VERSION = 0xffffffff;

/**
 * The description of one device from its vmdesc entry. Walk it with `loadState(v, vmsd, s,
 * sectionVersion, idstr)`. Throws VmstreamError "BAD_VMDESC" (path: the JSON path below `path`).
 */
export function descriptionFromVmdesc(device: VmdescDevice | unknown, limits: VmdescLimits = {}, path = "vmdesc"): VMStateDescription {
  return convertVmdescDevice(device, limits, path).vmsd;
}

/** {@link descriptionFromVmdesc}, with the payload size the entry describes. */
export function convertVmdescDevice(device: VmdescDevice | unknown, limits: VmdescLimits = {}, path = "vmdesc"): VmdescConversion {
  const ctx = new ConversionContext(limits);
  if (!isObject(device)) bad(path, "a device entry must be an object");
  const name = own(device, "name");
  if (typeof name !== "string") bad(`${path}.name`, "the device name must be a string");
  const inst = own(device, "instance_id");
  if (!isU32(inst)) bad(`${path}.instance_id`, "instance_id must be an integer in 0..2^32-1", show(inst));
  const vmsdName = own(device, "vmsd_name");
  let version = ANY_VERSION;
  let descName = name;
  if (vmsdName !== undefined) {
    if (typeof vmsdName !== "string") bad(`${path}.vmsd_name`, "vmsd_name must be a string");
    descName = vmsdName;
    const ver = own(device, "version");
    if (!isU32(ver)) bad(`${path}.version`, "version must be an integer in 0..2^32-1", show(ver));
    version = ver;
  } else {
    const size = own(device, "size");
    if (size !== undefined && !isSize(size, ctx)) bad(`${path}.size`, "size must be an integer in 0..maxFieldSize", show(size));
  }
  const body = convertBody(device, path, 0, ctx, descName, version);
  const declared = own(device, "size");
  if (vmsdName === undefined && typeof declared === "number" && ctx.limits.checkStructSizes && declared !== body.size) {
    bad(`${path}.size`, "the device's size differs from what its fields describe", `size ${declared}, fields ${body.size} bytes`);
  }
  return { vmsd: body.vmsd, wireSize: body.size };
}

/** Every device of a parsed vmdesc, in stream order (path `vmdesc.devices[i]`). */
export function descriptionsFromVmdesc(vmdesc: Vmdesc | unknown, limits: VmdescLimits = {}): VMStateDescription[] {
  if (!isObject(vmdesc)) bad("vmdesc", "the vmdesc must be an object");
  const devices = own(vmdesc, "devices");
  if (!Array.isArray(devices)) bad("vmdesc.devices", "devices must be an array");
  return devices.map((d, i) => descriptionFromVmdesc(d, limits, `vmdesc.devices[${i}]`));
}

/**
 * Parse a vmdesc JSON text (as found in the trailer). Duplicate keys keep the last value, as
 * Python's json module does; nested tmp/qtailq bodies are not looked into. Throws BAD_VMDESC.
 */
export function parseVmdesc(text: string): Vmdesc {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new VmstreamError("BAD_VMDESC", "the vmdesc is not valid JSON", { path: "vmdesc", detail: e instanceof Error ? e.message : String(e), cause: e });
  }
  if (!isObject(v)) bad("vmdesc", "the vmdesc must be an object");
  const ps = own(v, "page_size");
  if (!isU32(ps)) bad("vmdesc.page_size", "page_size must be an integer in 0..2^32-1", show(ps));
  if (!Array.isArray(own(v, "devices"))) bad("vmdesc.devices", "devices must be an array");
  return v as unknown as Vmdesc;
}
