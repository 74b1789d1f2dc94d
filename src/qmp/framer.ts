// Splitting the QMP byte stream into messages. QEMU writes one JSON object per line, but the framer
// does not depend on line breaks: it ends a message where its top-level object ends, so chunk splits,
// several messages per chunk and pretty-printed output all work.
import { QmpClientError } from "./errors.js";

const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isJsonWhitespace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/**
 * Incremental splitter of a byte stream into top-level JSON objects.
 *
 * It tracks only nesting depth and string/escape state (enough to find where each object ends; all bytes of
 * multi-byte UTF-8 sequences are ≥ 0x80 and never look like structure), so it accepts arbitrary chunk
 * boundaries, including ones inside a UTF-8 sequence: a message is decoded only once complete. Whitespace
 * between messages is skipped; any other byte outside an object is a protocol error.
 */
export class QmpMessageFramer {
  private readonly maxMessageBytes: number;
  private readonly decoder = new TextDecoder("utf-8");
  /** Bytes of the message in progress that came in earlier chunks. */
  private partial: Uint8Array[] = [];
  private partialBytes = 0;
  private depth = 0;
  private inString = false;
  private escape = false;

  constructor(options?: { maxMessageBytes?: number }) {
    this.maxMessageBytes = options?.maxMessageBytes ?? 64 * 1024 * 1024;
  }

  /** True when bytes of an incomplete message are buffered. */
  get pending(): boolean {
    return this.depth > 0;
  }

  /**
   * Feed a chunk; returns the messages completed by it, parsed, in order.
   * Throws {@link QmpClientError} (`PROTOCOL`) on bytes outside an object, invalid JSON or an oversized message;
   * the framer is then reset to its initial state.
   */
  push(chunk: Uint8Array | string): unknown[] {
    const bytes = typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk;
    const out: unknown[] = [];
    let start = this.depth > 0 ? 0 : -1;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      if (this.depth === 0) {
        if (b === LBRACE) {
          this.depth = 1;
          start = i;
        } else if (!isJsonWhitespace(b)) {
          this.reset();
          throw new QmpClientError("PROTOCOL", `QMP: unexpected byte 0x${b.toString(16).padStart(2, "0")} between messages`);
        }
        continue;
      }
      if (this.inString) {
        if (this.escape) this.escape = false;
        else if (b === BACKSLASH) this.escape = true;
        else if (b === QUOTE) this.inString = false;
        continue;
      }
      if (b === QUOTE) this.inString = true;
      else if (b === LBRACE || b === LBRACKET) this.depth++;
      else if (b === RBRACE || b === RBRACKET) {
        this.depth--;
        if (this.depth === 0) {
          out.push(this.finish(bytes.subarray(start, i + 1)));
          start = -1;
        }
      }
    }
    if (this.depth > 0) {
      const tail = bytes.subarray(start);
      this.partialBytes += tail.length;
      if (this.partialBytes > this.maxMessageBytes) {
        this.reset();
        throw new QmpClientError("PROTOCOL", `QMP: message larger than ${this.maxMessageBytes} bytes`);
      }
      // Copy: the caller may reuse its buffer.
      this.partial.push(tail.slice());
    }
    return out;
  }

  /** Forget any partial message. */
  reset(): void {
    this.partial = [];
    this.partialBytes = 0;
    this.depth = 0;
    this.inString = false;
    this.escape = false;
  }

  private finish(last: Uint8Array): unknown {
    let whole = last;
    if (this.partial.length > 0) {
      whole = new Uint8Array(this.partialBytes + last.length);
      let o = 0;
      for (const p of this.partial) {
        whole.set(p, o);
        o += p.length;
      }
      whole.set(last, o);
      this.partial = [];
      this.partialBytes = 0;
    }
    if (whole.length > this.maxMessageBytes) {
      this.reset();
      throw new QmpClientError("PROTOCOL", `QMP: message larger than ${this.maxMessageBytes} bytes`);
    }
    const text = this.decoder.decode(whole);
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      this.reset();
      throw new QmpClientError("PROTOCOL", `QMP: invalid JSON from server: ${text.slice(0, 200)}`, { cause: e });
    }
  }
}
