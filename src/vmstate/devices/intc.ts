// Interrupt controllers of the `pc` machine: the two cascaded 8259 PICs, the I/O APIC, the local
// APIC of each CPU, and the TPR-access optimisation (kvmvapic) that patches the guest's APIC use
// (QEMU 7.2: hw/intc/i8259_common.c, ioapic_common.c, apic_common.c, hw/i386/kvmvapic.c).
import { F } from "../fields.js";
import type { State, VMStateDescription } from "../types.js";

/**
 * One 8259A (idstr "i8259", instance 0 = master, 1 = slave): sixteen byte-wide registers and
 * latches. `ltim` (level-triggered mode for the whole chip) travels only when set.
 */
export const i8259: VMStateDescription = {
  name: "i8259",
  version: 1,
  minimumVersion: 1,
  fields: [
    F.uint8("last_irr"),
    F.uint8("irr"),
    F.uint8("imr"),
    F.uint8("isr"),
    F.uint8("priority_add"),
    F.uint8("irq_base"),
    F.uint8("read_reg_select"),
    F.uint8("poll"),
    F.uint8("special_mask"),
    F.uint8("init_state"),
    F.uint8("auto_eoi"),
    F.uint8("rotate_on_auto_eoi"),
    F.uint8("special_fully_nested_mode"),
    F.uint8("init4"),
    F.uint8("single_mode"),
    F.uint8("elcr"),
  ],
  subsections: [
    {
      name: "i8259/ltim",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.ltim ?? 0) !== 0,
      fields: [F.uint8("ltim")],
    },
  ],
};

/** Number of I/O APIC redirection entries. */
export const IOAPIC_NUM_PINS = 24;

/** The I/O APIC: 8 bytes that qemu-kvm's version-2 format had are still sent as filler. */
export const ioapic: VMStateDescription = {
  name: "ioapic",
  version: 3,
  minimumVersion: 1,
  fields: [F.uint8("id"), F.uint8("ioregsel"), F.unused(8, { version: 2 }), F.uint32("irr", { version: 2 }), F.array("ioredtbl", "uint64", IOAPIC_NUM_PINS)],
};

/** Local vector table entries (timer, thermal, perf, LINT0, LINT1, error). */
export const APIC_LVT_NB = 6;

/**
 * A local APIC (idstr "apic", one instance per CPU). The SIPI wait state of an application
 * processor travels in "apic_sipi" only while it waits.
 */
export const apic: VMStateDescription = {
  name: "apic",
  version: 3,
  minimumVersion: 3,
  fields: [
    F.uint32("apicbase"),
    F.uint8("id"),
    F.uint8("arb_id"),
    F.uint8("tpr"),
    F.uint32("spurious_vec"),
    F.uint8("log_dest"),
    F.uint8("dest_mode"),
    F.array("isr", "uint32", 8),
    F.array("tmr", "uint32", 8),
    F.array("irr", "uint32", 8),
    F.array("lvt", "uint32", APIC_LVT_NB),
    F.uint32("esr"),
    F.array("icr", "uint32", 2),
    F.uint32("divide_conf"),
    F.int32("count_shift"),
    F.uint32("initial_count"),
    F.int64("initial_count_load_time"),
    F.int64("next_time"),
    // The timer is sent open-coded (expiry in ns, -1 when not armed) rather than as a "timer".
    F.int64("timer_expiry"),
  ],
  subsections: [
    {
      name: "apic_sipi",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.wait_for_sipi ?? 0) !== 0,
      fields: [F.int32("sipi_vector"), F.int32("wait_for_sipi")],
    },
  ],
};

/** Entry points of the guest ROM's TPR handlers (one set for UP, one for SMP guests). */
const vapicHandlers: VMStateDescription = {
  name: "kvmvapic-handlers",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint32("set_tpr"), F.uint32("set_tpr_eax"), F.array("get_tpr", "uint32", 8), F.uint32("get_tpr_stack")],
};

/** The option ROM's state block, as the guest sees it; its 8-byte signature is not sent. */
const vapicGuestRom: VMStateDescription = {
  name: "kvmvapic-guest-rom",
  version: 1,
  minimumVersion: 1,
  fields: [
    F.unused(8),
    F.uint32("vaddr"),
    F.uint32("fixup_start"),
    F.uint32("fixup_end"),
    F.uint32("vapic_vaddr"),
    F.uint32("vapic_size"),
    F.uint32("vcpu_shift"),
    F.uint32("real_tpr_addr"),
    F.struct("up", vapicHandlers),
    F.struct("mp", vapicHandlers),
  ],
};

/** kvmvapic, the TPR-access optimisation for Windows XP-era guests (idstr "kvm-tpr-opt"). */
export const kvmTprOpt: VMStateDescription = {
  name: "kvm-tpr-opt",
  version: 1,
  minimumVersion: 1,
  fields: [
    F.struct("rom_state", vapicGuestRom),
    F.uint32("state"),
    F.uint32("real_tpr_addr"),
    F.uint32("rom_state_vaddr"),
    F.uint32("vapic_paddr"),
    F.uint32("rom_state_paddr"),
  ],
};
