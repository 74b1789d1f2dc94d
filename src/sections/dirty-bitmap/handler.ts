// The "dirty-bitmap" section (wire-format §9): records start with a flags byte (EXTRA_FLAGS 0x80 pulls in
// more flag bytes, which QEMU 7.2 truncates into a uint8); then the node alias (DEVICE_NAME) and bitmap
// alias (BITMAP_NAME) as counted strings; START adds be32 granularity + u8 flags; BITS adds be64 first sector,
// be32 sector count and, unless ZEROES, be64 buffer size (<= 10240) + the buffer. The loop ends with a record
// carrying EOS. Parsed, checked and reported (bitmaps are not materialised). Browser-safe.
import { ByteReader } from "../../io/reader.js";
import { VmstreamError } from "../../io/errors.js";
import type { FeedResult, HandlerContext, SectionHandler, SectionHeader, SectionInput } from "../../savevm/types.js";

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
const START_RESERVED = 0xf8;

export interface DirtyBitmapInfo {
  readonly node: string;
  readonly name: string;
  granularity?: number;
  /** START flags: 0x01 enabled, 0x02 persistent. */
  startFlags?: number;
  bitsRecords: number;
  zeroRecords: number;
  /** Buffer bytes received in BITS records. */
  bufferBytes: number;
  /** Sectors covered by BITS records. */
  sectors: number;
  complete: boolean;
}

export interface DirtyBitmapResult {
  readonly bitmaps: readonly DirtyBitmapInfo[];
  readonly records: number;
  readonly sections: number;
}

export class DirtyBitmapHandler implements SectionHandler<DirtyBitmapResult> {
  readonly idstr = "dirty-bitmap";
  readonly maxVersion = 1;
  private node: string | undefined;
  private name: string | undefined;
  private readonly bitmaps = new Map<string, DirtyBitmapInfo>();
  private records = 0;
  private sections = 0;

  constructor(private readonly ctx: HandlerContext) {}

  begin(_h: SectionHeader): void {
    this.sections++;
  }

  feed(input: SectionInput, h: SectionHeader): FeedResult {
    const k = input.kernels;
    const r = new ByteReader(k.u8.subarray(input.ptr, input.ptr + input.len), { baseOffset: input.offset });
    const section = { idstr: h.idstr, id: h.id, instanceId: h.instanceId };
    let done = 0;
    for (;;) {
      const start = r.pos;
      let eos: boolean;
      try {
        eos = this.record(r, section);
      } catch (e) {
        if (e instanceof VmstreamError && e.code === "EOF" && !input.final) return { consumed: start, done: false };
        throw VmstreamError.wrap(e, { section });
      }
      done = r.pos;
      this.records++;
      if (eos) return { consumed: done, done: true };
      if (r.remaining === 0) return { consumed: done, done: false };
    }
  }

  /** One record; returns whether it carries EOS. Throws EOF (consuming nothing useful) on short input. */
  private record(r: ByteReader, section: { idstr: string; id: number; instanceId: number }): boolean {
    const at = r.offset;
    const bad = (summary: string, detail?: string) => new VmstreamError("BAD_VALUE", summary, { offset: at, section, detail });
    let flags = r.u8();
    if (flags & DIRTY_BITMAP_FLAG.EXTRA_FLAGS) {
      flags = r.u8();
      if (flags & DIRTY_BITMAP_FLAG.EXTRA_FLAGS) flags = r.be16() & 0xff;
    }
    let node = this.node;
    let name = this.name;
    if (flags & DIRTY_BITMAP_FLAG.DEVICE_NAME) node = r.cstr();
    if (flags & DIRTY_BITMAP_FLAG.BITMAP_NAME) name = r.cstr();
    const needsBitmap = (flags & (DIRTY_BITMAP_FLAG.START | DIRTY_BITMAP_FLAG.COMPLETE | DIRTY_BITMAP_FLAG.BITS)) !== 0;
    let granularity: number | undefined;
    let startFlags: number | undefined;
    let sectors = 0;
    let buffer = 0;
    if (flags & DIRTY_BITMAP_FLAG.START) {
      granularity = r.be32();
      startFlags = r.u8();
    } else if (flags & DIRTY_BITMAP_FLAG.BITS) {
      r.be64();
      sectors = r.be32();
      if (!(flags & DIRTY_BITMAP_FLAG.ZEROES)) {
        const size = r.be64();
        if (size > BigInt(DIRTY_BITMAP_MAX_BUFFER)) throw bad("dirty bitmap BITS buffer too large", `${size} > ${DIRTY_BITMAP_MAX_BUFFER}`);
        buffer = Number(size);
        r.skip(buffer);
      }
    }
    // the record is complete: apply it
    if (needsBitmap && (node === undefined || name === undefined)) throw bad("dirty bitmap record before the node and bitmap names were sent");
    if (startFlags !== undefined && startFlags & START_RESERVED) throw bad("unknown flags in a dirty bitmap START record", `0x${startFlags.toString(16)}`);
    this.node = node;
    this.name = name;
    if (needsBitmap) {
      const key = `${node}\u0000${name}`;
      let b = this.bitmaps.get(key);
      if (!b) {
        if (this.bitmaps.size >= this.ctx.limits.bitmapRecords) throw new VmstreamError("LIMIT", "too many dirty bitmaps", { offset: at, section });
        b = { node: node!, name: name!, bitsRecords: 0, zeroRecords: 0, bufferBytes: 0, sectors: 0, complete: false };
        this.bitmaps.set(key, b);
      }
      if (flags & DIRTY_BITMAP_FLAG.START) {
        b.granularity = granularity;
        b.startFlags = startFlags;
      } else if (flags & DIRTY_BITMAP_FLAG.COMPLETE) b.complete = true;
      else {
        if (flags & DIRTY_BITMAP_FLAG.ZEROES) b.zeroRecords++;
        else b.bitsRecords++;
        b.bufferBytes += buffer;
        b.sectors += sectors;
      }
    }
    return (flags & DIRTY_BITMAP_FLAG.EOS) !== 0;
  }

  result(): DirtyBitmapResult {
    return { bitmaps: [...this.bitmaps.values()].map((b) => ({ ...b })), records: this.records, sections: this.sections };
  }
}
