// The "dirty-bitmap" section's loader (wire-format §9): records are parsed, checked and counted per bitmap
// (bitmaps are not materialised). Browser-safe.

import { VmstreamError } from "../../io/errors.js";
import { ByteReader } from "../../io/reader.js";
import type { FeedResult, HandlerContext, SectionHandler, SectionHeader, SectionInput } from "../../savevm/types.js";
import { DIRTY_BITMAP_FLAG, DIRTY_BITMAP_MAX_BUFFER, type DirtyBitmapRecord } from "./format.js";

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
  readonly emitsRecords = true;
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
    const start = r.pos;
    let flags = r.u8();
    if (flags & DIRTY_BITMAP_FLAG.EXTRA_FLAGS) {
      flags = r.u8();
      if (flags & DIRTY_BITMAP_FLAG.EXTRA_FLAGS) flags = r.be16() & 0xff;
    }
    const flagBytes = r.data.subarray(start, r.pos);
    let node = this.node;
    let name = this.name;
    let nodeBytes: Uint8Array | undefined;
    let nameBytes: Uint8Array | undefined;
    if (flags & DIRTY_BITMAP_FLAG.DEVICE_NAME) {
      const at = r.pos;
      node = r.cstr();
      nodeBytes = r.data.subarray(at + 1, r.pos);
    }
    if (flags & DIRTY_BITMAP_FLAG.BITMAP_NAME) {
      const at = r.pos;
      name = r.cstr();
      nameBytes = r.data.subarray(at + 1, r.pos);
    }
    const needsBitmap = (flags & (DIRTY_BITMAP_FLAG.START | DIRTY_BITMAP_FLAG.COMPLETE | DIRTY_BITMAP_FLAG.BITS)) !== 0;
    let granularity: number | undefined;
    let startFlags: number | undefined;
    let sectors = 0;
    let buffer = 0;
    let bits: Pick<DirtyBitmapRecord, "firstSector" | "sectors" | "size" | "buffer"> = {};
    if (flags & DIRTY_BITMAP_FLAG.START) {
      granularity = r.be32();
      startFlags = r.u8();
    } else if (flags & DIRTY_BITMAP_FLAG.BITS) {
      const firstSector = r.be64();
      sectors = r.be32();
      bits = { firstSector, sectors };
      if (!(flags & DIRTY_BITMAP_FLAG.ZEROES)) {
        const size = r.be64();
        if (size > BigInt(DIRTY_BITMAP_MAX_BUFFER)) throw bad("dirty bitmap BITS buffer too large", `${size} > ${DIRTY_BITMAP_MAX_BUFFER}`);
        buffer = Number(size);
        bits = { ...bits, size, buffer: r.bytes(buffer) };
      }
    }
    // the record is complete: apply it
    if (needsBitmap && (node === undefined || name === undefined)) throw bad("dirty bitmap record before the node and bitmap names were sent");
    if (startFlags !== undefined && startFlags & START_RESERVED) throw bad("unknown flags in a dirty bitmap START record", `0x${startFlags.toString(16)}`);
    this.node = node;
    this.name = name;
    this.ctx.record?.({
      flagBytes,
      flags,
      ...(nodeBytes ? { node: nodeBytes } : {}),
      ...(nameBytes ? { name: nameBytes } : {}),
      ...(granularity !== undefined ? { granularity, startFlags } : {}),
      ...bits,
    } satisfies DirtyBitmapRecord);
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
