// TEST-ONLY: split a real QEMU 7.2 stream into its device FULL sections, so the device descriptions
// can be checked against real bytes. Deliberately independent of src/ but for the vmdesc types (the
// decoder itself relies on the descriptions under test, so it cannot be their yardstick): "ram" and
// "block" sections are skipped by parsing their records, and the size of every device payload is
// taken from the stream's own vmdesc JSON (wire-format §2, §4, §5, §7).
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import type { Vmdesc, VmdescBody, VmdescDevice, VmdescVmstateDevice } from "../../src/vmstate/vmdesc.js";

export interface DeviceSection {
  idstr: string;
  sectionId: number;
  instanceId: number;
  version: number;
  /** The payload bytes (between the section header and its footer). */
  payload: Uint8Array;
  /** Absolute offset of the payload's first byte in the stream. */
  offset: number;
  /** The section's entry of the vmdesc JSON (parsed). */
  desc: VmdescDevice;
}

export interface ParsedStream {
  bytes: Uint8Array;
  sections: DeviceSection[];
  /** The vmdesc JSON text exactly as QEMU wrote it. */
  vmdescText: string;
  vmdesc: Vmdesc;
}

const MAGIC = 0x5145564d;
const EOF = 0x00,
  START = 0x01,
  PART = 0x02,
  END = 0x03,
  FULL = 0x04,
  VMDESC = 0x06,
  CONFIG = 0x07,
  COMMAND = 0x08,
  FOOTER = 0x7e;
const PAGE = 4096;
const BLK_DEVICE_BLOCK = 0x01,
  BLK_EOS = 0x02,
  BLK_ZERO_BLOCK = 0x08,
  BLK_CHUNK = 1 << 20;
const RAM_ZERO = 0x02,
  RAM_MEM_SIZE = 0x04,
  RAM_PAGE = 0x08,
  RAM_EOS = 0x10,
  RAM_CONTINUE = 0x20,
  RAM_XBZRLE = 0x40,
  RAM_COMPRESS = 0x100;

class Cursor {
  pos = 0;
  private readonly view: DataView;
  constructor(readonly b: Uint8Array) {
    this.view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  need(n: number): void {
    if (this.pos + n > this.b.length) throw new Error(`stream truncated at byte ${this.pos}: need ${n}`);
  }
  u8(): number {
    this.need(1);
    return this.b[this.pos++]!;
  }
  be16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }
  be32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }
  be64(): bigint {
    this.need(8);
    const v = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return v;
  }
  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }
  /** u8 length + bytes. */
  cstr(): string {
    const n = this.u8();
    this.need(n);
    const s = new TextDecoder().decode(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
}

/** The vmdesc trailer: the 0x06 whose be32 length reaches exactly to the end of the file. */
function findVmdesc(b: Uint8Array): { at: number; text: string } {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = b.length - 6; i >= 0; i--) {
    if (b[i] === VMDESC && i + 5 + view.getUint32(i + 1) === b.length && b[i - 1] === EOF) {
      return { at: i, text: new TextDecoder().decode(b.subarray(i + 5)) };
    }
  }
  throw new Error("no vmdesc trailer found");
}

/** Skip one RAM section payload: records up to and including EOS. */
function skipRam(c: Cursor): void {
  for (;;) {
    const hdr = c.be64();
    const flags = Number(hdr & BigInt(PAGE - 1));
    if (flags & RAM_EOS) return;
    if (flags & RAM_MEM_SIZE) {
      let left = hdr & ~BigInt(PAGE - 1);
      while (left > 0n) {
        c.cstr();
        left -= c.be64();
      }
      continue;
    }
    if (!(flags & RAM_CONTINUE)) c.cstr();
    if (flags & RAM_ZERO) c.skip(1);
    else if (flags & RAM_PAGE) c.skip(PAGE);
    else if (flags & RAM_XBZRLE) {
      c.skip(1);
      c.skip(c.be16());
    } else if (flags & RAM_COMPRESS) c.skip(c.be32());
    else throw new Error(`unknown RAM record flags 0x${flags.toString(16)} at byte ${c.pos - 8}`);
  }
}

/** Skip one block-migration section payload: records up to and including EOS (wire-format §7). */
function skipBlock(c: Cursor): void {
  for (;;) {
    const flags = Number(c.be64() & 0x1ffn);
    if (flags & BLK_EOS) return;
    if (flags & BLK_DEVICE_BLOCK) {
      c.cstr();
      if (!(flags & BLK_ZERO_BLOCK)) c.skip(BLK_CHUNK);
    }
  }
}

/** The live (iterative) sections this helper can skip, by idstr. */
const SKIP_LIVE: Record<string, (c: Cursor) => void> = { ram: skipRam, block: skipBlock };

/** Bytes of one vmdesc body (fields, then subsections with their headers). */
export function bodySize(body: Pick<VmdescBody, "fields" | "subsections">): number {
  let n = 0;
  for (const f of body.fields) n += f.size * (f.array_len ?? 1);
  for (const s of body.subsections ?? []) n += 1 + 1 + s.vmsd_name.length + 4 + bodySize(s);
  return n;
}

export function parseStream(bytes: Uint8Array): ParsedStream {
  const { at: vmdescAt, text: vmdescText } = findVmdesc(bytes);
  const vmdesc = JSON.parse(vmdescText) as ParsedStream["vmdesc"];
  const c = new Cursor(bytes.subarray(0, vmdescAt));
  if (c.be32() !== MAGIC || c.be32() !== 3) throw new Error("not a QEVM version 3 stream");
  if (c.u8() === CONFIG) c.skip(c.be32());
  else c.pos--;

  const sections: DeviceSection[] = [];
  const names = new Map<number, string>();
  let device = 0;
  for (;;) {
    const type = c.u8();
    if (type === EOF) break;
    if (type === COMMAND) {
      c.be16();
      c.skip(c.be16());
      continue;
    }
    const id = c.be32();
    let idstr: string;
    if (type === START || type === FULL) {
      idstr = c.cstr();
      const instanceId = c.be32();
      const version = c.be32();
      names.set(id, idstr);
      if (type === FULL && !SKIP_LIVE[idstr]) {
        const desc = vmdesc.devices[device++];
        if (!desc || desc.name !== idstr || desc.instance_id !== instanceId) {
          throw new Error(`FULL section ${idstr}/${instanceId} does not match vmdesc entry ${desc?.name}/${desc?.instance_id}`);
        }
        const size = typeof desc.size === "number" ? desc.size : bodySize(desc as VmdescVmstateDevice);
        const offset = c.pos;
        c.skip(size);
        sections.push({ idstr, sectionId: id, instanceId, version, payload: bytes.subarray(offset, offset + size), offset, desc });
      } else if (SKIP_LIVE[idstr]) {
        SKIP_LIVE[idstr](c);
      } else {
        throw new Error(`no way to skip the START section of ${idstr}`);
      }
    } else if (type === PART || type === END) {
      idstr = names.get(id) ?? "?";
      const skip = SKIP_LIVE[idstr];
      if (!skip) throw new Error(`no way to skip a PART/END section of ${idstr}`);
      skip(c);
    } else {
      throw new Error(`unknown section type 0x${type.toString(16)} at byte ${c.pos - 5}`);
    }
    if (c.u8() !== FOOTER || c.be32() !== id) throw new Error(`bad footer after section ${id} (${idstr}) at byte ${c.pos}`);
  }
  if (c.pos !== vmdescAt) throw new Error(`EOF at byte ${c.pos - 1}, vmdesc at ${vmdescAt}`);
  if (device !== vmdesc.devices.length) throw new Error(`${device} FULL sections, ${vmdesc.devices.length} vmdesc entries`);
  return { bytes, sections, vmdescText, vmdesc };
}

export function readStream(path: string | URL): ParsedStream {
  return parseStream(new Uint8Array(gunzipSync(readFileSync(path))));
}

/**
 * A parsed JSON value written back as QEMU's JSON writer writes it (wire-format §4.1): ", " between
 * members, ": " after keys, key order as parsed, upper-case \uXXXX escapes.
 */
export function qemuJsonText(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "string") return qemuQuote(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return "[" + v.map(qemuJsonText).join(", ") + "]";
  const o = v as Record<string, unknown>;
  return (
    "{" +
    Object.keys(o)
      .map((k) => `${qemuQuote(k)}: ${qemuJsonText(o[k])}`)
      .join(", ") +
    "}"
  );
}

function qemuQuote(s: string): string {
  let o = '"';
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    if (ch === '"') o += '\\"';
    else if (ch === "\\") o += "\\\\";
    else if (ch === "\n") o += "\\n";
    else if (ch === "\r") o += "\\r";
    else if (ch === "\t") o += "\\t";
    else if (ch === "\b") o += "\\b";
    else if (ch === "\f") o += "\\f";
    else if (c < 0x20 || c >= 0x7f) {
      for (let i = 0; i < ch.length; i++) o += "\\u" + ch.charCodeAt(i).toString(16).toUpperCase().padStart(4, "0");
    } else o += ch;
  }
  return o + '"';
}
