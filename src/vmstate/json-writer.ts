// QEMU's JSON text format (qobject/json-writer.c, non-pretty), byte for byte: `{`/`[` with no space
// after, members separated by ", ", keys followed by ": ", decimal integers, upper-case \uXXXX
// escapes for control and non-ASCII code points, no trailing newline. Written as text directly,
// so duplicate keys (which QEMU's vmdesc can contain) are kept.

export class QemuJsonWriter {
  private out = "";
  /** Per open container: whether it already has a member. */
  private readonly first: boolean[] = [];

  private sep(key: string | undefined): void {
    const n = this.first.length;
    if (n > 0) {
      if (this.first[n - 1]) this.first[n - 1] = false;
      else this.out += ", ";
    }
    if (key !== undefined) this.out += quote(key) + ": ";
  }

  startObject(key?: string): void {
    this.sep(key);
    this.out += "{";
    this.first.push(true);
  }

  endObject(): void {
    this.first.pop();
    this.out += "}";
  }

  startArray(key?: string): void {
    this.sep(key);
    this.out += "[";
    this.first.push(true);
  }

  endArray(): void {
    this.first.pop();
    this.out += "]";
  }

  str(key: string | undefined, v: string): void {
    this.sep(key);
    this.out += quote(v);
  }

  int(key: string | undefined, v: number | bigint): void {
    this.sep(key);
    this.out += String(v);
  }

  bool(key: string | undefined, v: boolean): void {
    this.sep(key);
    this.out += v ? "true" : "false";
  }

  /** Splice in text another writer produced (a complete value). */
  raw(key: string | undefined, json: string): void {
    this.sep(key);
    this.out += json;
  }

  text(): string {
    return this.out;
  }
}

const ESC: Record<string, string> = { '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

function hex4(c: number): string {
  return "\\u" + c.toString(16).toUpperCase().padStart(4, "0");
}

/** A JSON string literal as QEMU writes it (JS strings are UTF-16: astral code points come out as surrogate pairs, as QEMU writes them). */
export function quote(s: string): string {
  let o = '"';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    const c = s.charCodeAt(i);
    const e = ESC[ch];
    if (e !== undefined) o += e;
    else if (c < 0x20 || c >= 0x7f) o += hex4(c);
    else o += ch;
  }
  return o + '"';
}
