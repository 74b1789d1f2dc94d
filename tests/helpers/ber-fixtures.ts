// BER test fixtures: a description that uses every field kind and every visit, and a state for it.
import type { Visitor } from "../../src/visitor/visitor.js";
import { F } from "../../src/vmstate/fields.js";
import type { State, VMStateDescription } from "../../src/vmstate/types.js";

const irqState = F.custom("irq_state", "pci irq state", 16, (v: Visitor, n: string, value: unknown) => {
  const arr = (value as number[] | undefined) ?? [0, 0, 0, 0];
  const out: number[] = [];
  const m = v.startArray(n, 4, 4, "int32");
  for (let i = 0; i < m; i++) out.push(v.int32(i, arr[i] ?? 0));
  v.endArray();
  return out;
});
const label = F.custom("label", "counted string", 0, (v: Visitor, n: string, value: unknown) => v.str(n, (value as string | undefined) ?? ""));
export const elem: VMStateDescription = { name: "elem", version: 1, fields: [F.uint16("a"), F.int8("b")] };
const node: VMStateDescription = { name: "node", version: 2, fields: [F.uint32("id"), F.array("mac", "uint8", 6)] };
export const pci: VMStateDescription = { name: "PCIDevice", version: 2, fields: [F.buffer("config", 16, { info: "pci config" }), F.array("irq", "int32", 4)] };
const gval: VMStateDescription = { name: "gval", version: 1, fields: [F.uint32("v")] };
const deep: VMStateDescription = { name: "dev/sub/deep", version: 1, fields: [F.float32("f")] };
const sub: VMStateDescription = { name: "dev/sub", version: 1, fields: [F.int64("t")], subsections: [deep] };
const never: VMStateDescription = { name: "dev/never", version: 1, fields: [F.uint8("nv")], needed: () => false };

export const dev: VMStateDescription = {
  name: "dev",
  version: 3,
  minimumVersion: 1,
  fields: [
    F.bool("flag"),
    F.int8("i8"),
    F.int16("i16"),
    F.int32("i32"),
    F.int64("i64"),
    F.uint8("u8"),
    F.uint16("u16"),
    F.uint32("u32"),
    F.uint64("u64"),
    F.float32("f32"),
    F.float64("f64"),
    F.timer("timer"),
    F.cpuDouble("d"),
    F.uint32Equal("magic"),
    F.uint8("newer", { version: 3 }),
    F.uint16("maybe", { test: (s) => s.flag === true }),
    F.uint16("nope", { test: () => false }),
    F.struct("pci", pci),
    F.structArray("elems", elem, 3),
    F.uint8("n"),
    F.array("var", "uint16", { field: "n" }),
    F.pointerArray("ptrs", "uint32", 3),
    F.pointerArray("sptrs", elem, 2),
    F.bitmap("bm", 130),
    F.qtailq("nodes", node),
    F.gtree("tree", gval),
    F.unused(4),
    F.buffer("blob", 300),
    irqState,
    label,
    F.struct("vs", elem, { structVersion: 1 }),
    { kind: "scalar", name: "cur", key: "cur0", type: "uint16" },
    { kind: "scalar", name: "cur", key: "cur1", type: "uint32" },
  ],
  subsections: [sub, never],
};

export function devState(): State {
  return {
    flag: true,
    i8: -5,
    i16: -300,
    i32: -70000,
    i64: -(2n ** 40n),
    u8: 200,
    u16: 60000,
    u32: 0xfffffffe,
    u64: 2n ** 64n - 1n,
    f32: 1.5,
    f64: Math.PI,
    timer: -1n,
    d: -0,
    magic: 0xcafe,
    newer: 7,
    maybe: 9,
    pci: { config: Uint8Array.from({ length: 16 }, (_, i) => i * 3), irq: [1, -1, 2, -2] },
    elems: [
      { a: 1, b: -1 },
      { a: 2, b: -2 },
      { a: 3, b: -3 },
    ],
    n: 2,
    var: [10, 20],
    ptrs: [1, null, 3],
    sptrs: [null, { a: 5, b: 6 }],
    bm: [1n, 2n ** 63n, 5n],
    nodes: [
      { id: 1, mac: [1, 2, 3, 4, 5, 6] },
      { id: 2, mac: [6, 5, 4, 3, 2, 1] },
    ],
    tree: [
      [5n, { v: 1 }],
      [2n ** 64n - 2n, { v: 2 }],
    ],
    blob: Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff),
    irq_state: [1, 2, 3, -4],
    label: "héllo",
    vs: { a: 9, b: 9 },
    cur0: 0x1234,
    cur1: 0x12345678,
    t: 123n,
    f: 0.25,
  };
}
