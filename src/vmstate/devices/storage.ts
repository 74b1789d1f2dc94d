// Storage controllers of the `pc` machine: the ISA floppy controller and the PIIX IDE function
// with its two busmaster DMA engines, two buses and four drives (QEMU 7.2: hw/block/fdc.c,
// fdc-isa.c, hw/ide/core.c, hw/ide/pci.c, hw/ide/piix.c).
import { F } from "../fields.js";
import type { State, VMStateDescription } from "../types.js";
import { pciDevice } from "./pci.js";
import { timerArmed } from "./timers.js";

// ---- floppy ------------------------------------------------------------------------------------

/** Bytes of the FDC's command/data FIFO (one sector). */
export const FD_SECTOR_LEN = 512;
const FD_MSR_NONDMA = 0x20;
const FD_MSR_DIO = 0x40;
const FD_MSR_RQM = 0x80;
/** Controller phases; 0 means "reconstruct from the main status register after the load". */
export const FD_PHASE_RECONSTRUCT = 0;
export const FD_PHASE_COMMAND = 1;
export const FD_PHASE_EXECUTION = 2;
export const FD_PHASE_RESULT = 3;

/** The phase the main status register implies (the rule of QEMU 2.3, frozen as migration ABI). */
export function fdcReconstructPhase(s: State): number {
  const msr = s.msr ?? 0;
  if (msr & FD_MSR_NONDMA) return FD_PHASE_EXECUTION;
  if ((msr & FD_MSR_RQM) === 0) return FD_PHASE_EXECUTION;
  if (msr & FD_MSR_DIO) return FD_PHASE_RESULT;
  return FD_PHASE_COMMAND;
}

/**
 * One floppy drive's head position. The media-changed flag travels when a medium backend is
 * attached (state key `blk`, default false) and the flag is not 1; the media data rate always.
 */
export const fdrive: VMStateDescription = {
  name: "fdrive",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint8("head"), F.uint8("track"), F.uint8("sect")],
  subsections: [
    {
      name: "fdrive/media_changed",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => s.blk === true && (s.media_changed ?? 1) !== 1,
      fields: [F.uint8("media_changed")],
    },
    {
      name: "fdrive/media_rate",
      version: 1,
      minimumVersion: 1,
      fields: [F.uint8("media_rate")],
    },
    {
      name: "fdrive/perpendicular",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.perpendicular ?? 0) !== 0,
      fields: [F.uint8("perpendicular")],
    },
  ],
};

/**
 * The floppy controller core. The FIFO's length is the destination's (`fifo_size`, 512) and not
 * sent; the phase travels only when the status register would not reconstruct it.
 */
export const fdcCore: VMStateDescription = {
  name: "fdc",
  version: 2,
  minimumVersion: 2,
  preLoad: (s) => {
    s.phase = FD_PHASE_RECONSTRUCT;
  },
  postLoad: (s) => {
    if (s.phase === FD_PHASE_RECONSTRUCT) s.phase = fdcReconstructPhase(s);
  },
  fields: [
    F.uint8("sra"),
    F.uint8("srb"),
    F.uint8("dor_vmstate"),
    F.uint8("tdr"),
    F.uint8("dsr"),
    F.uint8("msr"),
    F.uint8("status0"),
    F.uint8("status1"),
    F.uint8("status2"),
    F.array("fifo", "uint8", (s) => s.fifo_size ?? FD_SECTOR_LEN),
    F.uint32("data_pos"),
    F.uint32("data_len"),
    F.uint8("data_state"),
    F.uint8("data_dir"),
    F.uint8("eot"),
    F.uint8("timer0"),
    F.uint8("timer1"),
    F.uint8("precomp_trk"),
    F.uint8("config"),
    F.uint8("lock"),
    F.uint8("pwrd"),
    F.uint8Equal("num_floppies"),
    F.structArray("drives", fdrive, 2, { version: 1 }),
  ],
  subsections: [
    {
      name: "fdc/reset_sensei",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.reset_sensei ?? 0) !== 0,
      fields: [F.int32("reset_sensei")],
    },
    {
      name: "fdc/result_timer",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => timerArmed(s.result_timer),
      fields: [F.timer("result_timer")],
    },
    {
      name: "fdc/phase",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.phase ?? fdcReconstructPhase(s)) !== fdcReconstructPhase(s),
      fields: [F.uint8("phase")],
    },
  ],
};

/** The ISA floppy controller (idstr "fdc"): the core as struct `state`. */
export const fdcIsa: VMStateDescription = {
  name: "fdc",
  version: 2,
  minimumVersion: 2,
  fields: [F.struct("state", fdcCore)],
};

// ---- IDE ---------------------------------------------------------------------------------------

const DRQ_STAT = 0x08;
const IDE_RETRY_PIO = 0x10;
/** Status bits older versions used for retry state; the real status then travels separately. */
const BM_MIGRATION_COMPAT_STATUS_BITS = 0x78;
/** The drive's PIO buffer: 256 sectors + 4 bytes (the destination's size; not sent). */
export const IDE_IO_BUFFER_TOTAL_LEN = 256 * 512 + 4;
/** Number of end-of-transfer continuations a PIO transfer can be resumed with. */
const IDE_TRANSFER_END_FUNCS = 6;

/** A PCI IDE busmaster DMA engine. */
export const bmdma: VMStateDescription = {
  name: "ide bmdma",
  version: 3,
  minimumVersion: 0,
  fields: [
    F.uint8("cmd"),
    F.uint8("migration_compat_status"),
    F.uint32("addr"),
    F.int64("migration_retry_sector_num"),
    F.uint32("migration_retry_nsector"),
    F.uint8("migration_retry_unit"),
  ],
  subsections: [
    {
      name: "ide bmdma_current",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.cur_prd_len ?? 0) !== 0,
      fields: [F.uint32("cur_addr"), F.uint32("cur_prd_last"), F.uint32("cur_prd_addr"), F.uint32("cur_prd_len")],
    },
    {
      name: "ide bmdma/status",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => ((s.status ?? 0) & BM_MIGRATION_COMPAT_STATUS_BITS) !== 0,
      fields: [F.uint8("status")],
    },
  ],
};

/** An IDE bus: the selected drive and the pending command; retry state while an error is pending. */
export const ideBus: VMStateDescription = {
  name: "ide_bus",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint8("cmd"), F.uint8("unit")],
  subsections: [
    {
      name: "ide_bus/error",
      version: 2,
      minimumVersion: 1,
      needed: (s: State) => (s.error_status ?? 0) !== 0,
      fields: [
        F.int32("error_status"),
        F.int64("retry_sector_num", { version: 2 }),
        F.uint32("retry_nsector", { version: 2 }),
        F.uint8("retry_unit", { version: 2 }),
      ],
    },
  ],
};

/**
 * One IDE drive (present or not). The 512-byte IDENTIFY block travels once the guest has read it.
 * A PIO transfer in flight (DRQ set, or a PIO retry pending on its bus: key `bus_error_status`,
 * which the "ide" pre-save copies from the bus) travels in "ide_drive/pio_state" with the whole
 * I/O buffer (`io_buffer_total_len` bytes, the destination's size).
 */
export const ideDrive: VMStateDescription = {
  name: "ide_drive",
  version: 3,
  minimumVersion: 0,
  fields: [
    F.int32("mult_sectors"),
    F.int32("identify_set"),
    F.buffer("identify_data", 512, { test: (s) => (s.identify_set ?? 0) !== 0 }),
    F.uint8("feature"),
    F.uint8("error"),
    F.uint32("nsector"),
    F.uint8("sector"),
    F.uint8("lcyl"),
    F.uint8("hcyl"),
    F.uint8("hob_feature"),
    F.uint8("hob_sector"),
    F.uint8("hob_nsector"),
    F.uint8("hob_lcyl"),
    F.uint8("hob_hcyl"),
    F.uint8("select"),
    F.uint8("status"),
    F.uint8("lba48"),
    F.uint8("sense_key"),
    F.uint8("asc"),
    F.uint8("cdrom_changed", { version: 3 }),
  ],
  subsections: [
    {
      name: "ide_drive/pio_state",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => ((s.status ?? 0) & DRQ_STAT) !== 0 || ((s.bus_error_status ?? 0) & IDE_RETRY_PIO) !== 0,
      postLoad: (s) => {
        if (s.end_transfer_fn_idx >= IDE_TRANSFER_END_FUNCS) return `end_transfer_fn_idx ${s.end_transfer_fn_idx} is not below ${IDE_TRANSFER_END_FUNCS}`;
      },
      fields: [
        F.int32("req_nb_sectors"),
        F.array("io_buffer", "uint8", (s) => s.io_buffer_total_len ?? IDE_IO_BUFFER_TOTAL_LEN, { version: 1 }),
        F.int32("cur_io_buffer_offset"),
        F.int32("cur_io_buffer_len"),
        F.uint8("end_transfer_fn_idx"),
        F.int32("elementary_transfer_size"),
        F.int32("packet_transfer_size"),
      ],
    },
    {
      name: "ide_drive/tray_state",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => s.tray_open === true || s.tray_locked === true,
      fields: [F.bool("tray_open"), F.bool("tray_locked")],
    },
    {
      name: "ide_drive/atapi/gesn_state",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => s["events.new_media"] === true || s["events.eject_request"] === true,
      fields: [F.bool("events.new_media"), F.bool("events.eject_request")],
    },
  ],
};

/** The PIIX3 IDE function 0000:00:01.1 (vmsd "ide"). */
export const idePci: VMStateDescription = {
  name: "ide",
  version: 3,
  minimumVersion: 0,
  preSave: (s) => {
    for (let b = 0; b < 2; b++) {
      const errorStatus = s.bus?.[b]?.error_status ?? 0;
      for (const drive of (s[`bus[${b}].ifs`] ?? []) as State[]) drive.bus_error_status = errorStatus;
    }
  },
  fields: [
    F.struct("parent_obj", pciDevice),
    F.structArray("bmdma", bmdma, 2),
    F.structArray("bus", ideBus, 2, { version: 1 }),
    F.structArray("bus[0].ifs", ideDrive, 2, { version: 3 }),
    F.structArray("bus[1].ifs", ideDrive, 2, { version: 3 }),
  ],
};
