// Seeded mutations of whole inputs, on top of the byte mutations of tests/helpers/mutate.ts: splices between two
// seeds, integer fields set to boundary values (be16/be32/be64, little-endian too), repeated chunks, and
// structural edits of the vmdesc JSON trailer (sizes 0, huge counts, wrong types, deleted keys, duplicated
// entries). docs/fuzzing.md, "Mutations".
import { DEFAULT_LIMITS } from "../../src/savevm/constants.js";
import { findVmdescTrailer } from "../../src/savevm/vmdesc.js";
import { concat } from "../helpers/bytes.js";
import { mutate } from "../helpers/mutate.js";
import type { SeededRandom } from "../helpers/random.js";
import { INTERESTING } from "./generators.js";

/** An input at most this long after mutation (repeats and splices would grow without end). */
const MAX_BYTES = 4 << 20;

function splice(a: Uint8Array, b: Uint8Array, rng: SeededRandom): Uint8Array {
  const cutA = rng.int(a.length + 1);
  const fromB = rng.int(b.length + 1);
  return concat([a.subarray(0, cutA), b.subarray(fromB, fromB + rng.int(b.length - fromB + 1))]);
}

function integerField(b: Uint8Array, rng: SeededRandom): Uint8Array {
  const out = b.slice();
  const width = rng.pick([1, 2, 4, 8]);
  if (out.length < width) return out;
  const at = rng.int(out.length - width + 1);
  const base = BigInt(rng.pick(INTERESTING));
  const v = BigInt.asUintN(64, rng.int(4) === 0 ? base - 1n : rng.int(8) === 0 ? -base : base);
  const little = rng.int(8) === 0;
  for (let i = 0; i < width; i++) {
    const byte = Number((v >> BigInt(8 * i)) & 0xffn);
    out[little ? at + i : at + width - 1 - i] = byte;
  }
  return out;
}

function repeatChunk(b: Uint8Array, rng: SeededRandom): Uint8Array {
  const at = rng.int(b.length + 1);
  const chunk = b.subarray(at, at + 1 + rng.int(rng.int(4) === 0 ? 4096 : 64));
  const times = 1 + rng.int(rng.int(4) === 0 ? 2000 : 8);
  if (chunk.length * times > MAX_BYTES) return b;
  return concat([b.subarray(0, at + chunk.length), ...new Array<Uint8Array>(times).fill(chunk), b.subarray(at + chunk.length)]);
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A random node of `root` (objects and arrays) with the key or index that leads to it from its parent. */
function pickNode(root: Json, rng: SeededRandom): { parent: Json[] | Record<string, Json>; key: string | number } | undefined {
  const found: { parent: Json[] | Record<string, Json>; key: string | number }[] = [];
  const walk = (v: Json): void => {
    if (found.length > 5000 || v === null || typeof v !== "object") return;
    if (Array.isArray(v))
      v.forEach((x, i) => {
        found.push({ parent: v, key: i });
        walk(x);
      });
    else
      for (const k of Object.keys(v)) {
        found.push({ parent: v, key: k });
        walk(v[k]!);
      }
  };
  walk(root);
  return found.length > 0 ? rng.pick(found) : undefined;
}

const WRONG: Json[] = [null, true, -1, 0.5, "", "x", [], {}, 1e300, "4096"];

function vmdescJson(b: Uint8Array, rng: SeededRandom): Uint8Array {
  const tail = b.subarray(Math.max(0, b.length - (1 << 20)));
  const found = findVmdescTrailer(tail, DEFAULT_LIMITS.vmdescBytes, DEFAULT_LIMITS.vmdescDepth);
  if (!found) return b;
  const json = found.json as unknown as Json;
  const n = 1 + rng.int(3);
  for (let i = 0; i < n; i++) {
    const node = pickNode(json, rng);
    if (!node) break;
    const { parent, key } = node;
    const set = (v: Json): void => {
      (parent as Record<string | number, Json>)[key] = v;
    };
    switch (rng.int(7)) {
      case 0: // a count or size at a boundary
        set(rng.pick(INTERESTING));
        break;
      case 1:
        set(rng.pick(WRONG));
        break;
      case 2:
        if (Array.isArray(parent)) parent.splice(key as number, 1);
        else delete parent[key];
        break;
      case 3: {
        // an entry repeated: many devices, fields or subsections
        if (!Array.isArray(parent)) break;
        const copies = 1 + rng.int(rng.int(4) === 0 ? 5000 : 10);
        parent.splice(key as number, 0, ...new Array<Json>(copies).fill(parent[key as number]!));
        break;
      }
      case 4: {
        // nest the value deeper (vmdesc depth limit)
        let v = (parent as Record<string | number, Json>)[key]!;
        for (let d = rng.int(80); d > 0; d--) v = { fields: [v] };
        set(v);
        break;
      }
      case 5:
        if (!Array.isArray(parent) && typeof parent[key] === "number") set("size" in parent ? 0 : rng.pick(INTERESTING));
        else set(rng.pick(INTERESTING));
        break;
      default:
        // array_len on a field that had none
        if (!Array.isArray(parent)) parent["array_len"] = rng.pick(INTERESTING);
    }
  }
  const text = new TextEncoder().encode(JSON.stringify(json));
  const at = b.length - tail.length + found.at;
  const len = [text.length >>> 24, (text.length >>> 16) & 255, (text.length >>> 8) & 255, text.length & 255];
  return concat([b.subarray(0, at + 1), len, text]);
}

export type MutationKind = "byte" | "splice" | "integer" | "repeat" | "vmdesc";
const KINDS: MutationKind[] = ["byte", "byte", "byte", "splice", "integer", "integer", "repeat", "vmdesc"];

/** 1 to 4 mutations of `input` (`other` is the second seed of a splice). */
export function mutateInput(input: Uint8Array, other: Uint8Array, rng: SeededRandom): Uint8Array {
  let b = input;
  for (let n = 1 + rng.int(rng.int(3) === 0 ? 4 : 1); n > 0; n--) {
    const kind = rng.pick(KINDS);
    if (kind === "byte") b = b.length > 0 ? mutate(b, rng).bytes : rng.bytes(rng.int(16));
    else if (kind === "splice") b = splice(b, other, rng);
    else if (kind === "integer") b = integerField(b, rng);
    else if (kind === "repeat") b = repeatChunk(b, rng);
    else b = vmdescJson(b, rng);
    if (b.length > MAX_BYTES) b = b.subarray(0, MAX_BYTES);
  }
  return b;
}
