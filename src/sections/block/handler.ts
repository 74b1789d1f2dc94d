// The loader of "block" sections (block migration, wire-format §7): chunks, progress, EOS; disk images kept with
// `materialize.block` (docs/decoder.md, "Live section handlers"). Browser-safe.
import { inputError, materializes } from "../../savevm/live-sections.js";
import type { FeedResult, HandlerContext, SectionHandler, SectionHeader, SectionInput } from "../../savevm/types.js";
import { BLK_MIG, BLOCK_CHUNK, type BlockRecord } from "./format.js";

const TWO32 = 4294967296;
const MAX_END = 2 ** 53;
const utf8 = new TextDecoder("utf-8");
const MAX_PROGRESS = 1024;

export interface BlockDeviceResult {
  readonly name: string;
  /** DEVICE_BLOCK records with data. */
  readonly dataChunks: number;
  /** DEVICE_BLOCK|ZERO_BLOCK records. */
  readonly zeroChunks: number;
  /** Furthest byte written: max over chunks of sector * 512 + 1 MiB (the device may be shorter). */
  readonly end: number;
  /** The image (materialised only): `end` bytes, chunks at sector * 512, never-sent ranges zero. */
  readonly image?: Uint8Array;
}

export interface BlockResult {
  readonly devices: readonly BlockDeviceResult[];
  /** PROGRESS values in stream order (the first 1024). */
  readonly progress: readonly number[];
  readonly records: { device: number; zero: number; progress: number; eos: number };
  readonly sections: number;
}

interface Device {
  name: string;
  dataChunks: number;
  zeroChunks: number;
  end: number;
  image: Uint8Array | undefined;
}

/** header >> 9 of a record header given as two be32 halves. */
function headerValue(hi: number, lo: number): bigint {
  return (BigInt(hi) << 23n) | BigInt(lo >>> 9);
}

export class BlockHandler implements SectionHandler<BlockResult> {
  readonly idstr = "block";
  readonly maxVersion = 1;
  readonly emitsRecords = true;
  private readonly emit: ((r: BlockRecord) => void) | undefined;
  private readonly materialize: boolean;
  private readonly devices = new Map<string, Device>();
  private readonly progress: number[] = [];
  private records = { device: 0, zero: 0, progress: 0, eos: 0 };
  private sections = 0;

  constructor(private readonly ctx: HandlerContext) {
    this.emit = ctx.record;
    this.materialize = materializes(ctx.options, "block");
  }

  begin(_h: SectionHeader): void {
    this.sections++;
  }

  feed(input: SectionInput, h: SectionHeader): FeedResult {
    const k = input.kernels;
    const u8 = k.u8;
    const dv = k.view;
    const end = input.ptr + input.len;
    let p = input.ptr;
    const err = inputError(input, h);
    for (;;) {
      if (end - p < 8) return { consumed: p - input.ptr, done: false };
      const hi = dv.getUint32(p);
      const lo = dv.getUint32(p + 4);
      const flags = lo & 0x1ff;
      if (flags === BLK_MIG.EOS) {
        this.records.eos++;
        this.emit?.({ flags, value: headerValue(hi, lo) });
        return { consumed: p + 8 - input.ptr, done: true };
      }
      if (flags === BLK_MIG.PROGRESS) {
        const value = hi * 8388608 + (lo >>> 9);
        this.records.progress++;
        if (this.progress.length < MAX_PROGRESS) this.progress.push(value);
        this.emit?.({ flags, value: headerValue(hi, lo) });
        p += 8;
        continue;
      }
      if (flags !== BLK_MIG.DEVICE_BLOCK && flags !== (BLK_MIG.DEVICE_BLOCK | BLK_MIG.ZERO_BLOCK)) {
        throw err("BAD_VALUE", "unknown block migration flags", p, `0x${flags.toString(16)}`);
      }
      if (end - p < 9) return { consumed: p - input.ptr, done: false };
      const n = u8[p + 8]!;
      if (end - p < 9 + n) return { consumed: p - input.ptr, done: false };
      const zero = (flags & BLK_MIG.ZERO_BLOCK) !== 0;
      const byteOff = hi * TWO32 + ((lo & ~0x1ff) >>> 0);
      if (byteOff + BLOCK_CHUNK > MAX_END) throw err("RANGE", "block chunk beyond 2^53 bytes", p, `sector ${hi * 8388608 + (lo >>> 9)}`);
      const name = utf8.decode(u8.subarray(p + 9, p + 9 + n));
      let dev = this.devices.get(name);
      if (!dev) {
        if (this.devices.size >= this.ctx.limits.blockDevices)
          throw err("LIMIT", "too many block devices", p, `more than ${this.ctx.limits.blockDevices} (limits.blockDevices)`);
        dev = { name, dataChunks: 0, zeroChunks: 0, end: 0, image: undefined };
        this.devices.set(name, dev);
      }
      const chunkEnd = byteOff + BLOCK_CHUNK;
      if (this.materialize && chunkEnd > this.ctx.limits.imageBytes) {
        throw err("LIMIT", "block image too large to materialise", p, `chunk ends at byte ${chunkEnd} (limits.imageBytes ${this.ctx.limits.imageBytes})`);
      }
      const need = 9 + n + (zero ? 0 : BLOCK_CHUNK);
      if (end - p < need) return { consumed: p - input.ptr, done: false };
      if (this.materialize) {
        const img = this.ensure(dev, chunkEnd);
        if (zero) img.fill(0, byteOff, chunkEnd);
        else img.set(u8.subarray(p + 9 + n, p + need), byteOff);
      }
      this.emit?.({ flags, value: headerValue(hi, lo), name: u8.subarray(p + 9, p + 9 + n), ...(zero ? {} : { data: u8.subarray(p + 9 + n, p + need) }) });
      if (chunkEnd > dev.end) dev.end = chunkEnd;
      if (zero) {
        dev.zeroChunks++;
        this.records.zero++;
      } else {
        dev.dataChunks++;
        this.records.device++;
      }
      p += need;
    }
  }

  private ensure(dev: Device, end: number): Uint8Array {
    const img = dev.image;
    if (img && img.length >= end) return img;
    let cap = Math.max(img ? img.length * 2 : 0, BLOCK_CHUNK);
    while (cap < end) cap *= 2;
    cap = Math.min(cap, Math.max(end, this.ctx.limits.imageBytes));
    const grown = new Uint8Array(cap);
    if (img) grown.set(img.subarray(0, dev.end));
    dev.image = grown;
    return grown;
  }

  result(): BlockResult {
    const devices = [...this.devices.values()].map((d) => ({
      name: d.name,
      dataChunks: d.dataChunks,
      zeroChunks: d.zeroChunks,
      end: d.end,
      ...(d.image ? { image: d.image.subarray(0, d.end) } : {}),
    }));
    return { devices, progress: [...this.progress], records: { ...this.records }, sections: this.sections };
  }
}
