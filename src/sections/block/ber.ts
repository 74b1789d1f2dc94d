// The BER form of a "block" section body (docs/vmstate.asn1: BlockRecords): data and zero chunks with their
// device, progress, EOS. Browser-safe.
import { applicationTag, T_OCTET_STRING } from "../../ber/writer.js";
import type { BerForm } from "../kinds.js";
import { BLK_MIG, type BlockRecord } from "./format.js";

const app = applicationTag;
const TAG_BLOCK = app(21, true);
const TAG_BLOCK_DATA = app(40, true);
const TAG_BLOCK_ZERO = app(41, true);
const TAG_PROGRESS = app(42, false);
const TAG_BLOCK_EOS = app(43, false);
const T_INTEGER = 0x02;

export const blockBer: BerForm<BlockRecord> = {
  tag: TAG_BLOCK,

  fits(records, payloadSize) {
    let n = 0;
    for (const r of records) {
      n += 8;
      if (r.flags === BLK_MIG.DEVICE_BLOCK) n += 1 + r.name!.length + r.data!.length;
      else if (r.flags === (BLK_MIG.DEVICE_BLOCK | BLK_MIG.ZERO_BLOCK)) n += 1 + r.name!.length;
      else if (r.flags === BLK_MIG.PROGRESS) continue;
      else if (r.flags === BLK_MIG.EOS && r.value === 0n) continue;
      else return false;
    }
    return n === payloadSize;
  },

  write(out, records) {
    const w = out.w;
    w.fork(TAG_BLOCK, true);
    for (const r of records) {
      if (r.flags & BLK_MIG.DEVICE_BLOCK) {
        const zero = (r.flags & BLK_MIG.ZERO_BLOCK) !== 0;
        w.fork(zero ? TAG_BLOCK_ZERO : TAG_BLOCK_DATA, true);
        out.qemuString(r.name!);
        w.bigint(r.value);
        if (!zero) out.octets(r.data!);
        w.join();
      } else if (r.flags === BLK_MIG.PROGRESS) w.bigint(r.value, TAG_PROGRESS);
      else w.null(TAG_BLOCK_EOS);
    }
    w.join();
  },

  read(i, end, emit) {
    const r = i.r;
    while (!r.atEnd(end)) {
      if (i.next(TAG_PROGRESS, end)) {
        emit({ flags: BLK_MIG.PROGRESS, value: i.u64(TAG_PROGRESS, "BlockProgress") });
        continue;
      }
      if (i.next(TAG_BLOCK_EOS, end)) {
        r.header();
        r.null();
        emit({ flags: BLK_MIG.EOS, value: 0n });
        continue;
      }
      r.header();
      const zero = i.is(TAG_BLOCK_ZERO);
      if (!zero && !i.is(TAG_BLOCK_DATA)) r.raise("unknown block record", `identifier 0x${r.id.toString(16)} (tag ${r.tagNo})`, r.start);
      const e = r.enter();
      const name = i.qemuString("device");
      const value = i.u64(T_INTEGER, "sector");
      if (zero) emit({ flags: BLK_MIG.DEVICE_BLOCK | BLK_MIG.ZERO_BLOCK, value, name });
      else emit({ flags: BLK_MIG.DEVICE_BLOCK, value, name, data: i.octets(T_OCTET_STRING, "block data") });
      r.leave(e);
    }
    r.leave(end);
  },
};
