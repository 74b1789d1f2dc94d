// Display: the standard VGA as a PCI function (QEMU 7.2: hw/display/vga.c, vga-pci.c).
import { F } from "../fields.js";
import type { State, VMStateDescription } from "../types.js";
import { pciDevice } from "./pci.js";

/** Bochs VBE DISPI registers. */
export const VBE_DISPI_INDEX_NB = 10;

/**
 * The VGA register file and palette. Sequencer and graphics registers are sent as the first 8 and
 * 16 bytes of their files. `is_vbe_vmstate` must match the destination's (1: VBE present). The
 * framebuffer byte order travels only when it is not the target's default (state keys
 * `big_endian_fb` / `default_endian_fb`, both false on x86).
 */
export const vgaCommon: VMStateDescription = {
  name: "vga",
  version: 2,
  minimumVersion: 2,
  fields: [
    F.uint32("latch"),
    F.uint8("sr_index"),
    F.buffer("sr", 8),
    F.uint8("gr_index"),
    F.buffer("gr", 16),
    F.uint8("ar_index"),
    F.buffer("ar", 21),
    F.int32("ar_flip_flop"),
    F.uint8("cr_index"),
    F.buffer("cr", 256),
    F.uint8("msr"),
    F.uint8("fcr"),
    F.uint8("st00"),
    F.uint8("st01"),
    F.uint8("dac_state"),
    F.uint8("dac_sub_index"),
    F.uint8("dac_read_index"),
    F.uint8("dac_write_index"),
    F.buffer("dac_cache", 3),
    F.buffer("palette", 768),
    F.int32("bank_offset"),
    F.uint8Equal("is_vbe_vmstate"),
    F.uint16("vbe_index"),
    F.array("vbe_regs", "uint16", VBE_DISPI_INDEX_NB),
    F.uint32("vbe_start_addr"),
    F.uint32("vbe_line_offset"),
    F.uint32("vbe_bank_mask"),
  ],
  subsections: [
    {
      name: "vga.endian",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.big_endian_fb ?? false) !== (s.default_endian_fb ?? false),
      fields: [F.bool("big_endian_fb")],
    },
  ],
};

/** The PCI VGA function (vmsd "vga"): PCIDevice, then the VGA core as struct `vga`. */
export const vgaPci: VMStateDescription = {
  name: "vga",
  version: 2,
  minimumVersion: 2,
  fields: [F.struct("dev", pciDevice), F.struct("vga", vgaCommon)],
};
