// ISA glue of the `pc` machine: the two 8237 DMA controllers, port 0x92 (fast A20), and the
// SMBus/I2C bus (QEMU 7.2: hw/dma/i8257.c, hw/i386/pc.c port92, hw/i2c/core.c).
import { F } from "../fields.js";
import type { VMStateDescription } from "../types.js";

/** One DMA channel: current and base address/count, mode and page registers. */
export const dmaRegs: VMStateDescription = {
  name: "dma_regs",
  version: 1,
  minimumVersion: 1,
  fields: [F.array("now", "int32", 2), F.array("base", "uint16", 2), F.uint8("mode"), F.uint8("page"), F.uint8("pageh"), F.uint8("dack"), F.uint8("eop")],
};

/** An 8237 DMA controller (idstr "dma", instance 0 = 8-bit channels 0-3, 1 = 16-bit channels 4-7). */
export const dma: VMStateDescription = {
  name: "dma",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint8("command"), F.uint8("mask"), F.uint8("flip_flop"), F.int32("dshift"), F.structArray("regs", dmaRegs, 4)],
};

/** System control port A (0x92): fast A20 gate and fast reset. */
export const port92: VMStateDescription = {
  name: "port92",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint8("outport")],
};

/** An I2C/SMBus bus: the address of the device last addressed. */
export const i2cBus: VMStateDescription = {
  name: "i2c_bus",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint8("saved_address")],
};
