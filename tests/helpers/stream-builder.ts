// TEST-ONLY: build synthetic QEMU 7.2 migration streams byte by byte (wire-format §2), for the decoder tests.
const enc = new TextEncoder();

export class StreamBuilder {
  private readonly parts: number[] = [];
  /** Write section footers (machine types >= 2.4). */
  footers = true;

  u8(v: number): this {
    this.parts.push(v & 0xff);
    return this;
  }
  be16(v: number): this {
    return this.u8(v >>> 8).u8(v);
  }
  be32(v: number): this {
    return this.u8(v >>> 24)
      .u8(v >>> 16)
      .u8(v >>> 8)
      .u8(v);
  }
  be64(v: bigint | number): this {
    const b = BigInt(v);
    return this.be32(Number((b >> 32n) & 0xffffffffn)).be32(Number(b & 0xffffffffn));
  }
  bytes(b: ArrayLike<number>): this {
    for (let i = 0; i < b.length; i++) this.parts.push(b[i]! & 0xff);
    return this;
  }
  str(s: string): this {
    return this.bytes(enc.encode(s));
  }
  cstr(s: string): this {
    const b = enc.encode(s);
    return this.u8(b.length).bytes(b);
  }
  get length(): number {
    return this.parts.length;
  }

  header(version = 3): this {
    return this.str("QEVM").be32(version);
  }
  /** Configuration section; `subsections` are raw bytes appended after the name. */
  config(machine: string, subsections: (b: StreamBuilder) => void = () => {}): this {
    this.u8(0x07).be32(enc.encode(machine).length).str(machine);
    subsections(this);
    return this;
  }
  subsection(name: string, version: number, body: (b: StreamBuilder) => void): this {
    this.u8(0x05).cstr(name).be32(version);
    body(this);
    return this;
  }
  start(id: number, idstr: string, version: number, payload: (b: StreamBuilder) => void, instance = 0): this {
    this.u8(0x01).be32(id).cstr(idstr).be32(instance).be32(version);
    payload(this);
    return this.footer(id);
  }
  full(id: number, idstr: string, version: number, payload: (b: StreamBuilder) => void, instance = 0): this {
    this.u8(0x04).be32(id).cstr(idstr).be32(instance).be32(version);
    payload(this);
    return this.footer(id);
  }
  part(id: number, payload: (b: StreamBuilder) => void): this {
    this.u8(0x02).be32(id);
    payload(this);
    return this.footer(id);
  }
  end(id: number, payload: (b: StreamBuilder) => void): this {
    this.u8(0x03).be32(id);
    payload(this);
    return this.footer(id);
  }
  footer(id: number): this {
    return this.footers ? this.u8(0x7e).be32(id) : this;
  }
  command(cmd: number, data: ArrayLike<number> = []): this {
    return this.u8(0x08).be16(cmd).be16(data.length).bytes(data);
  }
  eof(): this {
    return this.u8(0x00);
  }
  vmdesc(json: unknown): this {
    const b = enc.encode(typeof json === "string" ? json : JSON.stringify(json));
    return this.u8(0x06).be32(b.length).bytes(b);
  }
  build(): Uint8Array {
    return new Uint8Array(this.parts);
  }
}

/** A RAM MEM_SIZE record + entries. */
export function memSize(b: StreamBuilder, blocks: readonly [string, number | bigint, ...(number | bigint)[]][], pageSizeBits = 12): StreamBuilder {
  let total = 0n;
  for (const [, len] of blocks) total += BigInt(len);
  void pageSizeBits;
  b.be64(total | 0x04n);
  for (const [name, len, ...extra] of blocks) {
    b.cstr(name).be64(len);
    for (const e of extra) b.be64(e);
  }
  return b;
}

export const RAM = { ZERO: 0x02, MEM_SIZE: 0x04, PAGE: 0x08, EOS: 0x10, CONTINUE: 0x20, XBZRLE: 0x40, HOOK: 0x80, COMPRESS: 0x100 } as const;

/** A page record (ZERO fill / PAGE bytes / XBZRLE data) at `offset` in `block` (undefined = CONTINUE). */
export function page(b: StreamBuilder, flags: number, offset: number, block: string | undefined, body: ArrayLike<number>): StreamBuilder {
  b.be64(BigInt(offset) | BigInt(flags | (block === undefined ? RAM.CONTINUE : 0)));
  if (block !== undefined) b.cstr(block);
  return b.bytes(body);
}
