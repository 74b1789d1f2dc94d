// The "ram" section's records (wire-format §5): be64 (offset | flags) headers, a block name unless CONTINUE,
// then the record's body; MEM_SIZE lists the blocks. RAM_FLAG itself lives with the kernels, which decode
// page records. Browser-safe.
import { RAM_FLAG } from "../../kernels/types.js";

/** One MEM_SIZE entry. */
export interface RamBlockSpec {
  readonly name: string;
  /** used_length in bytes. */
  readonly length: bigint;
  /** The postcopy hugepage size field (only when the destination expects it). */
  readonly pageSize?: bigint;
  /** MemoryRegion address (x-ignore-shared). */
  readonly mrAddr?: bigint;
}

/** One RAM record as it travels: what the handler reports and RamWriter.record writes again. */
export interface RamRecord {
  /** Record flags including CONTINUE (ZERO, PAGE, XBZRLE, COMPRESS_PAGE, EOS, MEM_SIZE...). */
  readonly flags: number;
  /** The page-aligned high part of the header: page offset in the block, or the MEM_SIZE total. */
  readonly addr: bigint;
  /** Block name bytes when CONTINUE is clear (page records). */
  readonly name?: Uint8Array;
  /** ZERO: the fill byte. */
  readonly fill?: number;
  /** PAGE: the page; XBZRLE: the encoded data; COMPRESS_PAGE: the zlib data. */
  readonly data?: Uint8Array;
  /** XBZRLE: the encoding byte (0x01). */
  readonly encoding?: number;
  /** MEM_SIZE: the block list (an entry's pageSize / mrAddr travel when present). */
  readonly blocks?: readonly RamBlockSpec[];
}

/** A block whose bytes live in the kernels' memory (a source's RAM, or a host's guest memory). */
export interface RamBlockData {
  readonly name: string;
  /** Address of the block's first byte in `kernels.memory`. */
  readonly ptr: number;
  /** Bytes (a multiple of the page size). */
  readonly length: number;
}

/**
 * The records of bytes [start, end) of `u8` that `ramDecode` has just accepted (ZERO, PAGE, XBZRLE and a plain
 * EOS): already checked, so read without checks. Data are views of `u8`.
 */
export function readDecodedRun(u8: Uint8Array, start: number, end: number, pageSize: number, emit: (r: RamRecord) => void): void {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const mask = pageSize - 1;
  let p = start;
  while (p < end) {
    const hi = dv.getUint32(p);
    const lo = dv.getUint32(p + 4);
    const flags = lo & mask;
    const addr = (BigInt(hi) << 32n) | BigInt((lo & ~mask) >>> 0);
    p += 8;
    const kind = flags & ~RAM_FLAG.CONTINUE;
    if (kind === RAM_FLAG.EOS) {
      emit({ flags, addr });
      continue;
    }
    let name: Uint8Array | undefined;
    if (!(flags & RAM_FLAG.CONTINUE)) {
      name = u8.subarray(p + 1, p + 1 + u8[p]!);
      p += 1 + name.length;
    }
    if (kind === RAM_FLAG.ZERO) {
      emit({ flags, addr, name, fill: u8[p]! });
      p += 1;
    } else if (kind === RAM_FLAG.PAGE) {
      emit({ flags, addr, name, data: u8.subarray(p, p + pageSize) });
      p += pageSize;
    } else {
      const len = dv.getUint16(p + 1);
      emit({ flags, addr, name, encoding: u8[p]!, data: u8.subarray(p + 3, p + 3 + len) });
      p += 3 + len;
    }
  }
}
