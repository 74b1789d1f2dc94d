// Character devices: the 16550A UART behind the ISA "serial" device and the ISA parallel port
// (QEMU 7.2: hw/char/serial.c, serial-isa.c, hw/char/parallel.c, util/fifo8.c).
import { F } from "../fields.js";
import type { State, VMStateDescription } from "../types.js";
import { timerArmed } from "./timers.js";

/** Depth of the 16550A receive and transmit FIFOs. */
export const UART_FIFO_LENGTH = 16;
const UART_IER_THRI = 0x02;
const UART_IIR_ID = 0x06;
const UART_IIR_THRI = 0x02;
const UART_LSR_TEMT = 0x40;

/**
 * A byte FIFO (Fifo8): its whole buffer (`capacity` bytes, the destination's size, not sent),
 * the read position and the fill level.
 */
export const fifo8: VMStateDescription = {
  name: "Fifo8",
  version: 1,
  minimumVersion: 1,
  fields: [F.buffer("data", (s) => s.capacity ?? UART_FIFO_LENGTH, { version: 1 }), F.uint32("head"), F.uint32("num")],
};

/** THR-empty interrupt pending as LSR/IIR imply it (what a load assumes when the subsection is absent). */
function thrIpendingExpected(s: State): number {
  return ((s.iir ?? 0) & UART_IIR_ID) === UART_IIR_THRI ? 1 : 0;
}

/**
 * The 16550A UART core ("serial"). Everything beyond the registers travels in subsections, each
 * only when it differs from what the destination would reconstruct.
 */
export const serialCore: VMStateDescription = {
  name: "serial",
  version: 3,
  minimumVersion: 2,
  preLoad: (s) => {
    s.thr_ipending = -1;
    s.poll_msl = -1;
  },
  postLoad: (s) => {
    if (s.thr_ipending === -1) s.thr_ipending = thrIpendingExpected(s);
    const tsrRetry = s.tsr_retry ?? 0;
    const temt = ((s.lsr ?? 0) & UART_LSR_TEMT) !== 0;
    if (tsrRetry > 0 && temt) return `inconsistent state: transmitter empty, tsr_retry=${tsrRetry}`;
    if (tsrRetry === 0 && !temt) return "inconsistent state: transmitter not empty, tsr_retry=0";
  },
  fields: [
    F.uint16("divider", { version: 2 }),
    F.uint8("rbr"),
    F.uint8("ier"),
    F.uint8("iir"),
    F.uint8("lcr"),
    F.uint8("mcr"),
    F.uint8("lsr"),
    F.uint8("msr"),
    F.uint8("scr"),
    F.uint8("fcr_vmstate", { version: 3 }),
  ],
  subsections: [
    {
      name: "serial/thr_ipending",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => ((s.ier ?? 0) & UART_IER_THRI) !== 0 && (s.thr_ipending ?? thrIpendingExpected(s)) !== thrIpendingExpected(s),
      fields: [F.int32("thr_ipending")],
    },
    {
      name: "serial/tsr",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.tsr_retry ?? 0) !== 0,
      fields: [F.uint32("tsr_retry"), F.uint8("thr"), F.uint8("tsr")],
    },
    {
      name: "serial/recv_fifo",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.recv_fifo?.num ?? 0) !== 0,
      fields: [F.struct("recv_fifo", fifo8, { version: 1 })],
    },
    {
      name: "serial/xmit_fifo",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.xmit_fifo?.num ?? 0) !== 0,
      fields: [F.struct("xmit_fifo", fifo8, { version: 1 })],
    },
    {
      name: "serial/fifo_timeout_timer",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => timerArmed(s.fifo_timeout_timer),
      fields: [F.timer("fifo_timeout_timer")],
    },
    {
      name: "serial/timeout_ipending",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.timeout_ipending ?? 0) !== 0,
      fields: [F.int32("timeout_ipending")],
    },
    {
      name: "serial/poll",
      version: 1,
      minimumVersion: 1,
      // Modem-status polling is on (>= 0) only for host serial ports that cannot report changes.
      needed: (s: State) => (s.poll_msl ?? -1) >= 0,
      fields: [F.int32("poll_msl"), F.timer("modem_status_poll")],
    },
  ],
};

/** The ISA serial port (idstr "serial", instance = port index): the UART as struct `state`. */
export const serialIsa: VMStateDescription = {
  name: "serial",
  version: 3,
  minimumVersion: 2,
  fields: [F.struct("state", serialCore)],
};

/** The ISA parallel port. */
export const parallelIsa: VMStateDescription = {
  name: "parallel_isa",
  version: 1,
  minimumVersion: 1,
  fields: [
    F.uint8("state.dataw"),
    F.uint8("state.datar"),
    F.uint8("state.status"),
    F.uint8("state.control"),
    F.int32("state.irq_pending"),
    F.int32("state.epp_timeout"),
  ],
};
