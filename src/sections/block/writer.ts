// Writers of "block" (block migration, wire-format §7) and "spapr/htab" (wire-format §8) section payloads.
// Browser-safe.
import { VmstreamError } from "../../io/errors.js";
import type { ByteWriter } from "../../io/writer.js";
import { BLK_MIG, BLOCK_CHUNK } from "./handler.js";

const enc = new TextEncoder();
const SECTOR_BITS = 9n;

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

export class BlockWriter {
  constructor(readonly w: ByteWriter) {}

  private header(value: bigint, flags: number): void {
    this.w.be64((value << SECTOR_BITS) | BigInt(flags));
  }

  /**
   * A DEVICE_BLOCK chunk at `sector` (a multiple of 2048): `data` is 1 MiB, or shorter for the device's last
   * chunk (padded with zeros, as QEMU's buffer holds junk past the end); undefined = ZERO_BLOCK (zero-blocks).
   */
  chunk(device: string | Uint8Array, sector: bigint, data: Uint8Array | undefined): void {
    const name = typeof device === "string" ? enc.encode(device) : device;
    if (data === undefined) {
      this.header(sector, BLK_MIG.DEVICE_BLOCK | BLK_MIG.ZERO_BLOCK);
      this.w.cstr(name);
      return;
    }
    if (data.length > BLOCK_CHUNK) throw new VmstreamError("RANGE", "a block chunk is at most 1 MiB", { detail: `${data.length} bytes` });
    this.header(sector, BLK_MIG.DEVICE_BLOCK);
    this.w.cstr(name);
    this.w.borrow(data);
    if (data.length < BLOCK_CHUNK) this.w.zeros(BLOCK_CHUNK - data.length);
  }

  progress(percent: number): void {
    this.header(BigInt(percent), BLK_MIG.PROGRESS);
  }

  eos(): void {
    this.header(0n, BLK_MIG.EOS);
  }

  /** Write a record exactly as given (replay). */
  record(r: BlockRecord): void {
    this.header(r.value, r.flags);
    if (r.flags & BLK_MIG.DEVICE_BLOCK) {
      this.w.cstr(r.name ?? new Uint8Array(0));
      if (!(r.flags & BLK_MIG.ZERO_BLOCK)) this.w.borrow(r.data!);
    }
  }

  /** A whole device image in 1 MiB chunks (all-zero chunks as ZERO_BLOCK when `zeroBlocks`). */
  image(device: string, image: Uint8Array, opts: { zeroBlocks?: boolean } = {}): void {
    for (let o = 0; o < image.length; o += BLOCK_CHUNK) {
      const c = image.subarray(o, Math.min(image.length, o + BLOCK_CHUNK));
      const zero = opts.zeroBlocks === true && c.every((b) => b === 0);
      this.chunk(device, BigInt(o / 512), zero ? undefined : c);
    }
  }
}

/** One spapr/htab chunk. */
export interface HtabChunk {
  readonly index: number;
  readonly nValid: number;
  readonly nInvalid: number;
  /** 16 * nValid bytes of HPTEs (guest big-endian format). */
  readonly hptes: Uint8Array;
}

export class HtabWriter {
  constructor(readonly w: ByteWriter) {}

  /** The be32 payload header: htab_shift (START), 0 (chunks follow), 0xFFFFFFFF (no HPT). */
  header(value: number): void {
    this.w.be32(value >>> 0);
  }

  chunk(c: HtabChunk): void {
    if (c.hptes.length !== 16 * c.nValid) throw new VmstreamError("RANGE", "HPTE bytes differ from 16 * n_valid");
    if (c.index === 0 && c.nValid === 0 && c.nInvalid === 0) throw new VmstreamError("RANGE", "an empty chunk at index 0 is the end marker");
    this.w.be32(c.index >>> 0);
    this.w.be16(c.nValid);
    this.w.be16(c.nInvalid);
    this.w.borrow(c.hptes);
  }

  endMarker(): void {
    this.w.be32(0);
    this.w.be32(0);
  }

  /** A whole HPT (2^shift bytes): runs of valid entries (first word's bit 0 = V), at most 65535 per chunk, then the end marker. */
  table(hpt: Uint8Array): void {
    const n = hpt.length / 16;
    const valid = (i: number) => (hpt[i * 16 + 7]! & 1) !== 0;
    let i = 0;
    while (i < n) {
      if (!valid(i)) {
        i++;
        continue;
      }
      let j = i;
      while (j < n && j - i < 65535 && valid(j)) j++;
      this.chunk({ index: i, nValid: j - i, nInvalid: 0, hptes: hpt.subarray(i * 16, j * 16) });
      i = j;
    }
    this.endMarker();
  }
}
