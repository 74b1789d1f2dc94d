// The input bytes a converter has not written out yet, by absolute stream offset. Browser-safe.
import { VmstreamError } from "../io/errors.js";

export class InputTail {
  private parts: { start: number; bytes: Uint8Array }[] = [];
  /** Index of the first part still held (parts before it are dropped; the array is compacted now and then). */
  private head = 0;
  /** Absolute offset of the next byte pushed. */
  private end = 0;
  /** Bytes held. */
  held = 0;

  /** Hold `chunk` (a copy unless `copy` is false: then the caller keeps it unchanged). */
  push(chunk: Uint8Array, copy = true): void {
    if (chunk.length === 0) return;
    this.parts.push({ start: this.end, bytes: copy ? chunk.slice() : chunk });
    this.end += chunk.length;
    this.held += chunk.length;
  }

  /** Bytes [from, to): a view when one pushed chunk holds them, else a copy. */
  range(from: number, to: number): Uint8Array {
    const parts = this.parts;
    // the first part that ends after `from` (binary search: many small parts may be held)
    let i = this.head;
    let hi = parts.length;
    while (i < hi) {
      const mid = (i + hi) >>> 1;
      if (parts[mid]!.start + parts[mid]!.bytes.length <= from) i = mid + 1;
      else hi = mid;
    }
    const first = parts[i];
    if (!first || first.start > from || to > this.end)
      throw new VmstreamError("INTERNAL", "input bytes no longer held", { offset: from, detail: `${from}..${to}` });
    if (to <= first.start + first.bytes.length) return first.bytes.subarray(from - first.start, to - first.start);
    const out = new Uint8Array(to - from);
    for (let p = from; p < to; i++) {
      const c = parts[i]!;
      const a = p - c.start;
      const n = Math.min(c.bytes.length - a, to - p);
      out.set(c.bytes.subarray(a, a + n), p - from);
      p += n;
    }
    return out;
  }

  /** Forget the bytes before `offset`. */
  drop(offset: number): void {
    const parts = this.parts;
    while (this.head < parts.length && parts[this.head]!.start + parts[this.head]!.bytes.length <= offset) {
      this.held -= parts[this.head]!.bytes.length;
      this.head++;
    }
    // compact in amortised linear time (tiny pushes make many parts)
    if (this.head > 64 && this.head * 2 > parts.length) {
      this.parts = parts.slice(this.head);
      this.head = 0;
    }
  }
}
