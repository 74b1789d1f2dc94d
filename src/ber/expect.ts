// Reading a BER stream against its schema: each read names what it expects, so a mismatch is one located
// error ("expected the section footer ([APPLICATION 126])" at the byte offset). Browser-safe.
import type { BerReader } from "./reader.js";
import type { Tag } from "./writer.js";

const T_INTEGER = 0x02;

function tagNumber(t: Uint8Array): number {
  let n = 0;
  for (let i = 1; i < t.length; i++) n = n * 128 + (t[i]! & 0x7f);
  return n;
}

export class BerExpect {
  constructor(readonly r: BerReader) {}

  /** Read a header and check its identifier (one octet, or the class and number of a high tag). */
  expect(tag: Tag, what: string): void {
    const r = this.r;
    r.header();
    if (!this.is(tag)) r.raise(`expected ${what}`, `identifier 0x${r.id.toString(16)} (tag ${r.tagNo})`, r.start);
  }

  /** Whether the header just read has this identifier. */
  is(tag: Tag): boolean {
    const r = this.r;
    if (typeof tag === "number") return r.id === tag;
    return r.id === tag[0] && r.tagNo === tagNumber(tag);
  }

  /** Peek: whether the next value inside the value that ends at `end` (enter()) has this identifier. */
  next(tag: Tag, end: number): boolean {
    const r = this.r;
    if (r.atEnd(end) || !r.peekHeader()) return false;
    const p = r.pos;
    r.header();
    const ok = this.is(tag);
    r.pos = p;
    return ok;
  }

  u32(what: string): number {
    this.expect(T_INTEGER, what);
    const v = this.r.int();
    if (v < 0 || v > 0xffffffff) this.r.raise(`${what} out of range`, String(v), this.r.start);
    return v;
  }

  u64(tag: Tag, what: string): bigint {
    this.expect(tag, what);
    const v = this.r.bigint();
    if (v < 0n || v > 0xffffffffffffffffn) this.r.raise(`${what} out of range`, String(v), this.r.start);
    return v;
  }

  /** QemuString: the bytes (UTF8String or OCTET STRING, primitive or constructed). */
  qemuString(what: string): Uint8Array {
    const r = this.r;
    r.header();
    if (r.id !== 0x0c && r.id !== 0x04 && r.id !== 0x2c && r.id !== 0x24)
      r.raise(`expected ${what} (a QemuString)`, `identifier 0x${r.id.toString(16)}`, r.start);
    return r.octets();
  }

  octets(tag: Tag, what: string): Uint8Array {
    this.expect(tag, what);
    return this.r.octets();
  }
}
