// A BerWriter whose settled bytes are handed out as chunks, with big OCTET STRINGs passed as views when every
// open value has an indefinite length (nothing to patch): how converters write a BER stream front to back
// without copying page data. Browser-safe.
import { BerWriter, T_OCTET_STRING, T_UTF8STRING, type Tag } from "./writer.js";

/** Data at least this long travel as their own output chunk (a view), not copied into the writer. */
const BORROW_MIN = 256;

const utf8Fatal = new TextDecoder("utf-8", { fatal: true });

function validUtf8(b: Uint8Array): boolean {
  try {
    utf8Fatal.decode(b);
    return true;
  } catch {
    return false;
  }
}

export class ChunkedBerWriter {
  readonly w = new BerWriter({ initialCapacity: 1 << 16 });
  readonly chunks: Uint8Array[] = [];
  bytes = 0;
  /** Bytes handed out as views of the caller's data. */
  borrowed = 0;

  private settle(): void {
    const t = this.w.take();
    if (t.length > 0) {
      this.chunks.push(t);
      this.bytes += t.length;
    }
  }

  /** An OCTET STRING (or `tag`, primitive): a view of `data` when every open value is indefinite. */
  octets(data: Uint8Array, tag: Tag = T_OCTET_STRING): void {
    const w = this.w;
    if (data.length < BORROW_MIN) {
      w.octets(data, tag);
      return;
    }
    w.tag(tag);
    w.length(data.length);
    this.settle();
    if (w.pos !== 0) {
      w.raw(data); // a definite value is still open: its length is patched later, so copy
      return;
    }
    this.chunks.push(data);
    this.bytes += data.length;
    this.borrowed += data.length;
  }

  /** QemuString (docs/vmstate.asn1): UTF8String when the bytes are valid UTF-8 (written as they are), else OCTET STRING. */
  qemuString(b: Uint8Array): void {
    this.w.octets(b, validUtf8(b) ? T_UTF8STRING : T_OCTET_STRING);
  }

  /** Hand out the settled chunks (and forget them). */
  drain(): Uint8Array[] {
    this.settle();
    return this.chunks.splice(0);
  }

  finish(): void {
    const rest = this.w.finish();
    if (rest.length > 0) {
      const c = rest.slice();
      this.chunks.push(c);
      this.bytes += c.length;
    }
    this.w.reset();
  }
}
