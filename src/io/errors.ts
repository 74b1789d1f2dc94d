// VmstreamError: the one error class of vmstream for bad input (malformed, truncated or out-of-range streams and
// values). It carries the absolute byte offset, the section and the field path as far as known, gains the missing
// ones on the way up (the first error sticks), and formats them in one message. docs/io.md, "Errors".
// Browser-safe: no Node APIs.

/** The section an error happened in (from the START/FULL section header). */
export interface SectionRef {
  readonly idstr: string;
  /** section_id (the per-stream handle). */
  readonly id: number;
  readonly instanceId?: number;
}

/** Location context of an error; every field is optional. */
export interface ErrorContext {
  /** Absolute byte offset in the stream. */
  readonly offset?: number;
  readonly section?: SectionRef;
  /** Field path, e.g. `PIIX3.PCIDevice.config`. */
  readonly path?: string;
}

/**
 * Short machine-readable error codes. The known ones are listed for auto-completion; any other string is
 * allowed so that higher layers can add their own without touching this file.
 *
 * - `EOF`: ran out of input bytes.
 * - `RANGE`: a value does not fit its type or an argument is out of range (negative length, string > 255 bytes,
 *   be64 read as a number above 2^53-1, patch outside the written bytes).
 * - `LIMIT`: a length read from the stream is above a configured cap ({@link ByteReader.checkLength}).
 * - `EMPTY_STRING`: a counted string of length 0 where QEMU requires a non-empty one.
 * - `BAD_MAGIC`, `BAD_VERSION`, `BAD_SECTION`, `BAD_VALUE`, `MISMATCH`, `UNSUPPORTED`: for the framing and
 *   visitor layers.
 * - `INTERNAL`: a non-vmstream error wrapped by {@link VmstreamError.wrap}.
 */
export type VmstreamErrorCode =
  | "EOF"
  | "RANGE"
  | "LIMIT"
  | "EMPTY_STRING"
  | "BAD_MAGIC"
  | "BAD_VERSION"
  | "BAD_SECTION"
  | "BAD_VALUE"
  | "MISMATCH"
  | "UNSUPPORTED"
  | "INTERNAL"
  | (string & {});

export interface VmstreamErrorOptions extends ErrorContext {
  /** Text after the location, e.g. `need 4 bytes, 2 left`. */
  readonly detail?: string;
  readonly cause?: unknown;
}

/**
 * Code points that act on a terminal rather than print: C0 and C1 controls, DEL (cursor moves, colours, line
 * breaks), line and paragraph separators, and the bidirectional marks, overrides and isolates (they reorder text).
 */
function unprintable(c: number): boolean {
  return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x61c || c === 0x200e || c === 0x200f || (c >= 0x2028 && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

/**
 * Text from a stream (idstrs, RAM block and field names, string values, anything inside an error message) made
 * safe to show on a terminal: each unprintable code point becomes `\xNN` or `\u{NNNN}`, so a crafted name can
 * neither move the cursor nor start a line of its own. The one helper for every such text.
 */
export function printable(text: string): string {
  let i = 0;
  while (i < text.length && !unprintable(text.charCodeAt(i))) i++;
  if (i === text.length) return text;
  let out = text.slice(0, i);
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (!unprintable(c)) out += text[i];
    else out += c < 0x100 ? `\\x${c.toString(16).padStart(2, "0")}` : `\\u{${c.toString(16)}}`;
  }
  return out;
}

/** Formats `summary at byte N (section S id I instance J, field P): detail`, made printable. */
export function formatErrorMessage(summary: string, o: VmstreamErrorOptions): string {
  let m = summary;
  if (o.offset !== undefined) m += ` at byte ${o.offset}`;
  const where: string[] = [];
  if (o.section !== undefined) {
    let s = `section ${o.section.idstr} id ${o.section.id}`;
    if (o.section.instanceId !== undefined) s += ` instance ${o.section.instanceId}`;
    where.push(s);
  }
  if (o.path !== undefined && o.path !== "") where.push(`field ${o.path}`);
  if (where.length > 0) m += ` (${where.join(", ")})`;
  if (o.detail !== undefined && o.detail !== "") m += `: ${o.detail}`;
  return printable(m);
}

export class VmstreamError extends Error {
  readonly code: VmstreamErrorCode;
  /** The message without location and detail, e.g. `unexpected end of stream`. */
  readonly summary: string;
  readonly detail?: string;
  readonly offset?: number;
  readonly section?: SectionRef;
  readonly path?: string;

  constructor(code: VmstreamErrorCode, summary: string, options: VmstreamErrorOptions = {}) {
    super(formatErrorMessage(summary, options), options.cause !== undefined ? { cause: options.cause } : undefined);
    this.code = code;
    this.summary = summary;
    if (options.detail !== undefined) this.detail = options.detail;
    if (options.offset !== undefined) this.offset = options.offset;
    if (options.section !== undefined) this.section = options.section;
    if (options.path !== undefined) this.path = options.path;
  }

  /**
   * A copy with the context fields that are still missing filled in from `ctx` (fields already set are kept:
   * the first, innermost information sticks). Returns `this` when nothing would change. The copy keeps the
   * original stack trace (with the new message in its first line) and `cause`.
   */
  withContext(ctx: ErrorContext): VmstreamError {
    const offset = this.offset ?? ctx.offset;
    const section = this.section ?? ctx.section;
    const path = this.path !== undefined && this.path !== "" ? this.path : ctx.path;
    if (offset === this.offset && section === this.section && path === this.path) return this;
    const copy = new VmstreamError(this.code, this.summary, {
      offset,
      section,
      path,
      detail: this.detail,
      cause: this.cause,
    });
    if (this.stack !== undefined) {
      const header = `${this.name}: ${this.message}`;
      copy.stack = this.stack.startsWith(header) ? `${copy.name}: ${copy.message}${this.stack.slice(header.length)}` : this.stack;
    }
    return copy;
  }

  /**
   * Turn anything thrown into a VmstreamError with context: a VmstreamError gets {@link withContext}; any
   * other value becomes a new error of `code` (default `INTERNAL`) whose `cause` is the original.
   */
  static wrap(err: unknown, ctx: ErrorContext = {}, code: VmstreamErrorCode = "INTERNAL"): VmstreamError {
    if (err instanceof VmstreamError) return err.withContext(ctx);
    const summary = err instanceof Error ? err.message : String(err);
    return new VmstreamError(code, summary, { ...ctx, cause: err });
  }
}

// On the prototype rather than as a class field: no own enumerable `name` on every instance.
VmstreamError.prototype.name = "VmstreamError";

export function isVmstreamError(e: unknown): e is VmstreamError {
  return e instanceof VmstreamError;
}

/** The standard EOF error: `unexpected end of stream at byte <offset>: need <need> bytes, <left> left`. */
export function eofError(offset: number, need: number, left: number): VmstreamError {
  return new VmstreamError("EOF", "unexpected end of stream", {
    offset,
    detail: `need ${need} byte${need === 1 ? "" : "s"}, ${left} left`,
  });
}
