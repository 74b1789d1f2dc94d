// PCI core and the i440FX host side of the `pc` machine: the PCIDevice struct every PCI function
// embeds, the host bridge's config-address register, the bus's interrupt counters, and the
// i440FX / PIIX3 functions (QEMU 7.2: hw/pci/pci.c, hw/pci-host/i440fx.c, hw/isa/piix3.c).
import { VmstreamError } from "../../io/errors.js";
import type { Visitor } from "../../visitor/visitor.js";
import { F } from "../fields.js";
import type { CustomField, State, VMStateDescription } from "../types.js";

/** Conventional PCI config space; PCI Express functions send 4096 bytes instead. */
export const PCI_CONFIG_SPACE_SIZE = 256;
export const PCIE_CONFIG_SPACE_SIZE = 4096;
/** INTA..INTD. */
export const PCI_NUM_PINS = 4;

/**
 * "pci irq state": the level of each of the four interrupt pins as be32 0 or 1. Walked as an array
 * of four uint32 so that describing visitors print it by meaning; a load refuses any other value.
 */
export const pciIrqState = (name: string, o: { version?: number } = {}): CustomField => F.custom(name, "pci irq state", PCI_NUM_PINS * 4, visitPciIrqState, o);

function visitPciIrqState(v: Visitor, name: string, value: unknown): number[] {
  const local = (value as readonly number[] | undefined) ?? [];
  const out: number[] = [];
  v.startArray(name, PCI_NUM_PINS, 4, "uint32");
  for (let i = 0; i < PCI_NUM_PINS && !v.error; i++) {
    const level = v.uint32(i, local[i] ?? 0);
    if (v.direction === "input" && !v.error && level !== 0 && level !== 1) {
      v.fail(new VmstreamError("BAD_VALUE", "pci irq state: a pin level must be 0 or 1", { path: v.path(), detail: `pin ${i} is ${level}` }));
    }
    out.push(level);
  }
  v.endArray();
  return out;
}

/**
 * PCIDevice (VMSTATE_PCI_DEVICE). `config` is sent as 256 bytes for conventional PCI and 4096 for
 * PCI Express: two fields of the same name, gated by the device's kind (state key `express`, not
 * on the wire, default false), so the vmdesc names the one sent `config[0]` or `config[1]`.
 * `version_id` is "int32 le": the stream's value must lie in 0..the destination's (2).
 */
export const pciDevice: VMStateDescription = {
  name: "PCIDevice",
  version: 2,
  minimumVersion: 1,
  fields: [
    F.int32Le("version_id"),
    F.buffer("config", PCI_CONFIG_SPACE_SIZE, { info: "pci config", test: (s) => s.express !== true }),
    F.buffer("config", PCIE_CONFIG_SPACE_SIZE, { info: "pci config", test: (s) => s.express === true }),
    pciIrqState("irq_state", { version: 2 }),
  ],
};

/** The host bridge's CONFIG_ADDRESS register (idstr "PCIHost"). */
export const pciHost: VMStateDescription = {
  name: "PCIHost",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint32("config_reg")],
};

/** The root bus: its IRQ count must match the destination's, then one counter per IRQ. */
export const pciBus: VMStateDescription = {
  name: "PCIBUS",
  version: 1,
  minimumVersion: 1,
  fields: [F.int32Equal("nirq"), F.array("irq_count", "int32", { field: "nirq" })],
};

/** i440FX host bridge function 0000:00:00.0; the byte after PCIDevice once held smm_enabled. */
export const i440fx: VMStateDescription = {
  name: "I440FX",
  version: 3,
  minimumVersion: 3,
  fields: [F.struct("parent_obj", pciDevice), F.unused(1)],
};

/** PIIX3 ISA bridge 0000:00:01.0: the PIRQ levels, and the reset control register when non-zero. */
export const piix3: VMStateDescription = {
  name: "PIIX3",
  version: 3,
  minimumVersion: 2,
  fields: [F.struct("dev", pciDevice), F.array("pci_irq_levels_vmstate", "int32", 4, { version: 3 })],
  subsections: [
    {
      name: "PIIX3/rcr",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.rcr ?? 0) !== 0,
      fields: [F.uint8("rcr")],
    },
  ],
};
