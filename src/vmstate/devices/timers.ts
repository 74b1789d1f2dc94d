// Clocks and timers: QEMU's own virtual clock offsets ("timer"), the HPET, the MC146818 RTC/CMOS,
// the 8254 PIT and the PC speaker that shares PIT channel 2 (QEMU 7.2: softmmu/cpu-timers.c,
// hw/timer/hpet.c, hw/rtc/mc146818rtc.c, hw/timer/i8254_common.c, hw/audio/pcspk.c).
//
// A "timer" field is a QEMUTimer sent as its expiry in ns, -1 when not armed (bigint in state).
import { F } from "../fields.js";
import type { State, VMStateDescription } from "../types.js";

/** Whether a "timer" value is armed (QEMU's timer_pending() as a subsection test): not -1. */
export function timerArmed(t: bigint | undefined): boolean {
  return t !== undefined && t !== -1n;
}

/**
 * The guest clocks (idstr "timer"). With -icount the instruction counter travels in "timer/icount"
 * (state key `icount`, true when -icount is on; not on the wire), with its own optional parts.
 */
export const timers: VMStateDescription = {
  name: "timer",
  version: 2,
  minimumVersion: 1,
  fields: [F.int64("cpu_ticks_offset"), F.unused(8), F.int64("cpu_clock_offset", { version: 2 })],
  subsections: [
    {
      name: "timer/icount",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => s.icount === true,
      fields: [F.int64("qemu_icount_bias"), F.int64("qemu_icount")],
      subsections: [
        {
          name: "timer/icount/warp_timer",
          version: 1,
          minimumVersion: 1,
          // QEMU: the warp timer exists (-icount with sleep=on); state key `has_warp_timer`.
          needed: (s: State) => s.has_warp_timer === true,
          fields: [F.int64("vm_clock_warp_start"), F.timer("icount_warp_timer")],
        },
        {
          name: "timer/icount/timers",
          version: 1,
          minimumVersion: 1,
          // QEMU: the icount adjustment timers exist (they do whenever icount is on).
          needed: (s: State) => s.has_adjust_timers ?? true,
          fields: [F.timer("icount_rt_timer"), F.timer("icount_vm_timer")],
        },
        {
          name: "timer/icount/shift",
          version: 2,
          minimumVersion: 2,
          // QEMU: adaptive icount (shift=auto) only.
          needed: (s: State) => s.icount_adaptive === true,
          fields: [F.int16("icount_time_shift"), F.int64("last_delta")],
        },
      ],
    },
  ],
};

/** HPET_MIN_TIMERS .. HPET_MAX_TIMERS comparators; the `pc` machine has 3. */
export const HPET_MIN_TIMERS = 3;
export const HPET_MAX_TIMERS = 32;
const HPET_CFG_ENABLE = 0x001;

/** One HPET comparator. */
export const hpetTimer: VMStateDescription = {
  name: "hpet_timer",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint8("tn"), F.uint64("config"), F.uint64("cmp"), F.uint64("fsb"), F.uint64("period"), F.uint8("wrap_flag"), F.timer("qemu_timer")],
};

/**
 * The HPET block. Version 1 streams always had 3 timers (the pre-load sets that); version 2 sends
 * the count, which must be 3..32. "hpet/offset" travels while the HPET is enabled (when the
 * machine saves the offset: state key `hpet_offset_saved`, default true on 7.2 machines).
 */
export const hpet: VMStateDescription = {
  name: "hpet",
  version: 2,
  minimumVersion: 1,
  preLoad: (s) => {
    s.num_timers = HPET_MIN_TIMERS;
  },
  fields: [
    F.uint64("config"),
    F.uint64("isr"),
    F.uint64("hpet_counter"),
    F.uint8("num_timers", { version: 2 }),
    F.validate("num_timers in range", (s) =>
      s.num_timers < HPET_MIN_TIMERS || s.num_timers > HPET_MAX_TIMERS
        ? `num_timers ${s.num_timers} is not in ${HPET_MIN_TIMERS}..${HPET_MAX_TIMERS}`
        : undefined,
    ),
    F.structArray("timer", hpetTimer, { field: "num_timers" }),
  ],
  subsections: [
    {
      name: "hpet/rtc_irq_level",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.rtc_irq_level ?? 0) !== 0,
      fields: [F.uint8("rtc_irq_level")],
    },
    {
      name: "hpet/offset",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.hpet_offset_saved ?? true) && (BigInt(s.config ?? 0n) & BigInt(HPET_CFG_ENABLE)) !== 0n,
      fields: [F.uint64("hpet_offset")],
    },
  ],
};

/**
 * The MC146818 RTC with its 128 bytes of CMOS. Two stretches of filler stand for state older
 * versions sent (the vmdesc names them `unused[0]` and `unused[1]`).
 */
export const mc146818rtc: VMStateDescription = {
  name: "mc146818rtc",
  version: 3,
  minimumVersion: 1,
  fields: [
    F.buffer("cmos_data", 128),
    F.uint8("cmos_index"),
    F.unused(7 * 4),
    F.timer("periodic_timer"),
    F.int64("next_periodic_time"),
    F.unused(3 * 8),
    F.uint32("irq_coalesced", { version: 2 }),
    F.uint32("period", { version: 2 }),
    F.uint64("base_rtc", { version: 3 }),
    F.uint64("last_update", { version: 3 }),
    F.int64("offset", { version: 3 }),
    F.timer("update_timer", { version: 3 }),
    F.uint64("next_alarm_time", { version: 3 }),
  ],
  subsections: [
    {
      name: "mc146818rtc/irq_reinject_on_ack_count",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.irq_reinject_on_ack_count ?? 0) !== 0,
      fields: [F.uint16("irq_reinject_on_ack_count")],
    },
  ],
};

/** One 8254 counter. */
export const pitChannel: VMStateDescription = {
  name: "pit channel",
  version: 2,
  minimumVersion: 2,
  fields: [
    F.int32("count"),
    F.uint16("latched_count"),
    F.uint8("count_latched"),
    F.uint8("status_latched"),
    F.uint8("status"),
    F.uint8("read_state"),
    F.uint8("write_state"),
    F.uint8("write_latch"),
    F.uint8("rw_mode"),
    F.uint8("mode"),
    F.uint8("bcd"),
    F.uint8("gate"),
    F.int64("count_load_time"),
    F.int64("next_transition_time"),
  ],
};

/**
 * The 8254 PIT. Channel 0's irq_disabled flag leads (version 3), then the three channels, then
 * channel 0's next_transition_time once more. QEMU reads both copies into the same C member (the
 * later wins); here each field keeps its own state key (its name), so a stream whose two copies
 * differ still re-encodes byte for byte.
 */
export const i8254: VMStateDescription = {
  name: "i8254",
  version: 3,
  minimumVersion: 2,
  fields: [
    F.uint32("channels[0].irq_disabled", { version: 3 }),
    F.structArray("channels", pitChannel, 3, { version: 2 }),
    F.int64("channels[0].next_transition_time"),
  ],
};

/**
 * The PC speaker. The whole section is left out when the device's "migrate" property is off
 * (state key `migrate`, default true).
 */
export const pcspk: VMStateDescription = {
  name: "pcspk",
  version: 1,
  minimumVersion: 1,
  needed: (s: State) => s.migrate ?? true,
  fields: [F.uint8("data_on"), F.uint8("dummy_refresh_clock")],
};
