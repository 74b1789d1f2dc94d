// TEST-ONLY: walk a whole QEMU 7.2 stream (x86 or ppc64) into the list of its sections as
// analyze-migration.py sees them — every START/FULL section in order of first appearance, RAM with
// its MEM_SIZE block list, spapr/htab and block skipped by their record formats, device payloads
// located with the vmdesc's sizes (wire-format §2, §4, §5, §7, §8). Independent of src/ (its vmdesc types
// aside): it is the yardstick the analyze code is measured against.
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import type { Vmdesc, VmdescDevice, VmdescVmstateDevice } from "../../src/vmstate/vmdesc.js";
import { bodySize } from "./stream-sections.js";

export type StreamSection =
  | { kind: "device"; sectionId: number; idstr: string; instanceId: number; version: number; payload: Uint8Array; offset: number; desc: VmdescDevice }
  | { kind: "ram"; sectionId: number; idstr: string; blocks: [string, bigint][] }
  | { kind: "htab"; sectionId: number; idstr: string }
  | { kind: "block"; sectionId: number; idstr: string };

export interface WholeStream {
  bytes: Uint8Array;
  sections: StreamSection[];
  vmdesc: Vmdesc;
}

const EOF = 0x00,
  START = 0x01,
  PART = 0x02,
  END = 0x03,
  FULL = 0x04,
  VMDESC = 0x06,
  CONFIG = 0x07,
  COMMAND = 0x08,
  FOOTER = 0x7e;

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
  cstr(): string {
    const n = this.u8();
    this.need(n);
    const s = new TextDecoder().decode(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
}

function findVmdesc(b: Uint8Array): { at: number; text: string } {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = b.length - 6; i >= 0; i--) {
    if (b[i] === VMDESC && i + 5 + view.getUint32(i + 1) === b.length && b[i - 1] === EOF) {
      return { at: i, text: new TextDecoder().decode(b.subarray(i + 5)) };
    }
  }
  throw new Error("no vmdesc trailer found");
}

function skipRam(c: Cursor, pageSize: number, blocks: [string, bigint][] | undefined): void {
  const mask = BigInt(pageSize - 1);
  for (;;) {
    const hdr = c.be64();
    const flags = Number(hdr & mask);
    if (flags & 0x10) return;
    if (flags & 0x04) {
      let left = hdr & ~mask;
      while (left > 0n) {
        const name = c.cstr();
        const len = c.be64();
        blocks?.push([name, len]);
        left -= len;
      }
      continue;
    }
    if (!(flags & 0x20)) c.cstr();
    if (flags & 0x02) c.skip(1);
    else if (flags & 0x08) c.skip(pageSize);
    else if (flags & 0x40) {
      c.skip(1);
      c.skip(c.be16());
    } else if (flags & 0x100) c.skip(c.be32());
    else throw new Error(`unknown RAM record flags 0x${flags.toString(16)}`);
  }
}

function skipBlock(c: Cursor): void {
  for (;;) {
    const flags = Number(c.be64() & 0x1ffn);
    if (flags & 0x02) return;
    if (flags & 0x01) {
      c.cstr();
      if (!(flags & 0x08)) c.skip(1 << 20);
    }
  }
}

function skipHtab(c: Cursor, start: boolean): void {
  const header = c.be32();
  if (start || header !== 0) return;
  for (;;) {
    const index = c.be32();
    const nValid = c.be16();
    const nInvalid = c.be16();
    if (index === 0 && nValid === 0 && nInvalid === 0) return;
    c.skip(16 * nValid);
  }
}

export function parseWholeStream(bytes: Uint8Array): WholeStream {
  const { at, text } = findVmdesc(bytes);
  const vmdesc = JSON.parse(text) as WholeStream["vmdesc"];
  const c = new Cursor(bytes.subarray(0, at));
  if (c.be32() !== 0x5145564d || c.be32() !== 3) throw new Error("not a QEVM version 3 stream");
  if (c.u8() === CONFIG) c.skip(c.be32());
  else c.pos--;
  const sections: StreamSection[] = [];
  const byId = new Map<number, StreamSection>();
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
    let sec: StreamSection;
    if (type === START || type === FULL) {
      const idstr = c.cstr();
      const instanceId = c.be32();
      const version = c.be32();
      if (idstr === "ram") {
        const blocks: [string, bigint][] = [];
        sec = { kind: "ram", sectionId: id, idstr, blocks };
        skipRam(c, vmdesc.page_size, blocks);
      } else if (idstr === "spapr/htab") {
        sec = { kind: "htab", sectionId: id, idstr };
        skipHtab(c, true);
      } else if (idstr === "block") {
        sec = { kind: "block", sectionId: id, idstr };
        skipBlock(c);
      } else {
        const desc = vmdesc.devices[device++]!;
        if (desc.name !== idstr || desc.instance_id !== instanceId) throw new Error(`section ${idstr} does not match vmdesc ${desc.name}`);
        const size = typeof desc.size === "number" ? desc.size : bodySize(desc as VmdescVmstateDevice);
        const offset = c.pos;
        c.skip(size);
        sec = { kind: "device", sectionId: id, idstr, instanceId, version, payload: bytes.subarray(offset, offset + size), offset, desc };
      }
      if (!byId.has(id)) sections.push(sec);
      byId.set(id, sec);
    } else if (type === PART || type === END) {
      const s = byId.get(id);
      if (!s) throw new Error(`PART/END of unknown section ${id}`);
      if (s.kind === "ram") skipRam(c, vmdesc.page_size, undefined);
      else if (s.kind === "htab") skipHtab(c, false);
      else if (s.kind === "block") skipBlock(c);
      else throw new Error(`PART/END of device section ${s.idstr}`);
    } else {
      throw new Error(`unknown section type 0x${type.toString(16)} at byte ${c.pos - 5}`);
    }
    if (c.u8() !== FOOTER || c.be32() !== id) throw new Error(`bad footer after section ${id} at byte ${c.pos}`);
  }
  if (c.pos !== at) throw new Error("EOF before the vmdesc");
  return { bytes, sections, vmdesc };
}

export function readWholeStream(path: string | URL): WholeStream {
  return parseWholeStream(new Uint8Array(gunzipSync(readFileSync(path))));
}
