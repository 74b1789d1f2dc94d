// ACPI power management of the `pc` machine: the PIIX4 PM function 0000:00:01.3 with its APM
// port, SMBus controller, PM timer, GPE block, PCI/memory/CPU hotplug registers (QEMU 7.2:
// hw/acpi/piix4.c, hw/isa/apm.c, hw/i2c/pm_smbus.c, hw/acpi/pcihp.c, memory_hotplug.c, cpu.c).
import { F } from "../fields.js";
import type { State, VMStateDescription } from "../types.js";
import { pciDevice } from "./pci.js";

/** The APM control and status ports (0xb2/0xb3). */
export const apm: VMStateDescription = {
  name: "APM State",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint8("apmc"), F.uint8("apms")],
};

/** Bytes of the SMBus block buffer. */
export const PM_SMBUS_MAX_MSG_SIZE = 32;

/** The PM SMBus host controller. */
export const pmSmbus: VMStateDescription = {
  name: "pmsmb",
  version: 1,
  minimumVersion: 1,
  fields: [
    F.uint8("smb_stat"),
    F.uint8("smb_ctl"),
    F.uint8("smb_cmd"),
    F.uint8("smb_addr"),
    F.uint8("smb_data0"),
    F.uint8("smb_data1"),
    F.uint32("smb_index"),
    F.array("smb_data", "uint8", PM_SMBUS_MAX_MSG_SIZE),
    F.uint8("smb_auxctl"),
    F.uint8("smb_blkdata"),
    F.bool("i2c_enable"),
    F.bool("op_done"),
    F.bool("in_i2c_block_read"),
    F.bool("start_transaction_on_status_read"),
  ],
};

/** GPE0 status and enable registers (the first two bytes of each, as one be16). */
export const gpe: VMStateDescription = {
  name: "gpe",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint16("sts"), F.uint16("en")],
};

/** Up/down request bitmaps of one hotplug-capable PCI bus. */
const pciStatusOf = (name: string): VMStateDescription => ({
  name,
  version: 1,
  minimumVersion: 1,
  fields: [F.uint32("up"), F.uint32("down")],
});
/** The root bus's bitmaps as sent when ACPI hotplug of bridges is off. */
export const pciStatus = pciStatusOf("pci_status");
/** Per-bus bitmaps as sent by the ACPI PCI hotplug block. */
export const acpiPcihpPciStatus = pciStatusOf("acpi_pcihp_pci_status");
/** Buses the ACPI PCI hotplug block can select. */
export const ACPI_PCIHP_MAX_HOTPLUG_BUS = 256;

/** One DIMM slot of ACPI memory hotplug. */
export const memhpSts: VMStateDescription = {
  name: "memory hotplug device state",
  version: 1,
  minimumVersion: 1,
  fields: [F.bool("is_enabled"), F.bool("is_inserting"), F.uint32("ost_event"), F.uint32("ost_status")],
};

/** ACPI memory hotplug: the selected slot, then one entry per slot (`dev_count`, the destination's; not sent). */
export const memoryHotplug: VMStateDescription = {
  name: "memory hotplug state",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint32("selector"), F.structArray("devs", memhpSts, { field: "dev_count" })],
};

/** One possible CPU of (modern) ACPI CPU hotplug. */
export const cpuhpSts: VMStateDescription = {
  name: "CPU hotplug device state",
  version: 1,
  minimumVersion: 1,
  fields: [F.bool("is_inserting"), F.bool("is_removing"), F.uint32("ost_event"), F.uint32("ost_status")],
};

/** Modern ACPI CPU hotplug: selector, command, one entry per possible CPU (`dev_count`, default 1). */
export const cpuHotplug: VMStateDescription = {
  name: "CPU hotplug state",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint32("selector"), F.uint8("command"), F.structArray("devs", cpuhpSts, (s) => s.dev_count ?? 1)],
};

/** PCI hotplug of bridges through ACPI (state key `use_acpi_hotplug_bridge`, default true). */
const useBridgeHotplug = (s: State): boolean => s.use_acpi_hotplug_bridge ?? true;

/**
 * The PIIX4 PM function. Which hotplug registers are sent depends on the machine's configuration
 * (not on the wire): `use_acpi_hotplug_bridge` (true), `not_migrate_acpi_index` (false, true only
 * on <= 6.2 machines), `smbus_migration` (true; false on machines without SMBus migration),
 * `acpi_memory_hotplug.is_enabled` (true) and `cpu_hotplug_legacy` (true until the guest switches
 * to modern CPU hotplug; a load of "piix4_pm/cpuhp" switches it off).
 */
export const piix4Pm: VMStateDescription = {
  name: "piix4_pm",
  version: 3,
  minimumVersion: 3,
  fields: [
    F.struct("parent_obj", pciDevice),
    F.uint16("ar.pm1.evt.sts"),
    F.uint16("ar.pm1.evt.en"),
    F.uint16("ar.pm1.cnt.cnt"),
    F.struct("apm", apm),
    F.struct("smb", pmSmbus, { test: (s) => s.smbus_migration ?? true }),
    F.timer("ar.tmr.timer"),
    F.int64("ar.tmr.overflow_time"),
    F.struct("ar.gpe", gpe, { version: 2 }),
    F.struct("acpi_pci_hotplug.acpi_pcihp_pci_status[0x0]", pciStatus, { test: (s) => !useBridgeHotplug(s) }),
    F.uint32("acpi_pci_hotplug.hotplug_select", { test: useBridgeHotplug }),
    F.structArray("acpi_pci_hotplug.acpi_pcihp_pci_status", acpiPcihpPciStatus, ACPI_PCIHP_MAX_HOTPLUG_BUS, { test: useBridgeHotplug }),
    F.uint32("acpi_pci_hotplug.acpi_index", { test: (s) => useBridgeHotplug(s) && !(s.not_migrate_acpi_index ?? false) }),
  ],
  subsections: [
    {
      name: "piix4_pm/memhp",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => s.acpi_memory_hotplug?.is_enabled ?? true,
      fields: [F.struct("acpi_memory_hotplug", memoryHotplug, { version: 1 })],
    },
    {
      name: "piix4_pm/cpuhp",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => !(s.cpu_hotplug_legacy ?? true),
      preLoad: (s) => {
        s.cpu_hotplug_legacy = false;
      },
      fields: [F.struct("cpuhp_state", cpuHotplug, { version: 1 })],
    },
  ],
};
