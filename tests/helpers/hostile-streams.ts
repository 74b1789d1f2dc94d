// TEST-ONLY: small crafted streams that try to make the decoder work or allocate far more than their size
// (issue #13, item 1). Each builder is written from the wire format (wire-format §2, §4), not from src/.
import { StreamBuilder } from "./stream-builder.js";

const enc = new TextEncoder();

/** A stream of device sections "dev" (instance i, version 1) with the given payloads, EOF and a vmdesc listing `devices`. */
function devicesStream(payloads: readonly Uint8Array[], devices: readonly unknown[]): Uint8Array {
  const b = new StreamBuilder().header();
  payloads.forEach((p, i) => b.full(i, "dev", 1, (s) => s.bytes(p), i));
  return b.eof().vmdesc({ page_size: 4096, devices }).build();
}

/** A vmdesc device entry "dev" (instance `i`) with `fields`, and `subsections` when given. */
function entry(i: number, fields: readonly unknown[], subsections?: readonly unknown[]): Record<string, unknown> {
  return { name: "dev", instance_id: i, vmsd_name: "dev", version: 1, fields, ...(subsections ? { subsections } : {}) };
}

/** An empty struct body named `name` (fields that read nothing). */
const emptyStruct = (name: string): Record<string, unknown> => ({ vmsd_name: name, version: 1, fields: [] });

/**
 * Elements that read nothing, `count` of them in each of `arrays` fields: zero-length buffers ("buffer"),
 * empty structs ("struct"), or structs whose only field is a zero-length buffer ("nested"). QEMU's vmdesc
 * format lets a device describe this (array_len with size 0); its payload is empty.
 */
export function emptyElementsStream(count: number, arrays = 1, kind: "buffer" | "struct" | "nested" = "buffer", sections = 1): Uint8Array {
  const field = (k: number): Record<string, unknown> => {
    const name = `a${k}`;
    if (kind === "buffer") return { name, array_len: count, type: "buffer", size: 0 };
    const struct = kind === "struct" ? emptyStruct("e") : { ...emptyStruct("e"), fields: [{ name: "z", type: "buffer", size: 0 }] };
    return { name, array_len: count, type: "struct", size: 0, struct };
  };
  const fields = Array.from({ length: arrays }, (_, k) => field(k));
  const payloads = Array.from({ length: sections }, () => new Uint8Array(0));
  return devicesStream(
    payloads,
    payloads.map((_, i) => entry(i, fields)),
  );
}

/**
 * One device whose payload repeats a subsection `repeats` times (each 0x05, name, version: 10 bytes); the
 * subsection holds `count` empty structs, so each repeat asks for `count` visits for its 10 bytes.
 */
export function repeatedSubsectionStream(repeats: number, count: number): Uint8Array {
  const name = "dev/sub";
  const payload = new StreamBuilder();
  for (let r = 0; r < repeats; r++) payload.u8(0x05).cstr(name).be32(1);
  const sub = { vmsd_name: name, version: 1, fields: [{ name: "e", array_len: count, type: "struct", size: 0, struct: emptyStruct("e") }] };
  return devicesStream([payload.build()], [entry(0, [], [sub])]);
}

/**
 * `n` one-byte device sections, all named "dev" with instance 0, and a vmdesc listing them: every section
 * matches the first unused entry of its name (a scan from the first entry each time is quadratic).
 */
export function manyDevicesStream(n: number): Uint8Array {
  const b = new StreamBuilder().header();
  for (let i = 0; i < n; i++) b.full(i, "dev", 1, (s) => s.u8(i));
  const one = entry(0, [{ name: "x", type: "uint8", size: 1 }]);
  return b
    .eof()
    .vmdesc({ page_size: 4096, devices: Array.from({ length: n }, () => one) })
    .build();
}

/**
 * A file header, then `size` bytes of would-be vmdesc trailers: `00 06 <be32 length to the end> {`, as many as
 * fit, padded with spaces (valid UTF-8, no control byte except the candidates' own). None is a trailer: the
 * stream is broken right after its header. A search that parses each candidate's JSON is quadratic.
 */
export function trailerCandidatesStream(size: number): Uint8Array {
  const b = new Uint8Array(size).fill(0x20);
  b.set(enc.encode("QEVM"));
  b.set([0, 0, 0, 3], 4);
  for (let i = 9; i + 6 < size; ) {
    const len = size - i - 5;
    // keep the length bytes ASCII so that every candidate's text is valid UTF-8 (a decode cannot stop early)
    if ((len | (len >>> 8) | (len >>> 16) | (len >>> 24)) & 0x80) {
      i++;
      continue;
    }
    b.set([0x00, 0x06, len >>> 24, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff, 0x7b], i - 1);
    i += 7;
  }
  return b;
}

/**
 * `sections` device sections that each read `bytes` payload bytes, then walk `perByte` x `bytes` empty structs:
 * as much work as the decoder's visit budget allows (docs/decoder.md, "Bounds"), and accepted.
 */
export function budgetEdgeStream(sections: number, bytes: number, perByte: number): Uint8Array {
  const fields = [
    { name: "data", type: "buffer", size: bytes },
    { name: "e", array_len: perByte * bytes, type: "struct", size: 0, struct: emptyStruct("e") },
  ];
  const payloads = Array.from({ length: sections }, (_, i) => new Uint8Array(bytes).fill(i));
  return devicesStream(
    payloads,
    payloads.map((_, i) => entry(i, fields)),
  );
}

/**
 * One device whose vmdesc lists `listed` subsections and whose payload holds the last of them `repeats` times
 * (each an empty body): finding a subsection by a scan of the list is quadratic.
 */
export function manySubsectionsStream(listed: number, repeats: number): Uint8Array {
  const names = Array.from({ length: listed }, (_, k) => `dev/s${k}`);
  const payload = new StreamBuilder();
  for (let r = 0; r < repeats; r++)
    payload
      .u8(0x05)
      .cstr(names[listed - 1]!)
      .be32(1);
  const subs = names.map((name) => ({ vmsd_name: name, version: 1, fields: [] }));
  return devicesStream([payload.build()], [entry(0, [], subs)]);
}
