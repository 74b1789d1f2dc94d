// Device sections decoded from their vmdesc entry when nobody supplied a description: old-style sections
// (`{"name": "slirp", ..., "size": S, "fields": [{"name": "data", "size": S, "type": "buffer"}]}`) become an
// octet-stream of S bytes; any other entry an opaque blob of the byte count the entry adds up to (fields'
// size x array_len, subsections with their 0x05/name/version headers) — what analyze-migration.py consumes.
// The entry is untrusted: every number is checked, depth and total size are capped. Browser-safe.
import { VmstreamError } from "../../io/errors.js";
import type { DeviceSource, VmdescFallback } from "../../savevm/types.js";
import { vmdescPayloadSize } from "../../savevm/vmdesc.js";
import type { VmdescDevice, VmdescLegacyDevice } from "../../vmstate/vmdesc.js";

export { vmdescPayloadSize };

import { F } from "../../vmstate/fields.js";
import type { VMStateDescription } from "../../vmstate/types.js";

/** Any section version is accepted by these descriptions (the vmdesc entry is the authority). */
const ANY_VERSION = 0xffffffff;

/** An old-style (non-VMState) entry: a `size` and one buffer field "data" of that size. */
export function isLegacyEntry(d: VmdescDevice): d is VmdescLegacyDevice {
  const f = d.fields;
  return (
    typeof d.size === "number" &&
    d.vmsd_name === undefined &&
    Array.isArray(f) &&
    f.length === 1 &&
    f[0]!.name === "data" &&
    f[0]!.type === "buffer" &&
    f[0]!.size === d.size
  );
}

/** An octet-stream section of `size` bytes (field "data"). */
export function legacyDescription(name: string, size: number): VMStateDescription {
  return { name, version: ANY_VERSION, fields: [F.buffer("data", size)] };
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** The decoder's default last resort for vmdesc entries. */
export const defaultVmdescFallback: VmdescFallback = (idstr, _instanceId, device, limits) => {
  if (isLegacyEntry(device)) {
    const size = device.size;
    if (!isCount(size) || size > limits.deviceBytes) throw new VmstreamError("LIMIT", "legacy section size out of range", { detail: String(size) });
    return { description: legacyDescription(idstr, size), source: "legacy" as DeviceSource };
  }
  const size = vmdescPayloadSize(device, limits);
  const name = typeof device.vmsd_name === "string" ? device.vmsd_name : idstr;
  return { description: { name, version: ANY_VERSION, fields: size > 0 ? [F.buffer("data", size)] : [] }, source: "opaque" as DeviceSource };
};
