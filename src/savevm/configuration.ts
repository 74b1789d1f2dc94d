// The configuration section (wire-format §2.8): `0x07`, be32 length, machine name, then the subsections of
// the "configuration" VMState description (loaded at version 0), walked by the VMState engine with QEMU's
// subsection detection. Browser-safe.
import { F } from "../vmstate/fields.js";
import type { State, VMStateDescription } from "../vmstate/types.js";
import { MIGRATION_CAPABILITIES } from "./constants.js";

const capability: VMStateDescription = {
  name: "capability",
  version: 0,
  fields: [F.custom("name", "capability", 1, (v, name, value) => v.str(name, (value as string | undefined) ?? ""))],
};

/** `configuration/target-page-bits` (v1): be32; kernels handle pages of 1 KiB .. 64 KiB. */
export const configTargetPageBits: VMStateDescription = {
  name: "configuration/target-page-bits",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint32("target_page_bits")],
  postLoad(s) {
    const b = s.target_page_bits as number;
    if (b < 10 || b > 16) return `target page bits ${b} outside 10..16`;
  },
};

/** `configuration/uuid` (v1): 16 raw bytes. */
export const configUuid: VMStateDescription = {
  name: "configuration/uuid",
  version: 1,
  minimumVersion: 1,
  fields: [F.buffer("uuid", 16)],
};

/** Build the capabilities subsection with a cap on the count (QEMU allocates count elements unchecked). */
export function configCapabilities(maxCount: number): VMStateDescription {
  return {
    name: "configuration/capabilities",
    version: 1,
    minimumVersion: 1,
    fields: [
      F.uint32("caps_count"),
      F.validate("caps_count_limit", (s) => {
        if ((s.caps_count as number) > maxCount) return `${s.caps_count as number} capabilities, at most ${maxCount} accepted`;
      }),
      F.structArray("capabilities", capability, { field: "caps_count" }),
    ],
    postLoad(s) {
      for (const c of s.capabilities as State[]) {
        if (!MIGRATION_CAPABILITIES.includes(c.name as string)) return `unknown capability "${c.name as string}"`;
      }
    },
  };
}

/** The subsections part of "configuration" (the name and its length are read by hand, with a cap). */
export function configurationSubsections(maxCaps: number): VMStateDescription {
  return {
    name: "configuration",
    version: 1,
    fields: [],
    subsections: [configTargetPageBits, configCapabilities(maxCaps), configUuid],
  };
}
