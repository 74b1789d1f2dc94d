// Input devices: the PS/2 keyboard and mouse, the i8042 controller in front of them, and the
// VMware absolute-pointer backdoor (QEMU 7.2: hw/input/ps2.c, hw/input/pckbd.c,
// hw/i386/vmmouse.c).
import { F } from "../fields.js";
import type { State, VMStateDescription } from "../types.js";

/** Size of a PS/2 device's ring of pending bytes. */
export const PS2_BUFFER_SIZE = 256;

/** What both PS/2 devices share: the command awaiting its argument and the byte queue. */
export const ps2Common: VMStateDescription = {
  name: "PS2 Common State",
  version: 3,
  minimumVersion: 2,
  fields: [F.int32("write_cmd"), F.int32("queue.rptr"), F.int32("queue.wptr"), F.int32("queue.count"), F.buffer("queue.data", PS2_BUFFER_SIZE)],
};

/**
 * The PS/2 keyboard. Version 2 streams had no scancode_set (a load then uses set 2). The LED
 * state, the "need high bit" flag of set-1 translation and the write pointer of the command
 * reply queue (-1 = no replies queued; it belongs to parent_obj's queue) travel when not default.
 */
export const ps2kbd: VMStateDescription = {
  name: "ps2kbd",
  version: 3,
  minimumVersion: 2,
  fields: [F.struct("parent_obj", ps2Common), F.int32("scan_enabled"), F.int32("translate"), F.int32("scancode_set", { version: 3 })],
  subsections: [
    {
      name: "ps2kbd/ledstate",
      version: 3,
      minimumVersion: 2,
      needed: (s: State) => (s.ledstate ?? 0) !== 0,
      fields: [F.int32("ledstate")],
    },
    {
      name: "ps2kbd/need_high_bit",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.need_high_bit ?? false) !== false,
      fields: [F.bool("need_high_bit")],
    },
    {
      name: "ps2kbd/command_reply_queue",
      version: 0,
      needed: (s: State) => (s["parent_obj.queue.cwptr"] ?? -1) !== -1,
      fields: [F.int32("parent_obj.queue.cwptr")],
    },
  ],
};

/** The PS/2 mouse. */
export const ps2mouse: VMStateDescription = {
  name: "ps2mouse",
  version: 2,
  minimumVersion: 2,
  fields: [
    F.struct("parent_obj", ps2Common),
    F.uint8("mouse_status"),
    F.uint8("mouse_resolution"),
    F.uint8("mouse_sample_rate"),
    F.uint8("mouse_wrap"),
    F.uint8("mouse_type"),
    F.uint8("mouse_detect_state"),
    F.int32("mouse_dx"),
    F.int32("mouse_dy"),
    F.int32("mouse_dz"),
    F.uint8("mouse_buttons"),
  ],
};

const KBD_STAT_OBF = 0x01;
const KBD_STAT_MOUSE_OBF = 0x20;
const KBD_OUT_RESET = 0x01;
const KBD_OUT_A20 = 0x02;
const KBD_OUT_OBF = 0x10;
const KBD_OUT_MOUSE_OBF = 0x20;
/** Output-port bits that read as one (so the usual 0xdd/0xdf writes need no subsection). */
const KBD_OUT_ONES = 0xcc;

/** The output port a load assumes when "pckbd_outport" is absent: derived from the status register. */
export function kbdOutportDefault(s: State): number {
  const status = s.status ?? 0;
  return KBD_OUT_RESET | KBD_OUT_A20 | KBD_OUT_ONES | (status & KBD_STAT_OBF ? KBD_OUT_OBF : 0) | (status & KBD_STAT_MOUSE_OBF ? KBD_OUT_MOUSE_OBF : 0);
}

/**
 * The i8042 keyboard controller core. The output port travels only when it differs from what the
 * status implies (a load without it recomputes it); the extended state when the controller has
 * the "extended-state" property (state key `extended_state`, default true).
 */
export const kbdCore: VMStateDescription = {
  name: "pckbd",
  version: 3,
  minimumVersion: 3,
  preLoad: (s) => {
    s.outport_present = false;
  },
  postLoad: (s) => {
    if (!s.outport_present) s.outport = kbdOutportDefault(s);
  },
  fields: [F.uint8("write_cmd"), F.uint8("status"), F.uint8("mode"), F.uint8("pending_tmp")],
  subsections: [
    {
      name: "pckbd_outport",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.outport ?? kbdOutportDefault(s)) !== kbdOutportDefault(s),
      postLoad: (s) => {
        s.outport_present = true;
      },
      fields: [F.uint8("outport")],
    },
    {
      name: "pckbd/extended_state",
      version: 0,
      needed: (s: State) => s.extended_state ?? true,
      fields: [F.uint32("migration_flags"), F.uint32("obsrc"), F.uint8("obdata"), F.uint8("cbdata")],
    },
  ],
};

/** The ISA i8042 (idstr "pckbd"): the controller core as struct `kbd`. */
export const pckbd: VMStateDescription = {
  name: "pckbd",
  version: 3,
  minimumVersion: 3,
  fields: [F.struct("kbd", kbdCore)],
};

/** Entries of the vmmouse event queue. */
export const VMMOUSE_QUEUE_SIZE = 1024;

/** The vmmouse backdoor: its queue size must match the destination's. */
export const vmmouse: VMStateDescription = {
  name: "vmmouse",
  version: 0,
  minimumVersion: 0,
  fields: [F.int32Equal("queue_size"), F.array("queue", "uint32", VMMOUSE_QUEUE_SIZE), F.uint16("nb_queue"), F.uint16("status"), F.uint8("absolute")],
};
