// Framing constants of QEMU 7.2 migration streams (wire-format §2.2, §2.6) and the decoder's
// default limits. Browser-safe.
import { DEFAULT_VISIT_BUDGET } from "../visitor/wire.js";

export const QEMU_VM_FILE_MAGIC = 0x5145564d; // "QEVM"
export const QEMU_VM_FILE_VERSION_COMPAT = 2;
export const QEMU_VM_FILE_VERSION = 3;

/** Top-level section type bytes. */
export const SEC = {
  EOF: 0x00,
  START: 0x01,
  PART: 0x02,
  END: 0x03,
  FULL: 0x04,
  SUBSECTION: 0x05,
  VMDESCRIPTION: 0x06,
  CONFIGURATION: 0x07,
  COMMAND: 0x08,
  FOOTER: 0x7e,
} as const;

/** QEMU_VM_COMMAND ids (wire-format §2.6). */
export const CMD = {
  INVALID: 0,
  OPEN_RETURN_PATH: 1,
  PING: 2,
  POSTCOPY_ADVISE: 3,
  POSTCOPY_LISTEN: 4,
  POSTCOPY_RUN: 5,
  POSTCOPY_RAM_DISCARD: 6,
  PACKAGED: 7,
  ENABLE_COLO: 8,
  POSTCOPY_RESUME: 9,
  RECV_BITMAP: 10,
} as const;

export const CMD_NAMES: readonly string[] = [
  "INVALID",
  "OPEN_RETURN_PATH",
  "PING",
  "POSTCOPY_ADVISE",
  "POSTCOPY_LISTEN",
  "POSTCOPY_RUN",
  "POSTCOPY_RAM_DISCARD",
  "PACKAGED",
  "ENABLE_COLO",
  "POSTCOPY_RESUME",
  "RECV_BITMAP",
];

/** The 21 migration capabilities of QEMU 7.2 (wire-format §11): the names `configuration/capabilities` may carry. */
export const MIGRATION_CAPABILITIES: readonly string[] = [
  "xbzrle",
  "rdma-pin-all",
  "auto-converge",
  "zero-blocks",
  "compress",
  "events",
  "postcopy-ram",
  "x-colo",
  "release-ram",
  "block",
  "return-path",
  "pause-before-switchover",
  "multifd",
  "dirty-bitmaps",
  "postcopy-blocktime",
  "late-block-activate",
  "x-ignore-shared",
  "validate-uuid",
  "background-snapshot",
  "zero-copy-send",
  "postcopy-preempt",
];

/**
 * QEMU's subsection detection peeks up to 2 + 255 bytes ahead (0x05, length, name). A VMState decode made on a
 * window is only trusted when this many bytes follow the furthest point it reached (or the input has ended):
 * then every peek saw exactly what it would have seen on the whole stream.
 */
export const PEEK_LOOKAHEAD = 258;

/** Caps on lengths read from the stream and on what the decoder keeps. All are byte counts unless named otherwise. */
export interface DecoderLimits {
  /** Machine name length in the configuration section (QEMU uses it unchecked as an allocation size). */
  readonly configName: number;
  /** Capabilities listed in `configuration/capabilities`. */
  readonly capabilities: number;
  /** vmdesc JSON length. */
  readonly vmdescBytes: number;
  /** vmdesc JSON nesting depth. */
  readonly vmdescDepth: number;
  /** PACKAGED command payload length (QEMU allocates it up front, unbounded). */
  readonly packagedBytes: number;
  /** Nesting depth of PACKAGED commands. */
  readonly packageDepth: number;
  /** Largest contiguous item the decoder will hold in its window (a device section, a block chunk, the vmdesc). */
  readonly windowBytes: number;
  /** Bytes buffered while waiting for the vmdesc trailer (the final device phase). */
  readonly deferredBytes: number;
  /** Payload of one device section decoded from the vmdesc. */
  readonly deviceBytes: number;
  /**
   * Visits that may read nothing (structs, arrays, empty buffers...) all device walks together may make:
   * `visitsBase` + `visitsPerByte` x the device payload bytes read (docs/decoder.md, "Bounds").
   */
  readonly visitsBase: number;
  readonly visitsPerByte: number;
  /** RAM blocks in MEM_SIZE. */
  readonly ramBlocks: number;
  /** Total RAM materialised in the kernels' memory (wasm32: below 4 GiB). */
  readonly ramBytes: number;
  /** Distinct block-migration devices. */
  readonly blockDevices: number;
  /** One materialised disk image (max written end). */
  readonly imageBytes: number;
  /**
   * Bytes actually materialised, over all RAM blocks and disk images: RAM pages written (each counts a page) plus
   * disk chunks holding data (1 MiB each). Declared sizes (MEM_SIZE, a disk's end) cost nothing until data arrives
   * (docs/memory.md, "Lazy materialisation").
   */
  readonly materializedBytes: number;
  /** Materialised hash page table. */
  readonly htabBytes: number;
  /** Section records kept in the result (later sections are counted, not listed). */
  readonly sectionRecords: number;
  /** Command records kept in the result. */
  readonly commandRecords: number;
  /** Dirty-bitmap records kept in the result. */
  readonly bitmapRecords: number;
}

export const DEFAULT_LIMITS: DecoderLimits = Object.freeze({
  configName: 256,
  capabilities: 64,
  vmdescBytes: 16 << 20,
  vmdescDepth: 64,
  packagedBytes: 64 << 20,
  packageDepth: 4,
  windowBytes: 256 << 20,
  deferredBytes: 256 << 20,
  deviceBytes: 64 << 20,
  visitsBase: DEFAULT_VISIT_BUDGET.base,
  visitsPerByte: DEFAULT_VISIT_BUDGET.perByte,
  ramBlocks: 1024,
  ramBytes: 0xf000_0000,
  blockDevices: 64,
  imageBytes: 1 << 30,
  materializedBytes: 8 * 2 ** 30,
  htabBytes: 1 << 30,
  sectionRecords: 100_000,
  commandRecords: 10_000,
  bitmapRecords: 10_000,
});
