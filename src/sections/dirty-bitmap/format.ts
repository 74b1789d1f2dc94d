// The "dirty-bitmap" section's records (wire-format §9): a flags byte (EXTRA_FLAGS 0x80 pulls in more flag bytes,
// which QEMU 7.2 truncates into a uint8), the node and bitmap aliases as counted strings when flagged, then
// START (be32 granularity, u8 flags) or BITS (be64 first sector, be32 sector count and, unless ZEROES, be64
// buffer size + buffer). A record carrying EOS ends the section. Browser-safe.

export const DIRTY_BITMAP_FLAG = {
  EOS: 0x01,
  ZEROES: 0x02,
  BITMAP_NAME: 0x04,
  DEVICE_NAME: 0x08,
  START: 0x10,
  COMPLETE: 0x20,
  BITS: 0x40,
  EXTRA_FLAGS: 0x80,
} as const;

/** 10 x CHUNK_SIZE (1 KiB): the largest BITS buffer QEMU 7.2 accepts. */
export const DIRTY_BITMAP_MAX_BUFFER = 10240;

/** One dirty-bitmap record as it travels. */
export interface DirtyBitmapRecord {
  /** The flag bytes as sent (one, or EXTRA_FLAGS and one or two more). */
  readonly flagBytes: Uint8Array;
  /** The flags in force (QEMU's uint8). */
  readonly flags: number;
  /** DEVICE_NAME: the node alias bytes. */
  readonly node?: Uint8Array;
  /** BITMAP_NAME: the bitmap alias bytes. */
  readonly name?: Uint8Array;
  /** START: granularity and START flags. */
  readonly granularity?: number;
  readonly startFlags?: number;
  /** BITS: first sector, sector count, and (unless ZEROES) the buffer size field and buffer. */
  readonly firstSector?: bigint;
  readonly sectors?: number;
  readonly size?: bigint;
  readonly buffer?: Uint8Array;
}
