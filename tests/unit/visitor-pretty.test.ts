import { describe, expect, it } from "vitest";
import { hexOfFloat, hexOfInt, PrettyVisitor } from "../../src/visitor/pretty.js";
import type { Visitor } from "../../src/visitor/visitor.js";
import { saveState } from "../../src/vmstate/engine.js";
import { F } from "../../src/vmstate/fields.js";
import { prettyPrint } from "../../src/vmstate/symmetry.js";
import type { State, VMStateDescription } from "../../src/vmstate/types.js";

// A local PIIX3 in the shape of QEMU 7.2's hw/isa/piix3.c + hw/pci/pci.c.
const pciIrqState = F.custom(
  "irq_state",
  "pci irq state",
  16,
  (v: Visitor, name: string, value: unknown) => {
    const arr = (value as number[] | undefined) ?? [0, 0, 0, 0];
    const out: number[] = [];
    const n = v.startArray(name, 4, 4, "uint32");
    for (let i = 0; i < n; i++) out.push(v.uint32(i, arr[i] ?? 0));
    v.endArray();
    return out;
  },
  { version: 2 },
);

const PCIDevice: VMStateDescription = {
  name: "PCIDevice",
  version: 2,
  minimumVersion: 1,
  fields: [
    F.int32Le("version_id"),
    F.buffer("config", 256, { info: "pci config", test: (s) => !s.express }),
    F.buffer("config", 4096, { info: "pci config", key: "configExpress", test: (s) => !!s.express }),
    pciIrqState,
  ],
};

const PIIX3: VMStateDescription = {
  name: "PIIX3",
  version: 3,
  minimumVersion: 2,
  fields: [F.struct("dev", PCIDevice), F.array("pci_irq_levels_vmstate", "int32", 4, { version: 3 })],
};

const i8259: VMStateDescription = {
  name: "i8259",
  version: 1,
  fields: [F.uint8("last_irr"), F.uint8("irr")],
};

const bootpClient: VMStateDescription = {
  name: "bootp_client",
  version: 1,
  fields: [F.uint16("allocated"), F.buffer("macaddr", 6)],
};

const slirp: VMStateDescription = {
  name: "slirp",
  version: 4,
  fields: [F.struct("bootp", { name: "bootp", version: 1, fields: [F.structArray("bootp_clients", bootpClient, 16, { elemSize: 8 })] })],
};

function piix3State(): State {
  const config = new Uint8Array(256);
  config[0] = 0x86;
  config[1] = 0x80;
  return { dev: { version_id: 2, config, irq_state: [0, 0, 0, 0] }, pci_irq_levels_vmstate: [0, 1, 0, 0] };
}

describe("PrettyVisitor: the DESIGN.md trace lines", () => {
  it("PIIX3: pci config as 256 uint8s, pci irq state as 4 uint32s", () => {
    const lines = prettyPrint(PIIX3, piix3State());
    expect(lines).toContain("PIIX3.PCIDevice.config(256)(1).[255] = (uint8) 0x0");
    expect(lines).toContain("PIIX3.PCIDevice.irq_state(4)(4).[0] = (uint32) 0x0");
    expect(lines.slice(0, 3)).toEqual([
      "PIIX3.PCIDevice.version_id = (int32) 0x2",
      "PIIX3.PCIDevice.config(256)(1).[0] = (uint8) 0x86",
      "PIIX3.PCIDevice.config(256)(1).[1] = (uint8) 0x80",
    ]);
    expect(lines.slice(-4)).toEqual([
      "PIIX3.pci_irq_levels_vmstate(4)(4).[0] = (int32) 0x0",
      "PIIX3.pci_irq_levels_vmstate(4)(4).[1] = (int32) 0x1",
      "PIIX3.pci_irq_levels_vmstate(4)(4).[2] = (int32) 0x0",
      "PIIX3.pci_irq_levels_vmstate(4)(4).[3] = (int32) 0x0",
    ]);
    expect(lines).toHaveLength(1 + 256 + 4 + 4);
  });

  it("i8259.last_irr", () => {
    expect(prettyPrint(i8259, { last_irr: 1, irr: 0 })).toEqual(["i8259.last_irr = (uint8) 0x1", "i8259.irr = (uint8) 0x0"]);
  });

  it("slirp: struct array elements with their C size, a buffer inside", () => {
    const clients = Array.from({ length: 16 }, (_, i) => ({ allocated: i === 0 ? 1 : 0, macaddr: new Uint8Array([1, 2, 3, 4, 5, i]) }));
    const lines = prettyPrint(slirp, { bootp: { bootp_clients: clients } });
    expect(lines).toContain("slirp.bootp.bootp_clients(16)(8).[0].macaddr(6)(1).[0] = (uint8) 0x1");
    expect(lines.slice(0, 2)).toEqual([
      "slirp.bootp.bootp_clients(16)(8).[0].allocated = (uint16) 0x1",
      "slirp.bootp.bootp_clients(16)(8).[0].macaddr(6)(1).[0] = (uint8) 0x1",
    ]);
    expect(lines.at(-1)).toBe("slirp.bootp.bootp_clients(16)(8).[15].macaddr(6)(1).[5] = (uint8) 0xf");
    expect(lines).toHaveLength(16 * 7);
  });

  it("the element size defaults to the struct's fixed wire size, and a uint8 array prints like a buffer", () => {
    const client2: VMStateDescription = { name: "bootp_client", version: 1, fields: [F.uint16("allocated"), F.array("macaddr", "uint8", 6)] };
    const d: VMStateDescription = {
      name: "slirp",
      version: 4,
      fields: [F.struct("bootp", { name: "bootp", version: 1, fields: [F.structArray("bootp_clients", client2, 2)] })],
    };
    const lines = prettyPrint(d, { bootp: { bootp_clients: [{ allocated: 0, macaddr: [1, 0, 0, 0, 0, 0] }, {}] } });
    expect(lines[1]).toBe("slirp.bootp.bootp_clients(2)(8).[0].macaddr(6)(1).[0] = (uint8) 0x1");
  });

  it("the root is the VMState name even when the section's idstr differs", () => {
    expect(prettyPrint(i8259, { last_irr: 1, irr: 2 }, "0000:00:01.0/i8259")[0]).toBe("i8259.last_irr = (uint8) 0x1");
  });

  it("a gated field that is absent prints nothing", () => {
    const d: VMStateDescription = { name: "d", version: 1, fields: [F.uint8("a"), F.uint8("b", { version: 2 }), F.uint8("c", { test: () => false })] };
    expect(prettyPrint(d, { a: 1, b: 2, c: 3 })).toEqual(["d.a = (uint8) 0x1"]);
  });
});

describe("PrettyVisitor: values", () => {
  const d: VMStateDescription = {
    name: "v",
    version: 1,
    fields: [
      F.int8("i8"),
      F.int16("i16"),
      F.int32("i32"),
      F.int64("i64"),
      F.uint8("u8"),
      F.uint16("u16"),
      F.uint32("u32"),
      F.uint64("u64"),
      F.bool("t"),
      F.bool("f"),
      F.float32("f32"),
      F.float64("f64"),
      F.cpuDouble("fpr"),
      F.timer("tm"),
      F.int32Equal("eq"),
    ],
  };
  const s: State = {
    i8: -1,
    i16: -2,
    i32: -1,
    i64: -1n,
    u8: 0xab,
    u16: 0xbeef,
    u32: 0xdeadbeef,
    u64: 0xffffffffffffffffn,
    t: true,
    f: false,
    f32: 1.5,
    f64: 1,
    fpr: -2,
    tm: -1n,
    eq: 7,
  };

  it("negative integers as two's complement of the width, no padding, lowercase", () => {
    expect(prettyPrint(d, s)).toEqual([
      "v.i8 = (int8) 0xff",
      "v.i16 = (int16) 0xfffe",
      "v.i32 = (int32) 0xffffffff",
      "v.i64 = (int64) 0xffffffffffffffff",
      "v.u8 = (uint8) 0xab",
      "v.u16 = (uint16) 0xbeef",
      "v.u32 = (uint32) 0xdeadbeef",
      "v.u64 = (uint64) 0xffffffffffffffff",
      "v.t = (bool) 0x1",
      "v.f = (bool) 0x0",
      "v.f32 = (float32) 0x3fc00000",
      "v.f64 = (float64) 0x3ff0000000000000",
      "v.fpr = (float64) 0xc000000000000000",
      "v.tm = (int64) 0xffffffffffffffff",
      "v.eq = (int32) 0x7",
    ]);
  });

  it("typeNames: info shows the QEMU VMStateInfo name where there is one", () => {
    const lines = prettyPrint(d, s, undefined, { typeNames: "info" });
    expect(lines).toContain("v.fpr = (CPU_Double_U) 0xc000000000000000");
    expect(lines).toContain("v.tm = (timer) 0xffffffffffffffff");
    expect(lines).toContain("v.eq = (int32 equal) 0x7");
    expect(lines).toContain("v.u8 = (uint8) 0xab");
  });

  it("hex helpers", () => {
    expect(hexOfInt("int8", -128)).toBe("0x80");
    expect(hexOfInt("int16", -1)).toBe("0xffff");
    expect(hexOfInt("int32", -0x80000000)).toBe("0x80000000");
    expect(hexOfInt("int64", -(1n << 63n))).toBe("0x8000000000000000");
    expect(hexOfInt("uint32", 0)).toBe("0x0");
    expect(hexOfFloat("float32", -0)).toBe("0x80000000");
    expect(hexOfFloat("float64", Infinity)).toBe("0x7ff0000000000000");
    expect(hexOfFloat("float32", NaN)).toBe("0x7fc00000");
  });

  it("strings as (str) with JSON quoting; NULL pointers as (nullptr) 0x30", () => {
    const v = new PrettyVisitor();
    v.startStruct("x", "x", 1);
    v.str("name", 'a"b');
    v.startArray("ptrs", 2, 8, "uint64");
    v.nullPointer(0, true);
    v.nullPointer(1, false);
    v.uint64(1, 5n);
    v.endArray();
    v.endStruct();
    expect(v.lines).toEqual(['x.name = (str) "a\\"b"', "x.ptrs(2)(8).[0] = (nullptr) 0x30", "x.ptrs(2)(8).[1] = (uint64) 0x5"]);
  });
});

describe("PrettyVisitor: structure", () => {
  it("subsections contribute their name (fw_cfg.fw_cfg/dma.dma_addr)", () => {
    const fwcfg: VMStateDescription = {
      name: "fw_cfg",
      version: 2,
      fields: [F.uint16("cur_entry"), F.uint32("cur_offset", { key: "off" })],
      subsections: [
        { name: "fw_cfg/dma", version: 0, needed: (s) => s.dmaEnabled, fields: [F.uint64("dma_addr")] },
        {
          name: "fw_cfg/acpi_mr",
          version: 1,
          fields: [F.uint64("table_mr_size")],
          subsections: [{ name: "fw_cfg/acpi_mr/x", version: 1, fields: [F.uint8("y")] }],
        },
      ],
    };
    const lines = prettyPrint(fwcfg, { cur_entry: 1, off: 2, dmaEnabled: true, dma_addr: 0x1000n, table_mr_size: 0x20000n, y: 3 });
    expect(lines).toEqual([
      "fw_cfg.cur_entry = (uint16) 0x1",
      "fw_cfg.cur_offset = (uint32) 0x2",
      "fw_cfg.fw_cfg/dma.dma_addr = (uint64) 0x1000",
      "fw_cfg.fw_cfg/acpi_mr.table_mr_size = (uint64) 0x20000",
      "fw_cfg.fw_cfg/acpi_mr.fw_cfg/acpi_mr/x.y = (uint8) 0x3",
    ]);
  });

  it("lists show (*)(0), bitmaps as uint64 words, unused bytes as uint8s, pointer arrays with NULLs", () => {
    const elem: VMStateDescription = { name: "req", version: 1, fields: [F.uint32("tag")] };
    const d: VMStateDescription = {
      name: "q",
      version: 1,
      fields: [
        F.qtailq("reqs", elem),
        F.bitmap("bm", 70),
        F.unused(2),
        F.pointerArray("timers", "int64", 2, { info: "timer" }),
        F.pointerArray("objs", elem, 2),
      ],
    };
    const lines = prettyPrint(d, { reqs: [{ tag: 1 }, { tag: 2 }], bm: [1n, 2n], timers: [null, -1n], objs: [{ tag: 9 }, null] });
    expect(lines).toEqual([
      "q.reqs(*)(0).[0].tag = (uint32) 0x1",
      "q.reqs(*)(0).[1].tag = (uint32) 0x2",
      "q.bm(2)(8).[0] = (uint64) 0x1",
      "q.bm(2)(8).[1] = (uint64) 0x2",
      "q.unused(2)(1).[0] = (uint8) 0x0",
      "q.unused(2)(1).[1] = (uint8) 0x0",
      "q.timers(2)(8).[0] = (nullptr) 0x30",
      "q.timers(2)(8).[1] = (int64) 0xffffffffffffffff",
      "q.objs(2)(4).[0].tag = (uint32) 0x9",
      "q.objs(2)(4).[1] = (nullptr) 0x30",
    ]);
  });

  it("streams lines to a callback instead of collecting them", () => {
    const got: string[] = [];
    const v = new PrettyVisitor({ onLine: (l) => got.push(l) });
    saveState(v, i8259, { last_irr: 1, irr: 0x20 });
    expect(v.lines).toEqual([]);
    expect(got).toEqual(["i8259.last_irr = (uint8) 0x1", "i8259.irr = (uint8) 0x20"]);
  });

  it("returns its arguments (an output visitor) and throws the walk's error from prettyPrint", () => {
    const v = new PrettyVisitor();
    expect(v.direction).toBe("output");
    expect(v.int64("x", -5n)).toBe(-5n);
    const b = new Uint8Array([1, 2]);
    expect(v.buffer("b", b, 2)).toBe(b);
    const d: VMStateDescription = { name: "d", version: 1, fields: [F.buffer("b", 4, { start: 2 })] };
    expect(() => prettyPrint(d, { b: new Uint8Array(4) })).toThrow(/buffer holds 4 bytes, 6 needed/);
  });
});
