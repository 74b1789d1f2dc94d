// The "block" section's records (block migration, wire-format §7): be64 (sector << 9 | flags), then for
// DEVICE_BLOCK a counted device name and, unless ZERO_BLOCK, a 1 MiB chunk. Browser-safe.

export const BLK_MIG = {
  DEVICE_BLOCK: 0x01,
  EOS: 0x02,
  PROGRESS: 0x04,
  ZERO_BLOCK: 0x08,
} as const;

/** BLK_MIG_BLOCK_SIZE: one chunk = 2048 sectors. */
export const BLOCK_CHUNK = 1 << 20;

/** One block-migration record as it travels. */
export interface BlockRecord {
  /** Low 9 bits of the header (DEVICE_BLOCK, EOS, PROGRESS, ZERO_BLOCK). */
  readonly flags: number;
  /** header >> 9: the chunk's first sector, or the PROGRESS percentage. */
  readonly value: bigint;
  /** DEVICE_BLOCK: device name bytes. */
  readonly name?: Uint8Array;
  /** DEVICE_BLOCK without ZERO_BLOCK: the 1 MiB chunk (junk tail included). */
  readonly data?: Uint8Array;
}
