// The BER form of a "ram" section body (docs/vmstate.asn1: RamRecords): one element per record, page data as
// OCTET STRINGs (handed out as views). Browser-safe.
import { applicationTag, T_SEQUENCE, type Tag } from "../../ber/writer.js";
import { RAM_FLAG } from "../../kernels/types.js";
import type { BerForm } from "../kinds.js";
import type { RamBlockSpec, RamRecord } from "./format.js";

const app = applicationTag;
const TAG_RAM = app(20, true);
const TAG_MEMSIZE = app(32, true);
const TAG_ZERO = app(33, true);
const TAG_PAGE = app(34, true);
const TAG_XBZRLE = app(35, true);
const TAG_COMPRESSED = app(36, true);
const TAG_HOOK = app(37, false);
const TAG_RAM_EOS = app(38, false);
const TAG_PAGE_SIZE = 0x80; // [0] IMPLICIT U64
const TAG_MR_ADDR = 0x81; // [1] IMPLICIT U64
const T_INTEGER = 0x02;

const te = new TextEncoder();
const td = new TextDecoder("utf-8");

/** Bytes the record took on the wire, or -1 when the schema cannot write it back as sent. */
function wireSize(r: RamRecord): number {
  const kind = r.flags & ~RAM_FLAG.CONTINUE;
  const cont = (r.flags & RAM_FLAG.CONTINUE) !== 0;
  switch (kind) {
    case RAM_FLAG.EOS:
      return r.flags === RAM_FLAG.EOS && r.addr === 0n ? 8 : -1;
    case RAM_FLAG.HOOK:
      return 8;
    case RAM_FLAG.MEM_SIZE: {
      if (cont) return -1;
      let n = 8;
      for (const b of r.blocks ?? []) {
        const nb = te.encode(b.name);
        if (nb.length > 255 || b.name.includes("\uFFFD")) return -1; // U+FFFD: bytes that were not UTF-8
        n += 1 + nb.length + 8 + (b.pageSize !== undefined ? 8 : 0) + (b.mrAddr !== undefined ? 8 : 0);
      }
      return n;
    }
    case RAM_FLAG.ZERO:
    case RAM_FLAG.PAGE:
    case RAM_FLAG.XBZRLE:
    case RAM_FLAG.COMPRESS_PAGE: {
      if (cont !== (r.name === undefined)) return -1;
      const body = kind === RAM_FLAG.ZERO ? 1 : kind === RAM_FLAG.PAGE ? r.data!.length : kind === RAM_FLAG.XBZRLE ? 3 + r.data!.length : 4 + r.data!.length;
      return 8 + (r.name ? 1 + r.name.length : 0) + body;
    }
    default:
      return -1;
  }
}

export const ramBer: BerForm<RamRecord> = {
  tag: TAG_RAM,

  fits(records, payloadSize) {
    let n = 0;
    for (const r of records) {
      const s = wireSize(r);
      if (s < 0) return false;
      n += s;
    }
    return n === payloadSize;
  },

  write(out, records) {
    const w = out.w;
    const page = (tag: Tag, r: RamRecord, body: () => void): void => {
      w.fork(tag, true);
      if (r.name) out.qemuString(r.name);
      w.bigint(r.addr);
      body();
      w.join();
    };
    w.fork(TAG_RAM, true);
    for (const r of records) {
      switch (r.flags & ~RAM_FLAG.CONTINUE) {
        case RAM_FLAG.MEM_SIZE:
          w.fork(TAG_MEMSIZE, true);
          w.bigint(r.addr);
          w.fork(T_SEQUENCE, true);
          for (const b of r.blocks ?? []) {
            w.fork(T_SEQUENCE);
            out.qemuString(te.encode(b.name));
            w.bigint(b.length);
            if (b.pageSize !== undefined) w.bigint(b.pageSize, TAG_PAGE_SIZE);
            if (b.mrAddr !== undefined) w.bigint(b.mrAddr, TAG_MR_ADDR);
            w.join();
          }
          w.join();
          w.join();
          break;
        case RAM_FLAG.ZERO:
          page(TAG_ZERO, r, () => w.int(r.fill ?? 0));
          break;
        case RAM_FLAG.PAGE:
          page(TAG_PAGE, r, () => out.octets(r.data!));
          break;
        case RAM_FLAG.XBZRLE:
          page(TAG_XBZRLE, r, () => {
            w.int(r.encoding ?? 1);
            out.octets(r.data!);
          });
          break;
        case RAM_FLAG.COMPRESS_PAGE:
          page(TAG_COMPRESSED, r, () => out.octets(r.data!));
          break;
        case RAM_FLAG.HOOK:
          w.bigint(r.addr | BigInt(r.flags), TAG_HOOK);
          break;
        case RAM_FLAG.EOS:
          w.null(TAG_RAM_EOS);
          break;
      }
    }
    w.join();
  },

  read(i, end, emit, pageSize) {
    const r = i.r;
    const mask = BigInt(pageSize - 1);
    while (!r.atEnd(end)) {
      if (i.next(TAG_RAM_EOS, end)) {
        r.header();
        r.null();
        emit({ flags: RAM_FLAG.EOS, addr: 0n });
        continue;
      }
      if (i.next(TAG_HOOK, end)) {
        const h = i.u64(TAG_HOOK, "RamHook");
        emit({ flags: Number(h & mask), addr: h & ~mask });
        continue;
      }
      if (i.next(TAG_MEMSIZE, end)) {
        r.header();
        const e = r.enter();
        const total = i.u64(T_INTEGER, "total");
        i.expect(T_SEQUENCE, "the RAM block list");
        const le = r.enter();
        const blocks: RamBlockSpec[] = [];
        while (!r.atEnd(le)) {
          i.expect(T_SEQUENCE, "RamBlockInfo");
          const be = r.enter();
          const name = td.decode(i.qemuString("block name"));
          const length = i.u64(T_INTEGER, "usedLength");
          const ps = i.next(TAG_PAGE_SIZE, be) ? i.u64(TAG_PAGE_SIZE, "pageSize") : undefined;
          const mr = i.next(TAG_MR_ADDR, be) ? i.u64(TAG_MR_ADDR, "mrAddr") : undefined;
          r.leave(be);
          blocks.push({ name, length, ...(ps !== undefined ? { pageSize: ps } : {}), ...(mr !== undefined ? { mrAddr: mr } : {}) });
        }
        r.leave(le);
        r.leave(e);
        emit({ flags: RAM_FLAG.MEM_SIZE, addr: total, blocks });
        continue;
      }
      r.header();
      const kind = i.is(TAG_ZERO)
        ? RAM_FLAG.ZERO
        : i.is(TAG_PAGE)
          ? RAM_FLAG.PAGE
          : i.is(TAG_XBZRLE)
            ? RAM_FLAG.XBZRLE
            : i.is(TAG_COMPRESSED)
              ? RAM_FLAG.COMPRESS_PAGE
              : 0;
      if (kind === 0) r.raise("unknown RAM record", `identifier 0x${r.id.toString(16)} (tag ${r.tagNo})`, r.start);
      const e = r.enter();
      const name = i.next(T_INTEGER, e) ? undefined : i.qemuString("block");
      const addr = i.u64(T_INTEGER, "offset");
      const flags = kind | (name === undefined ? RAM_FLAG.CONTINUE : 0);
      const named = name ? { name } : {};
      if (kind === RAM_FLAG.ZERO) emit({ flags, addr, ...named, fill: i.u32("fill") });
      else if (kind === RAM_FLAG.XBZRLE) {
        const encoding = i.u32("encoding");
        emit({ flags, addr, ...named, encoding, data: i.octets(0x04, "XBZRLE data") });
      } else emit({ flags, addr, ...named, data: i.octets(0x04, "page data") });
      r.leave(e);
    }
    r.leave(end);
  },
};
