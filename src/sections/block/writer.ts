// The writer of "block" section payloads (block migration, wire-format §7): chunks, progress, EOS, whole
// images, and any record exactly as given (replay). Browser-safe.
import { VmstreamError } from "../../io/errors.js";
import type { ByteWriter } from "../../io/writer.js";
import { BLK_MIG, BLOCK_CHUNK, type BlockRecord } from "./format.js";

const enc = new TextEncoder();
const SECTOR_BITS = 9n;

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
