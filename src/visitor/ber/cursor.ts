// Where BerInputVisitor stands in the stream: its open containers, finding the next field by name
// or the next element, and the MISMATCH reports when the stream has something else there.
import type { BerReader } from "../../ber/reader.js";
import { T_SEQUENCE, T_UTF8STRING } from "../../ber/writer.js";
import { VmstreamError } from "../../io/errors.js";
import { BaseVisitor, nameText } from "../base.js";
import type { Name } from "../visitor.js";
import { ELEMS, FIELDS, OCTETS, STRING, T_ABSENT, TAG_VMSTATE, VALUE_TYPES } from "./tags.js";

/** No Field wrapper around a value. */
export const NONE = -2;
/** A value could not be positioned (the error is set). */
export const FAIL = -3;

/** The reading half of BerInputVisitor: the visits themselves are in input.ts. */
export abstract class BerInputCursor extends BaseVisitor {
  readonly r: BerReader;
  // Frames, parallel arrays: kind, end of the current list (fields, subsections or elements), end of
  // the VMState or Subsection, end of the Field wrapper (NONE when there is none).
  protected readonly kinds: number[] = [];
  protected readonly seqEnds: number[] = [];
  protected readonly vmEnds: number[] = [];
  protected readonly fieldEnds: number[] = [];
  /** Set by peekField(): whether the Field holds the gated-out marker. */
  protected peekedAbsent = false;

  constructor(reader: BerReader) {
    super();
    this.r = reader;
  }

  override fail(error: VmstreamError): void {
    if (this.err) return;
    super.fail(error.offset !== undefined ? error : error.withContext({ offset: this.r.offset }));
  }

  /**
   * Run `read` unless an error is already set (the first error sticks: nothing more is read). An
   * error it throws (malformed or truncated BER) is kept with the path of `name`. Returns what
   * `read` returns, else `fallback`.
   */
  protected guard<T>(name: Name | undefined, fallback: T, read: () => T): T {
    if (this.err) return fallback;
    try {
      return read();
    } catch (e) {
      this.latch(e, name);
      return fallback;
    }
  }

  /** Keep a thrown error (reader errors: malformed or truncated BER) with the path of `name`. */
  protected latch(e: unknown, name: Name | undefined): void {
    this.fail(VmstreamError.wrap(e, { path: this.path(name), offset: this.r.offset }));
  }

  protected mismatch(name: Name | undefined, summary: string, detail: string, at: number, code = "MISMATCH"): void {
    this.fail(new VmstreamError(code, summary, { path: this.path(name), detail, offset: this.r.baseOffset + at }));
  }

  protected get top(): number {
    const n = this.kinds.length;
    return n === 0 ? ELEMS : this.kinds[n - 1]!;
  }

  protected get seqEnd(): number {
    const n = this.kinds.length;
    return n === 0 ? this.r.end : this.seqEnds[n - 1]!;
  }

  protected push(kind: number, seqEnd: number, vmEnd: number, fieldEnd: number): void {
    this.kinds.push(kind);
    this.seqEnds.push(seqEnd);
    this.vmEnds.push(vmEnd);
    this.fieldEnds.push(fieldEnd);
  }

  protected pop(): void {
    this.kinds.pop();
    this.seqEnds.pop();
    this.vmEnds.pop();
    this.fieldEnds.pop();
  }

  /** Whether the current list (fields or elements) is at its end. At the root: whether the bytes are. */
  protected listAtEnd(): boolean {
    const n = this.kinds.length;
    if (n === 0) return this.r.pos >= this.r.end;
    return this.r.atEnd(this.seqEnds[n - 1]!);
  }

  /**
   * Position the reader on the value of field `name` (inside a struct's fields) or on the next
   * element, and read its header. Returns the end of the Field wrapper (NONE for elements) or FAIL.
   * `expect` describes what this side expects, for messages.
   */
  protected value(name: Name, expect: string): number {
    const r = this.r;
    const k = this.top;
    if (k === ELEMS) {
      if (this.listAtEnd()) {
        this.mismatch(name, "element missing from the stream", `the stream has no more elements here, this side expects ${expect}`, r.pos);
        return FAIL;
      }
      r.header();
      return NONE;
    }
    if (k !== FIELDS) {
      this.mismatch(name, "field after the subsections", `this side expects ${expect}`, r.pos, "UNSUPPORTED");
      return FAIL;
    }
    const want = nameText(name);
    for (;;) {
      if (this.listAtEnd()) {
        this.mismatch(
          name,
          `field ${want} missing from the stream`,
          `the stream has no more fields in ${this.structName()}, this side expects ${expect}`,
          r.pos,
        );
        return FAIL;
      }
      const at = r.pos;
      const fe = this.enterField();
      r.header();
      if (r.id !== T_UTF8STRING) r.raise("BER Field without a name", `identifier 0x${r.id.toString(16)}`, r.start);
      if (r.contentsEqual(want)) {
        r.pos += r.len;
        r.header();
        return fe;
      }
      const got = r.utf8();
      r.header();
      if (got === want) return fe; // a name in the constructed string form
      if (r.id === T_ABSENT) {
        // A field the sender left out, which this side does not have: nothing to read.
        r.null();
        this.closeField(fe);
        continue;
      }
      r.pos = at;
      r.depth--;
      this.nameMismatch(want, got, expect);
      return FAIL;
    }
  }

  /**
   * value(), then check that the value's identifier is `tag` (strings and octets may also come in
   * the constructed, segmented, form). Returns the end of the Field wrapper, NONE or FAIL.
   */
  protected scalarValue(name: Name, tag: number, expect: string): number {
    const fe = this.value(name, expect);
    if (fe === FAIL) return FAIL;
    const id = tag === OCTETS.tag || tag === STRING.tag ? this.r.id & 0xdf : this.r.id;
    if (id !== tag) {
      this.typeMismatch(name, expect);
      return FAIL;
    }
    return fe;
  }

  /** Skip the Fields that only record a gated-out field (at the end of a struct's fields). */
  protected skipAbsent(): void {
    const r = this.r;
    const end = this.seqEnd;
    while (!r.atEnd(end)) {
      const p = r.pos;
      const fe = this.enterField();
      r.skipElement();
      r.header();
      if (r.id !== T_ABSENT) {
        r.pos = p;
        r.depth--;
        return;
      }
      r.null();
      this.closeField(fe);
    }
  }

  /** Read a Field header at the read position and enter it. */
  protected enterField(): number {
    const r = this.r;
    r.header();
    if (r.id !== T_SEQUENCE) r.raise("expected a BER Field (SEQUENCE)", `identifier 0x${r.id.toString(16)}`, r.start);
    return r.enter();
  }

  /** After a value: skip the Field's info and leave the Field. */
  protected closeField(fe: number): void {
    if (fe === NONE) return;
    const r = this.r;
    if (!r.atEnd(fe)) {
      r.header();
      if (r.id !== T_UTF8STRING) r.raise("unexpected element in a BER Field", `identifier 0x${r.id.toString(16)}`, r.start);
      r.skip();
    }
    r.leave(fe);
  }

  /** The VMState name of the innermost struct (from the path). */
  protected structName(): string {
    return this.stack[this.stack.length - 1] ?? "the struct";
  }

  /** The name of the field that starts at the read position (pos restored); sets peekedAbsent. */
  protected peekField(): string {
    const r = this.r;
    const p = r.pos;
    const d = r.depth;
    try {
      this.enterField();
      r.header();
      const name = r.utf8();
      r.header();
      this.peekedAbsent = r.id === T_ABSENT;
      return name;
    } finally {
      r.pos = p;
      r.depth = d;
    }
  }

  /** The stream has field `got` where this side expects `want`: missing or extra? Look ahead for `want`. */
  private nameMismatch(want: string, got: string, expect: string): void {
    const r = this.r;
    const p = r.pos;
    const d = r.depth;
    const end = this.seqEnd;
    let later = false;
    try {
      while (!r.atEnd(end)) {
        const fe = this.enterField();
        r.header();
        if (r.contentsEqual(want)) {
          later = true;
          break;
        }
        r.pos = r.start;
        r.skipElement();
        while (!r.atEnd(fe)) r.skipElement();
        r.leave(fe);
      }
    } catch {
      // A malformed tail: report the name mismatch as a missing field.
    } finally {
      r.pos = p;
      r.depth = d;
    }
    if (later) {
      this.mismatch(got, `unexpected field ${got}`, `the stream has field ${got} before ${want}, this side does not expect it`, p);
    } else {
      this.mismatch(want, `field ${want} missing from the stream`, `this side expects ${expect}, the stream has field ${got} here`, p);
    }
  }

  protected typeMismatch(name: Name, expect: string): void {
    const got = this.streamType();
    this.mismatch(name, "type mismatch", `stream has ${got}, this side expects ${expect}`, this.r.start);
  }

  /** What the value whose header was just read is, for messages (pos unchanged). */
  private streamType(): string {
    const r = this.r;
    const id = r.id;
    if (r.cls === 0x80 && r.tagNo < VALUE_TYPES.length) return VALUE_TYPES[r.tagNo]!;
    if (id === TAG_VMSTATE) {
      const p = r.pos;
      const d = r.depth;
      try {
        r.enter();
        r.header();
        return `struct ${r.utf8()}`;
      } catch {
        return "struct";
      } finally {
        r.pos = p;
        r.depth = d;
      }
    }
    return `an element with identifier 0x${id.toString(16)}`;
  }
}
