// The writer of "dirty-bitmap" section records (wire-format §9), exactly as given (replay). Browser-safe.
import type { ByteWriter } from "../../io/writer.js";
import { DIRTY_BITMAP_FLAG, type DirtyBitmapRecord } from "./format.js";

export class DirtyBitmapWriter {
  constructor(readonly w: ByteWriter) {}

  record(r: DirtyBitmapRecord): void {
    const w = this.w;
    w.bytes(r.flagBytes);
    if (r.flags & DIRTY_BITMAP_FLAG.DEVICE_NAME) w.cstr(r.node!);
    if (r.flags & DIRTY_BITMAP_FLAG.BITMAP_NAME) w.cstr(r.name!);
    if (r.flags & DIRTY_BITMAP_FLAG.START) {
      w.be32(r.granularity!);
      w.u8(r.startFlags!);
    } else if (r.flags & DIRTY_BITMAP_FLAG.BITS) {
      w.be64(r.firstSector!);
      w.be32(r.sectors!);
      if (!(r.flags & DIRTY_BITMAP_FLAG.ZEROES)) {
        w.be64(r.size!);
        w.bytes(r.buffer!);
      }
    }
  }
}
