// Symmetry testing, the method of QEMU's Visitor plan as a library utility (checkSymmetry,
// checkVersions, coverage), and the one-call wrappers prettyPrint / toJSON / fromJSON, here because
// they need the engine (visitor/ does not import vmstate/). docs/vmstate.md, "Symmetry".
import { sameBytes } from "../io/chunks.js";
import { VmstreamError } from "../io/errors.js";
import { ByteReader } from "../io/reader.js";
import { ByteWriter } from "../io/writer.js";
import { JsonInputVisitor, type JsonMode, type JsonStructNode, JsonVisitor } from "../visitor/json.js";
import { type PrettyOptions, PrettyVisitor } from "../visitor/pretty.js";
import { formatTraceEntry, type TraceEntry, TraceVisitor } from "../visitor/trace.js";
import { WireInputVisitor, WireOutputVisitor } from "../visitor/wire.js";
import { loadState, saveState } from "./engine.js";
import type { State, VMStateDescription } from "./types.js";

// ---------------------------------------------------------------------------------------------
// Inspection helpers

/** The pretty trace of `state` (docs/visitors.md format), one string per value. Throws the walk's error, if any. */
export function prettyPrint(vmsd: VMStateDescription, state: State, name?: string, options: Omit<PrettyOptions, "onLine"> = {}): string[] {
  const v = new PrettyVisitor(options);
  saveState(v, vmsd, state, name ?? vmsd.name);
  if (v.error) throw v.error;
  return v.lines;
}

/** The JSON introspection tree of `state` (its shape: docs/visitors.md, "JSON"). Throws the walk's error, if any. */
export function toJSON(vmsd: VMStateDescription, state: State, options: { mode?: JsonMode } = {}): JsonStructNode {
  const v = new JsonVisitor(options);
  saveState(v, vmsd, state);
  if (v.error) throw v.error;
  return v.root;
}

/**
 * Load a JSON tree (either mode) into `target` (default: a new object), at the version the tree
 * records, with all of the description's checks. Returns the state; throws a VmstreamError when
 * the tree does not fit the description.
 */
export function fromJSON(vmsd: VMStateDescription, json: JsonStructNode, target: State = {}): State {
  const v = new JsonInputVisitor(json);
  loadState(v, vmsd, target, json.version);
  if (v.error) throw v.error;
  return target;
}

/**
 * A fresh load target for `state`, pre-populated with what QEMU's destination must already hold
 * for the load of `state`'s bytes to succeed: the values of fields with a load-time check
 * (`_EQUAL`, `int32 le`) and the NULL entries of pointer arrays (QEMU reads the 0x30 marker only
 * where its own pointer is NULL). Everything else is left out. Lists, trees and WITH_TMP state
 * are not pre-populated (a load rebuilds them).
 */
export function loadTargetFor(vmsd: VMStateDescription, state: State): State {
  const out: State = {};
  copyChecks(vmsd, state, out, 0);
  return out;
}

function copyChecks(vmsd: VMStateDescription, src: State, dst: State, depth: number): boolean {
  if (depth > 64) return false;
  let any = false;
  const into = (key: string, make: () => unknown): unknown => (dst[key] ??= make());
  for (const f of vmsd.fields) {
    const key = f.key ?? f.name;
    const v = src[key];
    if (v === undefined || v === null) continue;
    switch (f.kind) {
      case "scalar":
        if (f.check) {
          dst[key] = v;
          any = true;
        }
        break;
      case "struct": {
        const sub: State = {};
        if (copyChecks(f.vmsd, v, sub, depth + 1)) {
          Object.assign(into(key, () => ({})) as State, sub);
          any = true;
        }
        break;
      }
      case "structArray":
      case "pointerArray": {
        if (!Array.isArray(v)) break;
        const elem = f.kind === "structArray" ? f.vmsd : typeof f.elem === "string" ? undefined : f.elem;
        const subs = v.map((e: State | null) => {
          const sub: State = {};
          return e && elem && copyChecks(elem, e, sub, depth + 1) ? sub : undefined;
        });
        // QEMU loads a NULL entry of a pointer array only where the destination's pointer is NULL.
        const nulls = f.kind === "pointerArray" && v.some((e: unknown) => e === null);
        if (nulls || subs.some((x) => x !== undefined)) {
          const arr = into(key, () => []) as (State | null)[];
          subs.forEach((sub, i) => {
            if (sub) arr[i] = Object.assign(arr[i] ?? {}, sub);
          });
          if (nulls) v.forEach((e: unknown, i: number) => e === null && (arr[i] = null));
          any = true;
        }
        break;
      }
      default:
        break;
    }
  }
  for (const sub of vmsd.subsections ?? []) if (copyChecks(sub, src, dst, depth + 1)) any = true;
  return any;
}

// ---------------------------------------------------------------------------------------------
// Wire round trips

interface WireRun {
  bytes: Uint8Array;
  saveTrace: TraceEntry[];
  saveError: VmstreamError | undefined;
}

function tracedSave(vmsd: VMStateDescription, state: State, name: string): WireRun {
  const w = new ByteWriter();
  const t = new TraceVisitor(new WireOutputVisitor(w));
  let saveError: VmstreamError | undefined;
  try {
    saveState(t, vmsd, state, name);
    saveError = t.error;
  } catch (e) {
    saveError = VmstreamError.wrap(e);
  }
  return { bytes: w.concat(), saveTrace: t.entries, saveError };
}

function wrapError(e: unknown): VmstreamError {
  return VmstreamError.wrap(e);
}

interface WireLoad {
  loadTrace: TraceEntry[];
  loadError: VmstreamError | undefined;
  consumed: number;
}

function tracedLoad(vmsd: VMStateDescription, bytes: Uint8Array, version: number, target: State, name: string): WireLoad {
  const r = new ByteReader(bytes, { sticky: true });
  const t = new TraceVisitor(new WireInputVisitor(r));
  let loadError: VmstreamError | undefined;
  try {
    loadState(t, vmsd, target, version, name);
    loadError = t.error;
  } catch (e) {
    loadError = wrapError(e);
  }
  return { loadTrace: t.entries, loadError, consumed: r.pos };
}

/** The first index where two traces differ (undefined when equal). `skip` drops entries from both before comparing. */
export function diffTraces(
  a: readonly TraceEntry[],
  b: readonly TraceEntry[],
  skip?: (e: TraceEntry) => boolean,
): { index: number; a?: TraceEntry; b?: TraceEntry } | undefined {
  const x = skip ? a.filter((e) => !skip(e)) : a;
  const y = skip ? b.filter((e) => !skip(e)) : b;
  const n = Math.max(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const p = x[i];
    const q = y[i];
    if (!p || !q || !sameJson(p, q)) return { index: i, ...(p ? { a: p } : {}), ...(q ? { b: q } : {}) };
  }
  return undefined;
}

/** Deep equality of JSON-like values (and trace entries): Object.is on numbers (NaN equals NaN, -0 differs from 0). */
export function sameJson(a: unknown, b: unknown): boolean {
  return firstDifference(a, b, "") === undefined;
}

/** The path (`.a.b[3]`) of the first difference between two JSON-like values, or undefined. */
export function firstDifference(a: unknown, b: unknown, at = ""): string | undefined {
  if (Object.is(a, b)) return undefined;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return at || "(root)";
  if (Array.isArray(a) !== Array.isArray(b)) return at || "(root)";
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    if (a.length !== bb.length) return `${at}.length`;
    for (let i = 0; i < a.length; i++) {
      const d = firstDifference(a[i], bb[i], `${at}[${i}]`);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(ao), ...Object.keys(bo)]);
  for (const k of keys) {
    const d = firstDifference(ao[k], bo[k], `${at}.${k}`);
    if (d !== undefined) return d;
  }
  return undefined;
}

function describeDiff(what: string, d: { index: number; a?: TraceEntry; b?: TraceEntry }, aName: string, bName: string): string {
  const show = (e?: TraceEntry) => (e ? formatTraceEntry(e) : "(nothing)");
  return `${what} differ at entry ${d.index}: ${aName} ${show(d.a)}; ${bName} ${show(d.b)}`;
}

export interface SymmetryOptions {
  /** The root's name (a section's idstr); default the description's name. */
  readonly name?: string;
  /** The state to load into; default {@link loadTargetFor}(vmsd, state). */
  readonly target?: State;
  /** Compare the loaded state with the saved one through their JSON projections (default true). */
  readonly compareState?: boolean;
  /** Re-save the loaded state and compare the bytes (default true). */
  readonly resave?: boolean;
}

export interface SymmetryReport {
  /** True when every check passed. */
  readonly ok: boolean;
  /** One message per failed check. */
  readonly problems: string[];
  /** The saved bytes. */
  readonly bytes: Uint8Array;
  /** Bytes the load consumed (must be bytes.length). */
  readonly consumed: number;
  readonly saveError?: VmstreamError;
  readonly loadError?: VmstreamError;
  readonly saveTrace: TraceEntry[];
  readonly loadTrace: TraceEntry[];
  /** The first difference between the traces, when they differ. */
  readonly traceMismatch?: { index: number; save?: TraceEntry; load?: TraceEntry };
  /** The loaded state. */
  readonly loaded: State;
  /** Where the JSON projections of the saved and loaded states first differ (`.fields.x[2]`). */
  readonly stateMismatch?: string;
  /** The bytes of re-saving the loaded state (when `resave`). */
  readonly resaved?: Uint8Array;
  /** What the save exercised. */
  readonly coverage: Coverage;
}

/**
 * Save `state` with a traced wire output visitor, load the bytes with a traced wire input visitor
 * and check that the two walks are the same walk (the Visitor plan's symmetry test).
 */
export function checkSymmetry(vmsd: VMStateDescription, state: State, options: SymmetryOptions = {}): SymmetryReport {
  const name = options.name ?? vmsd.name;
  const problems: string[] = [];
  const target = options.target ?? loadTargetFor(vmsd, state);
  const { bytes, saveTrace, saveError } = tracedSave(vmsd, state, name);
  if (saveError) problems.push(`save failed: ${saveError.message}`);
  const { loadTrace, loadError, consumed } = saveError
    ? { loadTrace: [] as TraceEntry[], loadError: undefined, consumed: 0 }
    : tracedLoad(vmsd, bytes, vmsd.version, target, name);
  if (loadError) problems.push(`load failed: ${loadError.message}`);
  if (!saveError && !loadError && consumed !== bytes.length) problems.push(`load consumed ${consumed} of ${bytes.length} bytes`);
  let traceMismatch: SymmetryReport["traceMismatch"];
  let stateMismatch: string | undefined;
  let resaved: Uint8Array | undefined;
  if (!saveError) {
    const d = diffTraces(saveTrace, loadTrace);
    // A failed load's trace stops (closing what was open): only a difference before that is news.
    if (d && !(loadError && loadTrace.slice(d.index).every((e) => e.kind.startsWith("end")))) {
      traceMismatch = { index: d.index, ...(d.a ? { save: d.a } : {}), ...(d.b ? { load: d.b } : {}) };
      problems.push(describeDiff("traces", d, "save", "load"));
    }
  }
  if (!saveError && !loadError) {
    if (options.compareState ?? true) {
      try {
        stateMismatch = firstDifference(toJSON(vmsd, state), toJSON(vmsd, target));
        if (stateMismatch !== undefined) problems.push(`loaded state differs from the saved one at ${stateMismatch}`);
      } catch (e) {
        problems.push(`state comparison failed: ${wrapError(e).message}`);
      }
    }
    if (options.resave ?? true) {
      const again = tracedSave(vmsd, target, name);
      resaved = again.bytes;
      if (again.saveError) problems.push(`re-save failed: ${again.saveError.message}`);
      else if (!sameBytes(bytes, resaved)) problems.push(`re-saving the loaded state gives different bytes (${bytesDiff(bytes, resaved)})`);
    }
  }
  return {
    ok: problems.length === 0,
    problems,
    bytes,
    consumed,
    ...(saveError ? { saveError } : {}),
    ...(loadError ? { loadError } : {}),
    saveTrace,
    loadTrace,
    ...(traceMismatch ? { traceMismatch } : {}),
    loaded: target,
    ...(stateMismatch !== undefined ? { stateMismatch } : {}),
    ...(resaved ? { resaved } : {}),
    coverage: coverageOf(saveTrace),
  };
}

/** {@link checkSymmetry}, throwing an Error listing the problems when a check fails. */
export function assertSymmetry(vmsd: VMStateDescription, state: State, options: SymmetryOptions = {}): SymmetryReport {
  const r = checkSymmetry(vmsd, state, options);
  if (!r.ok) throw new Error(`${vmsd.name}: not symmetric:\n  ${r.problems.join("\n  ")}`);
  return r;
}

function bytesDiff(a: Uint8Array, b: Uint8Array): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return `${a.length} vs ${b.length} bytes, first difference at byte ${i}`;
}

// ---------------------------------------------------------------------------------------------
// Versions

export interface VersionRun {
  /** Which description saved and which loaded. */
  readonly from: "old" | "new";
  readonly to: "old" | "new";
  /** The version the saver wrote (its description's version), which the loader loads at. */
  readonly version: number;
  readonly ok: boolean;
  readonly problems: string[];
  readonly bytes: Uint8Array;
  readonly consumed: number;
  readonly saveError?: VmstreamError;
  readonly loadError?: VmstreamError;
  readonly saveTrace: TraceEntry[];
  readonly loadTrace: TraceEntry[];
  /**
   * First difference of the traces, ignoring gate answers (`optional` entries: one side may gate a
   * field the other does not have) and the versions of nested structs (not sent; each side walks
   * its own).
   */
  readonly traceMismatch?: { index: number; save?: TraceEntry; load?: TraceEntry };
  readonly loaded: State;
  /** What the saver sent / what the loader loaded. */
  readonly saved: Coverage;
  readonly loadedCoverage: Coverage;
  /** Fields and subsections of the saver's description it did not send. */
  readonly notSent: Unexercised;
  /** Fields and subsections of the loader's description absent from the stream (they keep the target's values). */
  readonly notLoaded: Unexercised;
}

export interface VersionsReport {
  readonly oldToNew: VersionRun;
  readonly newToOld: VersionRun;
}

function crossRun(from: "old" | "new", saver: VMStateDescription, loader: VMStateDescription, state: State, name: string): VersionRun {
  const to = from === "old" ? "new" : "old";
  const problems: string[] = [];
  const target = loadTargetFor(loader, state);
  const { bytes, saveTrace, saveError } = tracedSave(saver, state, name);
  if (saveError) problems.push(`${from} save failed: ${saveError.message}`);
  const { loadTrace, loadError, consumed } = saveError
    ? { loadTrace: [] as TraceEntry[], loadError: undefined, consumed: 0 }
    : tracedLoad(loader, bytes, saver.version, target, name);
  if (loadError) problems.push(`${to} load failed: ${loadError.message}`);
  if (!saveError && !loadError && consumed !== bytes.length) problems.push(`${to} load consumed ${consumed} of ${bytes.length} bytes`);
  let traceMismatch: VersionRun["traceMismatch"];
  if (!saveError && !loadError) {
    const strip = (t: TraceEntry[]) => t.filter((e) => e.kind !== "optional").map((e, i) => (e.kind === "startStruct" && i > 0 ? { ...e, value: null } : e));
    const d = diffTraces(strip(saveTrace), strip(loadTrace));
    if (d) {
      traceMismatch = { index: d.index, ...(d.a ? { save: d.a } : {}), ...(d.b ? { load: d.b } : {}) };
      problems.push(describeDiff("traces", d, `${from} save`, `${to} load`));
    }
  }
  const saved = coverageOf(saveTrace);
  const loadedCoverage = coverageOf(loadTrace);
  return {
    from,
    to,
    version: saver.version,
    ok: problems.length === 0,
    problems,
    bytes,
    consumed,
    ...(saveError ? { saveError } : {}),
    ...(loadError ? { loadError } : {}),
    saveTrace,
    loadTrace,
    ...(traceMismatch ? { traceMismatch } : {}),
    loaded: target,
    saved,
    loadedCoverage,
    notSent: unexercised(saver, saved),
    notLoaded: unexercised(loader, loadedCoverage),
  };
}

/**
 * Cross-version migration of `state` (which should hold the fields of both descriptions): the old
 * description saves and the new one loads, then the reverse; each load is at the version the saver
 * wrote. A newer version cannot be loaded by an older description (BAD_VERSION, as in QEMU), and a
 * subsection the loader does not know fails the load (UNKNOWN_SUBSECTION): both show as a failed run.
 */
export function checkVersions(oldVmsd: VMStateDescription, newVmsd: VMStateDescription, state: State, options: { name?: string } = {}): VersionsReport {
  const name = options.name ?? newVmsd.name;
  return {
    oldToNew: crossRun("old", oldVmsd, newVmsd, state, name),
    newToOld: crossRun("new", newVmsd, oldVmsd, state, name),
  };
}

// ---------------------------------------------------------------------------------------------
// Coverage

/**
 * What runs exercised. Paths are description-level: the trace path without counts, sizes and
 * element indexes (`PIIX3.PCIDevice.config`, `slirp.bootp.bootp_clients.macaddr`); a nested
 * struct appears under its VMState name as in the trace, a subsection under its own name.
 */
export interface Coverage {
  /** Every field path visited (including the root's name and nested struct paths). */
  readonly fields: Set<string>;
  /** Subsection paths entered (`fw_cfg.fw_cfg/dma`). */
  readonly subsections: Set<string>;
  /**
   * Version- or test-gated fields reached, each (name, present) pair once. The name is the parent's
   * path + the FIELD name (for a struct field: `PIIX3.dev`, not its VMState name).
   */
  readonly gatedFields: { name: string; present: boolean }[];
}

/** The coverage of one trace. */
export function coverageOf(trace: Iterable<TraceEntry>): Coverage {
  const c: Coverage = { fields: new Set(), subsections: new Set(), gatedFields: [] };
  addTrace(c, trace);
  return c;
}

function addGated(c: Coverage, name: string, present: boolean): void {
  if (!c.gatedFields.some((g) => g.name === name && g.present === present)) c.gatedFields.push({ name, present });
}

function addTrace(c: Coverage, trace: Iterable<TraceEntry>): void {
  for (const e of trace) {
    switch (e.kind) {
      case "endStruct":
      case "endArray":
      case "endSubsection":
        break;
      case "startSubsection":
        c.subsections.add(e.field);
        break;
      case "optional":
        addGated(c, e.field, e.value === true);
        break;
      default:
        c.fields.add(e.field);
    }
  }
}

/** The union of several coverages. */
export function mergeCoverage(...cs: Coverage[]): Coverage {
  const out: Coverage = { fields: new Set(), subsections: new Set(), gatedFields: [] };
  for (const c of cs) {
    for (const f of c.fields) out.fields.add(f);
    for (const s of c.subsections) out.subsections.add(s);
    for (const g of c.gatedFields) addGated(out, g.name, g.present);
  }
  return out;
}

/** Every field, subsection and gated field of a description, as coverage paths (the root path is its VMState name). */
export interface DescriptionPaths {
  readonly fields: string[];
  readonly subsections: string[];
  /** Version- or test-gated fields (parent path + field name). */
  readonly gated: string[];
}

export function descriptionPaths(vmsd: VMStateDescription): DescriptionPaths {
  const out: DescriptionPaths = { fields: [], subsections: [], gated: [] };
  walkPaths(vmsd, vmsd.name, out, new Set());
  return out;
}

function walkPaths(vmsd: VMStateDescription, at: string, out: DescriptionPaths, open: Set<VMStateDescription>): void {
  if (open.has(vmsd)) return; // a recursive description: list each level once
  open.add(vmsd);
  for (const f of vmsd.fields) {
    if (f.kind === "validate") continue;
    if (f.test || (f.version ?? 0) > 0) out.gated.push(`${at}.${f.name}`);
    switch (f.kind) {
      case "struct":
      case "tmp": {
        const p = `${at}.${f.vmsd.name}`;
        out.fields.push(p);
        walkPaths(f.vmsd, p, out, open);
        break;
      }
      case "structArray":
      case "list": {
        const p = `${at}.${f.name}`;
        out.fields.push(p);
        walkPaths(f.vmsd, p, out, open);
        break;
      }
      case "pointerArray": {
        const p = `${at}.${f.name}`;
        out.fields.push(p);
        if (typeof f.elem !== "string") walkPaths(f.elem, p, out, open);
        break;
      }
      case "gtree": {
        const p = `${at}.${f.name}`;
        out.fields.push(p);
        if (f.keyVmsd) {
          out.fields.push(`${p}.${f.keyVmsd.name}`);
          walkPaths(f.keyVmsd, `${p}.${f.keyVmsd.name}`, out, open);
        } else {
          out.fields.push(`${p}.key`);
        }
        out.fields.push(`${p}.${f.valueVmsd.name}`);
        walkPaths(f.valueVmsd, `${p}.${f.valueVmsd.name}`, out, open);
        break;
      }
      default:
        out.fields.push(`${at}.${f.name}`);
    }
  }
  for (const sub of vmsd.subsections ?? []) {
    const p = `${at}.${sub.name}`;
    out.subsections.push(p);
    walkPaths(sub, p, out, open);
  }
  open.delete(vmsd);
}

export interface Unexercised {
  /** Fields never visited. */
  readonly fields: string[];
  /** Subsections never sent/loaded. */
  readonly subsections: string[];
  /** Gated fields never reached present. */
  readonly gatedNeverPresent: string[];
  /** Gated fields never reached absent. */
  readonly gatedNeverAbsent: string[];
}

/** What of `vmsd` the runs in `coverage` (one, or several merged) did not exercise. */
export function unexercised(vmsd: VMStateDescription, coverage: Coverage | readonly Coverage[]): Unexercised {
  const c = Array.isArray(coverage) ? mergeCoverage(...(coverage as Coverage[])) : (coverage as Coverage);
  const d = descriptionPaths(vmsd);
  const uniq = (xs: string[]) => [...new Set(xs)];
  return {
    fields: uniq(d.fields.filter((f) => !c.fields.has(f))),
    subsections: uniq(d.subsections.filter((s) => !c.subsections.has(s))),
    gatedNeverPresent: uniq(d.gated.filter((g) => !c.gatedFields.some((x) => x.name === g && x.present))),
    gatedNeverAbsent: uniq(d.gated.filter((g) => !c.gatedFields.some((x) => x.name === g && !x.present))),
  };
}
