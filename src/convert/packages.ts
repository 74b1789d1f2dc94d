// The open PACKAGED commands of a replay (postcopy): each body is written again item by item between
// beginPackaged() and endPackaged(), so its be32 length is that of the new body. A body must end with its last
// decoded item: QEMU skips what follows POSTCOPY_RUN (or EOF) inside a package, the decoder reports nothing of
// it, so it cannot be written again. Browser-safe.
import { VmstreamError } from "../io/errors.js";
import type { StreamEncoder } from "../savevm/encoder.js";

export class PackageStack {
  private readonly open: { end: number; token: number; last: number; at: number }[] = [];

  constructor(private readonly enc: () => StreamEncoder) {}

  get depth(): number {
    return this.open.length;
  }

  /** A PACKAGED command at input offset `at` with body size `size` was just decoded: open it. */
  begin(at: number, size: number): void {
    const token = this.enc().beginPackaged();
    this.open.push({ end: at + 9 + size, token, last: at + 9, at });
  }

  /** An item starts at input offset `at`: close the packages that end at or before it. */
  closeBefore(at: number): void {
    for (let p = this.open.at(-1); p && p.end <= at; p = this.open.at(-1)) {
      if (p.last !== p.end) {
        throw new VmstreamError(
          "UNSUPPORTED",
          "a PACKAGED body with bytes after its last item (after POSTCOPY_RUN or EOF, QEMU skips them) cannot be re-encoded",
          {
            offset: p.last,
            detail: `${p.end - p.last} bytes skipped in the package at ${p.at}`,
          },
        );
      }
      this.open.pop();
      this.enc().endPackaged(p.token);
      this.ended(p.end);
    }
  }

  /** An item inside the innermost open package ends at input offset `end`. */
  ended(end: number): void {
    const top = this.open.at(-1);
    if (top) top.last = end;
  }

  /** The input has ended: close every package. */
  closeAll(): void {
    this.closeBefore(Number.POSITIVE_INFINITY);
  }
}
