// Device sections in a replay: how a decoded section is written again, and which vmdesc trailer follows the
// stream (the one the device walks generated when it equals the stream's, else the stream's own). Browser-safe.
import type { DeviceSpec, StreamEncoder } from "../savevm/encoder.js";
import type { DeviceSectionResult, VmdescInfo } from "../savevm/types.js";

/** How a decoded device section is written again: its description at the section's version, its vmdesc kind. */
export function deviceSpec(dev: DeviceSectionResult): DeviceSpec & { readonly idstr: string } {
  const legacy = dev.source === "legacy" || (dev.vmdesc !== undefined && dev.vmdesc.vmsd_name === undefined);
  // descriptions made from a vmdesc entry accept any version: write them at the section's
  const description = dev.source === "registry" ? dev.description : { ...dev.description, version: dev.version };
  return {
    id: dev.sectionId,
    idstr: dev.idstr,
    instanceId: dev.instanceId,
    version: dev.version,
    description,
    state: dev.state,
    vmdesc: legacy ? "legacy" : "vmstate",
  };
}

/** Which vmdesc text a replay writes: "auto" (the generated one when equal to the stream's), "generated", "original". */
export type VmdescChoice = "auto" | "generated" | "original";

/**
 * Write the vmdesc trailer of a replay (when the input had one), and say which devices' objects in the
 * generated text differ from the stream's.
 */
export function writeVmdescTrailer(
  enc: StreamEncoder,
  generated: string | undefined,
  vmdesc: VmdescInfo | undefined,
  mode: VmdescChoice = "auto",
): { vmdescGenerated: boolean | undefined; differences: string[] } {
  if (!vmdesc || generated === undefined) return { vmdescGenerated: undefined, differences: [] };
  const useGenerated = mode === "generated" || (mode === "auto" && generated === vmdesc.text);
  enc.vmdescTrailer(useGenerated ? generated : vmdesc.text);
  const differences: string[] = [];
  if (generated !== vmdesc.text) {
    let gen: { devices?: unknown[] } = {};
    try {
      gen = JSON.parse(generated) as { devices?: unknown[] };
    } catch {
      differences.push("(generated text is not JSON)");
    }
    const orig = vmdesc.json.devices;
    const g = gen.devices ?? [];
    for (let i = 0; i < Math.max(orig.length, g.length); i++) {
      if (JSON.stringify(orig[i]) !== JSON.stringify(g[i])) {
        const o = orig[i] as { name?: string; instance_id?: number } | undefined;
        differences.push(o ? `${o.name}/${o.instance_id}` : `#${i}`);
      }
    }
    if (differences.length === 0) differences.push("(formatting only)");
  }
  return { vmdescGenerated: useGenerated, differences };
}
