// The loader of "block" sections (block migration, wire-format §7): chunks, progress, EOS; disk images kept with
// `materialize.block`, sparse: 1 MiB granules that hold data, nothing for zero or never-sent ranges
// (docs/decoder.md, "Live section handlers"; docs/memory.md, "Lazy materialisation"). Browser-safe.
import { type InputError, inputError, materializes } from "../../savevm/live-sections.js";
import type { FeedResult, HandlerContext, SectionHandler, SectionHeader, SectionInput } from "../../savevm/types.js";
import { BLK_MIG, BLOCK_CHUNK, type BlockRecord } from "./format.js";

const TWO32 = 4294967296;
const MAX_END = 2 ** 53;
const utf8 = new TextDecoder("utf-8");
const MAX_PROGRESS = 1024;
/** A disk image is kept in granules of this many bytes, aligned to it: one per chunk QEMU sends. */
const GRANULE = BLOCK_CHUNK;

export interface BlockDeviceResult {
  readonly name: string;
  /** DEVICE_BLOCK records with data. */
  readonly dataChunks: number;
  /** DEVICE_BLOCK|ZERO_BLOCK records. */
  readonly zeroChunks: number;
  /** Furthest byte written: max over chunks of sector * 512 + 1 MiB (the device may be shorter). */
  readonly end: number;
  /**
   * The image (materialised only): `end` bytes, chunks at sector * 512, never-sent and ZERO_BLOCK ranges zero.
   * Put together on each read, `end` bytes: a reader that can take it sparse should use `granules`.
   */
  readonly image?: Uint8Array;
  /**
   * The materialised image as it is kept (materialised only): granule i holds bytes [i * 1 MiB, (i + 1) * 1 MiB)
   * of the image; a granule not in the map is all zero. Bytes of the last granule past `end` are zero.
   */
  readonly granules?: ReadonlyMap<number, Uint8Array>;
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
  /** Granule index -> its bytes, for the granules data was written to (materialised only). */
  granules: Map<number, Uint8Array>;
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
        dev = { name, dataChunks: 0, zeroChunks: 0, end: 0, granules: new Map() };
        this.devices.set(name, dev);
      }
      const chunkEnd = byteOff + BLOCK_CHUNK;
      if (this.materialize && chunkEnd > this.ctx.limits.imageBytes) {
        throw err("LIMIT", "block image too large to materialise", p, `chunk ends at byte ${chunkEnd} (limits.imageBytes ${this.ctx.limits.imageBytes})`);
      }
      const need = 9 + n + (zero ? 0 : BLOCK_CHUNK);
      if (end - p < need) return { consumed: p - input.ptr, done: false };
      if (this.materialize) {
        if (zero) this.zero(dev, byteOff);
        else this.write(dev, byteOff, u8.subarray(p + 9 + n, p + need), p, err);
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

  /** A data chunk at `off`: into the granules it covers (one when aligned), each allocated when first written. */
  private write(dev: Device, off: number, data: Uint8Array, at: number, err: InputError): void {
    for (let from = off; from < off + data.length; ) {
      const g = Math.floor(from / GRANULE);
      const gEnd = (g + 1) * GRANULE;
      const to = Math.min(off + data.length, gEnd);
      let bytes = dev.granules.get(g);
      if (!bytes) {
        const budget = this.ctx.materialized;
        const cap = this.ctx.limits.materializedBytes;
        if (budget.bytes + GRANULE > cap) budget.settle();
        if (budget.bytes + GRANULE > cap) {
          throw err(
            "LIMIT",
            "materialised RAM and disk data exceed the limit",
            at,
            `device "${dev.name}" needs ${GRANULE} more bytes at byte ${from} of its image, ${budget.bytes} materialised, limits.materializedBytes ${cap}`,
          );
        }
        budget.bytes += GRANULE;
        bytes = new Uint8Array(GRANULE);
        dev.granules.set(g, bytes);
      }
      bytes.set(data.subarray(from - off, to - off), from - g * GRANULE);
      from = to;
    }
  }

  /** A ZERO_BLOCK chunk at `off`: granules it covers whole are dropped, the parts of others cleared, none allocated. */
  private zero(dev: Device, off: number): void {
    const end = off + BLOCK_CHUNK;
    for (let from = off; from < end; ) {
      const g = Math.floor(from / GRANULE);
      const to = Math.min(end, (g + 1) * GRANULE);
      const bytes = dev.granules.get(g);
      if (bytes) {
        if (to - from === GRANULE) {
          dev.granules.delete(g);
          this.ctx.materialized.bytes -= GRANULE;
        } else {
          bytes.fill(0, from - g * GRANULE, to - g * GRANULE);
        }
      }
      from = to;
    }
  }

  result(): BlockResult {
    const devices = [...this.devices.values()].map((d): BlockDeviceResult => {
      const counts = { name: d.name, dataChunks: d.dataChunks, zeroChunks: d.zeroChunks, end: d.end };
      if (!this.materialize) return counts;
      const granules: ReadonlyMap<number, Uint8Array> = d.granules;
      return {
        ...counts,
        granules,
        get image(): Uint8Array {
          const img = new Uint8Array(d.end);
          for (const [g, bytes] of granules) img.set(bytes.subarray(0, Math.min(GRANULE, d.end - g * GRANULE)), g * GRANULE);
          return img;
        },
      };
    });
    return { devices, progress: [...this.progress], records: { ...this.records }, sections: this.sections };
  }
}
