// The vmdesc trailer (wire-format §2.9, §4): `0x06 be32 len JSON` after EOF. QEMU never reads it, so it is
// untrusted input here: length and nesting depth are capped, the text must be UTF-8 JSON, and the shape is
// checked before use. Duplicate keys (tmp/vstruct/qtailq/gtree objects) are tolerated: JSON.parse keeps the
// last one, the raw text is kept too. Browser-safe.
import { VmstreamError } from "../io/errors.js";
import type { Vmdesc, VmdescBody, VmdescDevice } from "../vmstate/vmdesc.js";
import { type DecoderLimits, SEC } from "./constants.js";
import type { AtHand } from "./input-window.js";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Parse vmdesc JSON text (bytes or string). Throws VmstreamError (BAD_VALUE / LIMIT) with `offset` = the offset
 * of the JSON's first byte when given.
 */
export function parseVmdescJson(input: string | Uint8Array, maxDepth: number, offset?: number): { text: string; json: Vmdesc } {
  let text: string;
  if (typeof input === "string") text = input;
  else {
    try {
      text = utf8.decode(input);
    } catch {
      throw new VmstreamError("BAD_VALUE", "vmdesc is not valid UTF-8", { offset });
    }
  }
  const depth = jsonDepth(text);
  if (depth > maxDepth) throw new VmstreamError("LIMIT", "vmdesc JSON nested too deeply", { offset, detail: `depth ${depth} > ${maxDepth}` });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new VmstreamError("BAD_VALUE", "vmdesc is not valid JSON", { offset, detail: e instanceof Error ? e.message : String(e) });
  }
  const why = checkDocument(json);
  if (why) throw new VmstreamError("BAD_VALUE", "vmdesc JSON has an unexpected shape", { offset, detail: why });
  return { text, json: json as Vmdesc };
}

/** Maximum nesting of objects/arrays, strings skipped. */
function jsonDepth(text: string): number {
  let d = 0;
  let max = 0;
  let inStr = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inStr) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inStr = false;
    } else if (c === 0x22) inStr = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++d > max) max = d;
    } else if (c === 0x7d || c === 0x5d) d--;
  }
  return max;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** Top-level shape: {page_size, devices: [{name: string, instance_id: uint32, ...}]}. Field lists are checked when used. */
function checkDocument(j: unknown): string | undefined {
  if (!isObj(j)) return "not an object";
  if (!isCount(j.page_size)) return "page_size is not a non-negative integer";
  if (!Array.isArray(j.devices)) return "devices is not an array";
  for (let i = 0; i < j.devices.length; i++) {
    const d: unknown = j.devices[i];
    if (!isObj(d)) return `devices[${i}] is not an object`;
    if (typeof d.name !== "string") return `devices[${i}].name is not a string`;
    if (!isCount(d.instance_id) || d.instance_id > 0xffffffff) return `devices[${i}].instance_id is not a uint32`;
    if (d.fields !== undefined && !Array.isArray(d.fields)) return `devices[${i}].fields is not an array`;
  }
  return undefined;
}

/**
 * Find the vmdesc trailer at the end of `b` (the bytes from some point before EOF to the end of the stream):
 * a 0x06 preceded by the EOF byte 0x00 whose be32 length reaches exactly the end, and whose JSON parses.
 * One backward scan: JSON text holds no control byte but tab, LF and CR, and every candidate brings one (its
 * EOF byte), so once one lies inside the candidate text no lower candidate can be the trailer — at most a few
 * candidates are parsed, and the search is linear in `b`.
 */
export function findVmdescTrailer(b: Uint8Array, maxLen: number, maxDepth: number): { at: number; text: string; json: Vmdesc } | undefined {
  const end = b.length;
  const lowest = Math.max(1, end - 5 - maxLen);
  for (let i = end - 5; i >= lowest; i--) {
    // byte i + 5 has just joined the candidate text [i + 5, end)
    if (i + 5 < end && notInJson(b[i + 5]!)) return undefined;
    if (b[i] !== SEC.VMDESCRIPTION || b[i - 1] !== SEC.EOF) continue;
    const len = ((b[i + 1]! << 24) | (b[i + 2]! << 16) | (b[i + 3]! << 8) | b[i + 4]!) >>> 0;
    if (i + 5 + len !== end || b[i + 5] !== 0x7b) continue;
    try {
      const { text, json } = parseVmdescJson(b.subarray(i + 5, end), maxDepth);
      return { at: i, text, json };
    } catch {
      // not this one
    }
  }
  return undefined;
}

/** A byte that cannot appear in JSON text (a control character other than JSON's whitespace). */
function notInJson(c: number): boolean {
  return c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d;
}

const enc = new TextEncoder();

/** Payload bytes of a vmdesc device entry (fields, then subsections with their headers). Throws BAD_VALUE / LIMIT. */
export function vmdescPayloadSize(d: VmdescDevice | VmdescBody, limits: Pick<DecoderLimits, "deviceBytes" | "vmdescDepth">): number {
  const walk = (b: VmdescDevice | VmdescBody, depth: number): number => {
    if (depth > limits.vmdescDepth) throw new VmstreamError("LIMIT", "vmdesc entry nested too deeply");
    let n = 0;
    const fields = b.fields ?? [];
    if (!Array.isArray(fields)) throw new VmstreamError("BAD_VALUE", "vmdesc fields is not an array");
    for (const f of fields) {
      if (typeof f !== "object" || f === null) throw new VmstreamError("BAD_VALUE", "vmdesc field is not an object");
      if (!isCount(f.size)) throw new VmstreamError("BAD_VALUE", "vmdesc field size is not a non-negative integer", { detail: String(f.name) });
      const count = f.array_len === undefined ? 1 : f.array_len;
      if (!isCount(count)) throw new VmstreamError("BAD_VALUE", "vmdesc array_len is not a non-negative integer", { detail: String(f.name) });
      n += f.size * count;
      if (n > limits.deviceBytes)
        throw new VmstreamError("LIMIT", "vmdesc entry describes too many bytes", { detail: `> ${limits.deviceBytes} (limits.deviceBytes)` });
    }
    const subs = b.subsections ?? [];
    if (!Array.isArray(subs)) throw new VmstreamError("BAD_VALUE", "vmdesc subsections is not an array");
    for (const s of subs) {
      if (typeof s !== "object" || s === null || typeof s.vmsd_name !== "string") throw new VmstreamError("BAD_VALUE", "vmdesc subsection without a vmsd_name");
      const nameLen = enc.encode(s.vmsd_name).length;
      if (nameLen === 0 || nameLen > 255) throw new VmstreamError("BAD_VALUE", "vmdesc subsection name length is not 1..255");
      n += 1 + 1 + nameLen + 4 + walk(s, depth + 1);
      if (n > limits.deviceBytes)
        throw new VmstreamError("LIMIT", "vmdesc entry describes too many bytes", { detail: `> ${limits.deviceBytes} (limits.deviceBytes)` });
    }
    return n;
  };
  return walk(d, 0);
}

/** The vmdesc trailer at the start of `input` (its 0x06 at byte 0): length and JSON, or how many bytes to wait for. */
export function readVmdescTrailer(
  input: AtHand,
  limits: Pick<DecoderLimits, "vmdescBytes" | "vmdescDepth">,
): { need: number } | { length: number; text: string; json: Vmdesc } {
  if (input.n < 5) return { need: 5 };
  const length = input.reader(1, 5).be32();
  if (length > limits.vmdescBytes) {
    throw new VmstreamError("LIMIT", "vmdesc trailer too large", { offset: input.offset, detail: `${length} > ${limits.vmdescBytes} (limits.vmdescBytes)` });
  }
  if (input.n < 5 + length) return { need: 5 + length };
  return { length, ...parseVmdescJson(input.reader(5, 5 + length).bytes(length), limits.vmdescDepth, input.offset + 5) };
}
