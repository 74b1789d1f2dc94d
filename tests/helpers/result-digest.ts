// TEST-ONLY: a canonical, comparable form of a DecodeResult (bytes as sha256, bigints as strings, no kernels,
// no functions), so results of differently split inputs can be compared with toEqual; and its iterative
// sections in short (as fixtures' reference.json lists them).
import type { DecodeResult } from "../../src/savevm/types.js";
import { sha256 } from "./bytes.js";

function canon(v: unknown, depth = 0): unknown {
  if (depth > 200) return "<deep>";
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "function") return undefined;
  if (v instanceof Uint8Array) return `u8[${v.length}]:${sha256(v)}`;
  if (Array.isArray(v)) return v.map((e) => canon(e, depth + 1));
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) {
      if (k === "kernels" || k === "description" || k === "ptr") continue;
      const c = canon((v as Record<string, unknown>)[k], depth + 1);
      if (c !== undefined) out[k] = c;
    }
    return out;
  }
  return v;
}

/** Everything in the result except the kernels; materialised RAM block data as sha256. */
export function digest(r: DecodeResult): unknown {
  const base = canon(r) as Record<string, unknown>;
  const ram = r.live.ram as { blocks: { name: string; data?: Uint8Array }[] } | undefined;
  if (ram) base.ramData = ram.blocks.map((b) => (b.data ? sha256(b.data) : null));
  base.deviceDescriptions = r.devices.map((d) => d.description.name);
  return base;
}

/** The iterative sections in stream order, runs counted: ["START ram x1", "PART ram x84", "END ram x1"]. */
export function iterativeSequence(r: DecodeResult): string[] {
  const out: string[] = [];
  let last = "";
  let count = 0;
  for (const s of r.sections) {
    if (s.type === "full") continue;
    const key = `${s.type.toUpperCase()} ${s.idstr}`;
    if (key === last) count++;
    else {
      if (last) out.push(`${last} x${count}`);
      last = key;
      count = 1;
    }
  }
  if (last) out.push(`${last} x${count}`);
  return out;
}
