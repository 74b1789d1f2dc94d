import { describe, expect, it } from "vitest";
import { ByteReader } from "../../src/io/reader.js";
import { ByteWriter } from "../../src/io/writer.js";
import { formatTraceEntry, type TraceEntry, TraceVisitor } from "../../src/visitor/trace.js";
import type { Visitor } from "../../src/visitor/visitor.js";
import { WireInputVisitor, WireOutputVisitor } from "../../src/visitor/wire.js";
import { loadState, saveState } from "../../src/vmstate/engine.js";
import { F } from "../../src/vmstate/fields.js";
import {
  assertSymmetry,
  checkSymmetry,
  checkVersions,
  coverageOf,
  descriptionPaths,
  diffTraces,
  firstDifference,
  loadTargetFor,
  mergeCoverage,
  unexercised,
} from "../../src/vmstate/symmetry.js";
import type { State, VMStateDescription } from "../../src/vmstate/types.js";

const req: VMStateDescription = { name: "req", version: 1, fields: [F.uint32("tag"), F.buffer("cdb", 2)] };

const dev: VMStateDescription = {
  name: "dev",
  version: 2,
  fields: [
    F.uint8("mode"),
    F.uint32Equal("id"),
    F.int64("clock", { version: 2 }),
    F.uint16("nreq"),
    F.structArray("reqs", req, { field: "nreq" }),
    F.uint8("extra", { test: (s) => s.mode === 1 }),
    F.pointerArray("timers", "int64", 2, { info: "timer" }),
  ],
  subsections: [{ name: "dev/irq", version: 1, needed: (s) => !!s.irq, fields: [F.uint32("irq")] }],
};

function devState(): State {
  return {
    mode: 1,
    id: 7,
    clock: -1n,
    nreq: 2,
    reqs: [
      { tag: 1, cdb: new Uint8Array([1, 2]) },
      { tag: 2, cdb: new Uint8Array([3, 4]) },
    ],
    extra: 9,
    timers: [null, 5n],
    irq: 3,
  };
}

describe("TraceVisitor", () => {
  it("records every visit with its trace path, description path, type and returned value", () => {
    const w = new ByteWriter();
    const t = new TraceVisitor(new WireOutputVisitor(w));
    saveState(t, dev, devState());
    expect(t.error).toBeUndefined();
    expect(t.direction).toBe("output");
    const lines = t.entries.map(formatTraceEntry);
    expect(lines.slice(0, 10)).toEqual([
      "startStruct dev dev = 2",
      "scalar dev.mode uint8 = 1",
      "scalar dev.id uint32 [uint32 equal] = 7",
      "optional dev.clock = true",
      'scalar dev.clock int64 = "-1"',
      "scalar dev.nreq uint16 = 2",
      "startArray dev.reqs(2)(6) struct = 2",
      "startStruct dev.reqs(2)(6).[0] req = 1",
      "scalar dev.reqs(2)(6).[0].tag uint32 = 1",
      'buffer dev.reqs(2)(6).[0].cdb buffer = "0102"',
    ]);
    expect(lines).toContain("nullPointer dev.timers(2)(8).[0] = true");
    expect(lines).toContain('scalar dev.timers(2)(8).[1] int64 [timer] = "5"');
    expect(lines.slice(-4)).toEqual([
      "startSubsection dev.dev/irq dev/irq = 1",
      "scalar dev.dev/irq.irq uint32 = 3",
      "endSubsection dev.dev/irq",
      "endStruct dev",
    ]);
    const tag = t.entries.find((e) => e.path === "dev.reqs(2)(6).[1].tag")!;
    expect(tag.field).toBe("dev.reqs.tag");
  });

  it("traces input too, delegates errors and calls onEntry", () => {
    const w = new ByteWriter();
    saveState(new WireOutputVisitor(w), dev, devState());
    const seen: TraceEntry[] = [];
    const r = new ByteReader(w.concat().subarray(0, 17), { sticky: true });
    const t = new TraceVisitor(new WireInputVisitor(r), { onEntry: (e) => seen.push(e), collect: false });
    expect(t.direction).toBe("input");
    loadState(t, dev, loadTargetFor(dev, devState()), 2);
    expect(t.entries).toEqual([]);
    expect(seen.length).toBeGreaterThan(3);
    expect(t.error?.code).toBe("EOF");
    expect(t.error).toBe(t.inner.error);
    expect(t.error?.path).toBe("dev.reqs(2)(6).[0].tag");
  });
});

describe("checkSymmetry", () => {
  it("passes on a symmetric description, and reports what the save covered", () => {
    const r = assertSymmetry(dev, devState());
    expect(r.ok).toBe(true);
    expect(r.consumed).toBe(r.bytes.length);
    expect(r.resaved).toEqual(r.bytes);
    expect(r.loaded).toEqual(devState());
    expect([...r.coverage.fields]).toEqual([
      "dev",
      "dev.mode",
      "dev.id",
      "dev.clock",
      "dev.nreq",
      "dev.reqs",
      "dev.reqs.tag",
      "dev.reqs.cdb",
      "dev.extra",
      "dev.timers",
      "dev.dev/irq.irq",
    ]);
    expect([...r.coverage.subsections]).toEqual(["dev.dev/irq"]);
    expect(r.coverage.gatedFields).toEqual([
      { name: "dev.clock", present: true },
      { name: "dev.extra", present: true },
    ]);
  });

  it("pre-populates the load target with checked values and NULL pointers, as the destination holds them", () => {
    expect(loadTargetFor(dev, devState())).toEqual({ id: 7, timers: [null] });
    // Another destination value for an _EQUAL field fails the load.
    const r = checkSymmetry(dev, devState(), { target: { id: 8, timers: [null] } });
    expect(r.ok).toBe(false);
    expect(r.loadError?.code).toBe("MISMATCH");
    expect(r.problems[0]).toMatch(/load failed: id: value differs/);
  });

  it("finds a save and load that disagree on a type (the bug the Visitor plan set out to catch)", () => {
    const skewed = F.custom("level", "skewed", 2, (v: Visitor, name: string, value: unknown) =>
      v.direction === "output" ? v.uint16(name, (value as number) ?? 0) : v.uint32(name, 0),
    );
    const d: VMStateDescription = { name: "skew", version: 1, fields: [skewed, F.uint32("after"), F.uint32("more")] };
    const r = checkSymmetry(d, { level: 1, after: 2, more: 3 });
    expect(r.ok).toBe(false);
    expect(r.traceMismatch?.index).toBe(1);
    expect(r.traceMismatch?.save).toMatchObject({ path: "skew.level", type: "uint16", value: 1 });
    expect(r.traceMismatch?.load).toMatchObject({ path: "skew.level", type: "uint32" });
    expect(r.problems.join("\n")).toMatch(/traces differ at entry 1: save scalar skew.level uint16 = 1; load scalar skew.level uint32/);
  });

  it("finds a value that does not survive the wire (a float32 that is not one)", () => {
    const d: VMStateDescription = { name: "f", version: 1, fields: [F.float32("gain")] };
    const r = checkSymmetry(d, { gain: 0.1 });
    expect(r.ok).toBe(false);
    expect(r.stateMismatch).toBe(".fields.gain");
    expect(r.problems.join("\n")).toMatch(/traces differ/);
    expect(checkSymmetry(d, { gain: Math.fround(0.1) }).ok).toBe(true);
  });

  it("finds QEMU's subsection ambiguity: an array of structs that send only a subsection", () => {
    const elem: VMStateDescription = { name: "el", version: 1, fields: [], subsections: [{ name: "el/x", version: 1, fields: [F.uint8("x")] }] };
    const d: VMStateDescription = { name: "arr", version: 1, fields: [F.structArray("els", elem, 2)] };
    const r = checkSymmetry(d, { els: [{ x: 1 }, { x: 2 }] });
    expect(r.ok).toBe(false);
    // Element 0 reads element 1's subsection as a second one of its own.
    expect(r.traceMismatch?.save?.kind).toBe("endStruct");
    expect(r.traceMismatch?.load).toMatchObject({ kind: "startSubsection", path: "arr.els(2)(0).[0].el/x" });
  });

  it("finds a needed() that reads state the load does not restore (re-save differs)", () => {
    const d: VMStateDescription = {
      name: "n",
      version: 1,
      fields: [F.uint8("a")],
      subsections: [{ name: "n/b", version: 1, needed: (s) => s.b !== 0, fields: [F.uint8("b")] }],
    };
    const r = checkSymmetry(d, { a: 1, b: 0 });
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([
      "loaded state differs from the saved one at .subsections",
      "re-saving the loaded state gives different bytes (1 vs 11 bytes, first difference at byte 1)",
    ]);
    // With a destination that holds its reset value, as QEMU's does, it is symmetric.
    expect(checkSymmetry(d, { a: 1, b: 0 }, { target: { b: 0 } }).ok).toBe(true);
  });

  it("reports a failing save", () => {
    const d: VMStateDescription = { name: "b", version: 1, fields: [F.buffer("buf", 4, { start: 2 })] };
    const r = checkSymmetry(d, { buf: new Uint8Array(4) });
    expect(r.ok).toBe(false);
    expect(r.saveError?.code).toBe("RANGE");
    expect(() => assertSymmetry(d, { buf: new Uint8Array(4) })).toThrow(/b: not symmetric:\n {2}save failed/);
  });

  it("helpers: firstDifference and diffTraces", () => {
    expect(firstDifference({ a: [1, { b: 2 }] }, { a: [1, { b: 3 }] })).toBe(".a[1].b");
    expect(firstDifference([NaN], [NaN])).toBeUndefined();
    expect(firstDifference(0, -0)).toBe("(root)");
    const e: TraceEntry = { kind: "scalar", path: "x.a", field: "x.a", type: "uint8", value: 1 };
    expect(diffTraces([e], [e])).toBeUndefined();
    expect(diffTraces([e], [])).toEqual({ index: 0, a: e });
    expect(diffTraces([e, e], [e], (x) => x === e)).toBeUndefined();
  });
});

describe("checkVersions", () => {
  const v1: VMStateDescription = { name: "nic", version: 1, fields: [F.uint32("rx"), F.uint32("tx")] };
  const v2: VMStateDescription = {
    name: "nic",
    version: 2,
    fields: [F.uint32("rx"), F.uint32("tx"), F.uint64("stats", { version: 2 })],
    subsections: [{ name: "nic/mtu", version: 1, needed: (s) => s.mtu !== 1500, fields: [F.uint16("mtu")] }],
  };
  const state = (): State => ({ rx: 1, tx: 2, stats: 99n, mtu: 1500 });

  it("old save -> new load: the new version-gated field and subsection are absent, and reported", () => {
    const { oldToNew } = checkVersions(v1, v2, state());
    expect(oldToNew.problems).toEqual([]);
    expect(oldToNew.ok).toBe(true);
    expect(oldToNew.version).toBe(1);
    expect(oldToNew.loaded).toEqual({ rx: 1, tx: 2 });
    expect(oldToNew.notSent).toEqual({ fields: [], subsections: [], gatedNeverPresent: [], gatedNeverAbsent: [] });
    expect(oldToNew.notLoaded.fields).toEqual(["nic.stats", "nic.nic/mtu.mtu"]);
    expect(oldToNew.notLoaded.subsections).toEqual(["nic.nic/mtu"]);
    expect(oldToNew.loadedCoverage.gatedFields).toEqual([{ name: "nic.stats", present: false }]);
  });

  it("new save -> old load: a newer version is refused, as QEMU refuses it", () => {
    const { newToOld } = checkVersions(v1, v2, state());
    expect(newToOld.ok).toBe(false);
    expect(newToOld.version).toBe(2);
    expect(newToOld.loadError?.code).toBe("BAD_VERSION");
    expect(newToOld.problems[0]).toMatch(/old load failed: nic: version 2 is too new/);
    expect(newToOld.saved.fields.has("nic.stats")).toBe(true);
  });

  it("a field added as a subsection (same version) migrates back while the subsection is not needed", () => {
    const v1b: VMStateDescription = { ...v2, version: 1, fields: [F.uint32("rx"), F.uint32("tx")] };
    const r = checkVersions(v1, v1b, state());
    expect(r.oldToNew.ok).toBe(true);
    expect(r.newToOld.ok).toBe(true);
    expect(r.newToOld.notSent.subsections).toEqual(["nic.nic/mtu"]);
    const needed = checkVersions(v1, v1b, { ...state(), mtu: 9000 });
    expect(needed.newToOld.ok).toBe(false);
    expect(needed.newToOld.loadError?.code).toBe("UNKNOWN_SUBSECTION");
    expect(needed.oldToNew.ok).toBe(true);
  });

  it("a type changed without a version bump shows as a trace difference", () => {
    const a: VMStateDescription = { name: "t", version: 1, fields: [F.uint16("x"), F.uint16("y"), F.uint32("z")] };
    const b: VMStateDescription = { name: "t", version: 1, fields: [F.uint32("x"), F.uint32("z")] };
    const r = checkVersions(a, b, { x: 1, y: 2, z: 3 });
    expect(r.oldToNew.ok).toBe(false);
    expect(r.oldToNew.loadError).toBeUndefined();
    expect(r.oldToNew.traceMismatch?.save).toMatchObject({ path: "t.x", type: "uint16", value: 1 });
    expect(r.oldToNew.traceMismatch?.load).toMatchObject({ path: "t.x", type: "uint32", value: 0x10002 });
  });
});

describe("coverage", () => {
  it("lists a description's fields, subsections and gated fields as trace-style paths", () => {
    const inner: VMStateDescription = { name: "PCIDevice", version: 1, fields: [F.buffer("config", 4)] };
    const d: VMStateDescription = {
      name: "PIIX3",
      version: 3,
      fields: [F.struct("dev", inner), F.array("levels", "int32", 4, { version: 3 }), F.qtailq("q", req), F.validate("ok", () => undefined)],
      subsections: [{ name: "PIIX3/rcr", version: 1, fields: [F.uint8("rcr")], subsections: [{ name: "PIIX3/rcr/x", version: 1, fields: [F.bool("b")] }] }],
    };
    expect(descriptionPaths(d)).toEqual({
      fields: [
        "PIIX3.PCIDevice",
        "PIIX3.PCIDevice.config",
        "PIIX3.levels",
        "PIIX3.q",
        "PIIX3.q.tag",
        "PIIX3.q.cdb",
        "PIIX3.PIIX3/rcr.rcr",
        "PIIX3.PIIX3/rcr.PIIX3/rcr/x.b",
      ],
      subsections: ["PIIX3.PIIX3/rcr", "PIIX3.PIIX3/rcr.PIIX3/rcr/x"],
      gated: ["PIIX3.levels"],
    });
  });

  it("lists what runs did not exercise, and merged runs exercise more", () => {
    const empty: State = { mode: 0, id: 7, clock: 0n, nreq: 0, reqs: [], timers: [1n, 2n], irq: 0 };
    const a = checkSymmetry(dev, empty);
    expect(a.problems).toEqual([]);
    const ua = unexercised(dev, a.coverage);
    expect(ua.fields).toEqual(["dev.reqs.tag", "dev.reqs.cdb", "dev.extra", "dev.dev/irq.irq"]);
    expect(ua.subsections).toEqual(["dev.dev/irq"]);
    expect(ua.gatedNeverPresent).toEqual(["dev.extra"]);
    expect(ua.gatedNeverAbsent).toEqual(["dev.clock"]);

    const b = checkSymmetry(dev, devState());
    const both = unexercised(dev, [a.coverage, b.coverage]);
    expect(both).toEqual({ fields: [], subsections: [], gatedNeverPresent: [], gatedNeverAbsent: ["dev.clock"] });
    expect(mergeCoverage(a.coverage, b.coverage).gatedFields).toEqual([
      { name: "dev.clock", present: true },
      { name: "dev.extra", present: false },
      { name: "dev.extra", present: true },
    ]);
  });

  it("coverageOf works on any trace, input side included", () => {
    const w = new ByteWriter();
    saveState(new WireOutputVisitor(w), dev, devState());
    const t = new TraceVisitor(new WireInputVisitor(new ByteReader(w.concat(), { sticky: true })));
    loadState(t, dev, loadTargetFor(dev, devState()), 2);
    const c = coverageOf(t.entries);
    expect(unexercised(dev, c).fields).toEqual([]);
    expect(c.subsections.has("dev.dev/irq")).toBe(true);
  });
});
