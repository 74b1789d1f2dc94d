// Device descriptions of QEMU 7.2's x86 `pc` machine (pc-i440fx-7.2 with its default devices).
// `x86Devices` maps each top-level VMState name (the vmdesc's `vmsd_name`, the last part of a
// section's idstr) to its description. Configuration they read from state keys that are not on the
// wire: docs/vmstate.md, "Device notes".
import type { VMStateDescription } from "../types.js";
import { piix4Pm } from "./acpi.js";
import { parallelIsa, serialIsa } from "./char.js";
import { cpuCommon, x86Cpu } from "./cpu.js";
import { vgaPci } from "./display.js";
import { acpiBuild, fwCfg, globalState } from "./firmware.js";
import { pckbd, ps2kbd, ps2mouse, vmmouse } from "./input.js";
import { apic, i8259, ioapic, kvmTprOpt } from "./intc.js";
import { dma, i2cBus, port92 } from "./isa.js";
import { i440fx, pciBus, pciHost, piix3 } from "./pci.js";
import { fdcIsa, idePci } from "./storage.js";
import { hpet, i8254, mc146818rtc, pcspk, timers } from "./timers.js";

export * from "./acpi.js";
export * from "./char.js";
export * from "./cpu.js";
export * from "./display.js";
export * from "./firmware.js";
export * from "./input.js";
export * from "./intc.js";
export * from "./isa.js";
export * from "./pci.js";
export * from "./slirp.js";
export * from "./storage.js";
export * from "./timers.js";

/** The top-level descriptions, in the order the `pc` machine sends their sections. */
export const x86DeviceList: readonly VMStateDescription[] = [
  timers,
  cpuCommon,
  x86Cpu,
  kvmTprOpt,
  apic,
  fwCfg,
  pciHost,
  pciBus,
  i440fx,
  dma,
  piix3,
  i8259,
  ioapic,
  vgaPci,
  hpet,
  mc146818rtc,
  i8254,
  pcspk,
  serialIsa,
  parallelIsa,
  fdcIsa,
  ps2kbd,
  ps2mouse,
  pckbd,
  vmmouse,
  port92,
  idePci,
  i2cBus,
  piix4Pm,
  acpiBuild,
  globalState,
];

/** Top-level descriptions by VMState name ("PIIX3", "i8259", "serial", ...). */
export const x86Devices: Readonly<Record<string, VMStateDescription>> = Object.freeze(Object.fromEntries(x86DeviceList.map((d) => [d.name, d])));

/** The description for a section's idstr: "0000:00:01.0/PIIX3" and "PIIX3" both give PIIX3's. */
export function x86DeviceForIdstr(idstr: string): VMStateDescription | undefined {
  return x86Devices[idstr] ?? x86Devices[idstr.slice(idstr.lastIndexOf("/") + 1)];
}
