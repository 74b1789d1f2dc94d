// Firmware interfaces and machine-level bookkeeping: fw_cfg, the ACPI table patch flag, and the
// run state the source was in (QEMU 7.2: hw/nvram/fw_cfg.c, hw/i386/acpi-build.c,
// migration/global_state.c).
import { F } from "../fields.js";
import type { State, VMStateDescription } from "../types.js";

/**
 * fw_cfg (I/O port variant on `pc`). The read offset was 16 bits in version 1 and is 32 bits
 * since: two fields named `cur_offset`, one per version, storing into the same state key (the
 * vmdesc calls the one sent `cur_offset[1]`). The DMA address travels when the DMA interface is
 * on (state key `dma_enabled`, default true on 7.2 machines), the sizes of the ACPI blobs when
 * the machine restores them on load (`acpi_mr_restore`, default true).
 */
export const fwCfg: VMStateDescription = {
  name: "fw_cfg",
  version: 2,
  minimumVersion: 1,
  fields: [F.uint16("cur_entry"), F.uint16("cur_offset", { test: (_s, version) => version === 1 }), F.uint32("cur_offset", { version: 2 })],
  subsections: [
    {
      name: "fw_cfg/dma",
      version: 0,
      needed: (s: State) => s.dma_enabled ?? true,
      fields: [F.uint64("dma_addr")],
    },
    {
      name: "fw_cfg/acpi_mr",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => s.acpi_mr_restore ?? true,
      fields: [F.uint64("table_mr_size"), F.uint64("linker_mr_size"), F.uint64("rsdp_mr_size")],
    },
  ],
};

/** Whether the ACPI tables were already patched by the firmware's table loader. */
export const acpiBuild: VMStateDescription = {
  name: "acpi_build",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint8("patched")],
};

/** RunState names a destination accepts in "globalstate" (QAPI RunState of 7.2). */
export const RUN_STATES: readonly string[] = [
  "debug",
  "inmigrate",
  "internal-error",
  "io-error",
  "paused",
  "postmigrate",
  "prelaunch",
  "finish-migrate",
  "restore-vm",
  "running",
  "save-vm",
  "shutdown",
  "suspended",
  "watchdog",
  "guest-panicked",
  "colo",
];

/** The run state as a string: the 100-byte buffer up to its first NUL (the last byte never counts). */
export function runStateName(buf: Uint8Array | undefined): string {
  if (!buf) return "";
  let end = buf.indexOf(0);
  if (end < 0 || end > 99) end = Math.min(buf.length, 99);
  return new TextDecoder().decode(buf.subarray(0, end));
}

/**
 * The source's run state ("running", "paused", ...), NUL-padded to 100 bytes, after its length
 * + 1 (informational). Sent always on 7.2 machines; only non-running/paused states on <= 2.3.
 */
export const globalState: VMStateDescription = {
  name: "globalstate",
  version: 1,
  minimumVersion: 1,
  postLoad: (s) => {
    const name = runStateName(s.runstate);
    if (!RUN_STATES.includes(name)) return `unknown run state "${name}"`;
  },
  fields: [F.uint32("size"), F.buffer("runstate", 100)],
};
