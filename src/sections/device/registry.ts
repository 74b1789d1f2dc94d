// Device (FULL) sections: where their descriptions come from. The decoder (src/savevm) tries a registered
// description first, then one built from the section's vmdesc entry (options.describe, e.g. the analyzer's
// descriptionFromVmdesc), then the fallback of legacy.ts (legacy octet-stream / opaque blob of the size the
// vmdesc gives). This module holds the registries. Browser-safe.

import type { DeviceContext, DeviceRegistry } from "../../savevm/types.js";
import { x86DeviceForIdstr } from "../../vmstate/devices/index.js";
import type { VMStateDescription } from "../../vmstate/types.js";

/** Machine types whose device set the x86 descriptions cover: pc-i440fx-*, pc-q35-*, "pc", "q35", "isapc". */
export const X86_PC_MACHINE = /^(pc|q35|isapc)($|-)/;

/**
 * The 33 x86 `pc` device descriptions, for streams whose configuration names an x86 PC machine (the idstr
 * alone is ambiguous: "cpu" or "timer" exist on every target).
 */
export const x86Registry: DeviceRegistry = (idstr: string, _instanceId: number, _version: number, ctx: DeviceContext) =>
  ctx.machine !== undefined && X86_PC_MACHINE.test(ctx.machine) ? x86DeviceForIdstr(idstr) : undefined;

/** A registry over a fixed map of idstr (or its last path component, the VMState name) -> description. */
export function registryFromMap(map: Readonly<Record<string, VMStateDescription>>, machine?: RegExp): DeviceRegistry {
  return (idstr, _i, _v, ctx) => {
    if (machine && (ctx.machine === undefined || !machine.test(ctx.machine))) return undefined;
    return map[idstr] ?? map[idstr.slice(idstr.lastIndexOf("/") + 1)];
  };
}

/** Try registries in order. */
export function chainRegistries(...registries: readonly (DeviceRegistry | undefined)[]): DeviceRegistry {
  return (idstr, instanceId, version, ctx) => {
    for (const r of registries) {
      const d = r?.(idstr, instanceId, version, ctx);
      if (d) return d;
    }
    return undefined;
  };
}

/** `devices` option of the stream decoder: a registry, "auto" (x86 PC machines) or "none". */
export type DeviceRegistryOption = DeviceRegistry | "auto" | "none";

export function resolveRegistry(o: DeviceRegistryOption | undefined): DeviceRegistry | undefined {
  if (o === undefined || o === "auto") return x86Registry;
  if (o === "none") return undefined;
  return o;
}
