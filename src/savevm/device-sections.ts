// Device (FULL) sections: which description decodes a section (the one choice every reader makes: the
// registered description first, then one from the section's vmdesc entry, then the fallback), one decode
// attempt on the bytes at hand, and the buffer that holds the final device phase until the vmdesc trailer
// arrives. Browser-safe.
import { type SectionRef, VmstreamError } from "../io/errors.js";
import type { VisitBudget } from "../visitor/wire.js";
import type { State, VMStateDescription } from "../vmstate/types.js";
import type { Vmdesc, VmdescDevice } from "../vmstate/vmdesc.js";
import { type DecoderLimits, PEEK_LOOKAHEAD, SEC } from "./constants.js";
import { footerError, readFullHeader } from "./framing.js";
import { type AtHand, walkAtHand } from "./input-window.js";
import type { DeviceContext, DeviceRegistry, DeviceSectionResult, DeviceSource, SectionHeader, VmdescDescriber, VmdescFallback } from "./types.js";
import { findVmdescTrailer, vmdescPayloadSize } from "./vmdesc.js";

/** Where device descriptions come from (DecoderOptions' devices / describe / vmdescFallback). */
export interface DescriptionSources {
  readonly devices?: DeviceRegistry;
  readonly describe?: VmdescDescriber;
  readonly vmdescFallback?: VmdescFallback;
}

/** The registered description for a section, if any (a registry that throws is a located error). */
export function registeredDescription(
  sources: DescriptionSources,
  ref: SectionRef,
  version: number,
  ctx: DeviceContext,
  offset: number,
): VMStateDescription | undefined {
  try {
    return sources.devices?.(ref.idstr, ref.instanceId ?? 0, version, ctx);
  } catch (e) {
    throw VmstreamError.wrap(e, { offset, section: ref });
  }
}

/** The description a section's vmdesc entry gives: `describe`'s, else the fallback's. */
export function vmdescDescription(
  sources: DescriptionSources,
  entry: VmdescDevice,
  ref: SectionRef,
  version: number,
  limits: DecoderLimits,
  offset: number,
): { description: VMStateDescription; source: DeviceSource } {
  const ctx = { offset, section: ref };
  if (entry.version !== undefined && entry.version !== version) {
    throw new VmstreamError("MISMATCH", "the vmdesc describes another version of this section", {
      ...ctx,
      detail: `vmdesc version ${String(entry.version)}, section version ${version}`,
    });
  }
  let found: { description: VMStateDescription; source: DeviceSource } | undefined;
  try {
    const d = sources.describe?.(ref.idstr, ref.instanceId ?? 0, entry);
    found = d ? { description: d, source: "vmdesc" } : sources.vmdescFallback?.(ref.idstr, ref.instanceId ?? 0, entry, limits);
  } catch (e) {
    throw VmstreamError.wrap(e, ctx, "BAD_VALUE");
  }
  if (!found)
    throw new VmstreamError("NO_DESCRIPTION", "no description for a device section", { ...ctx, detail: "options.describe gave none for its vmdesc entry" });
  return found;
}

/**
 * Indices grouped by (name, instance), each group in stream order, to be taken first to last: matching sections
 * to vmdesc entries costs O(1) per section instead of a scan from the first entry (100k devices are common in
 * hostile input, and possible in real streams).
 */
export class ByNameInstance {
  private readonly groups = new Map<string, { readonly indices: number[]; next: number }>();

  add(name: string, instanceId: number, index: number): void {
    const k = `${instanceId} ${name}`; // instance ids are digits: no two pairs give one key
    const g = this.groups.get(k);
    if (g) g.indices.push(index);
    else this.groups.set(k, { indices: [index], next: 0 });
  }

  /** The first index of the group not yet taken (skipping those `taken` says are), or -1. */
  first(name: string, instanceId: number, taken?: (i: number) => boolean): number {
    const g = this.groups.get(`${instanceId} ${name}`);
    if (!g) return -1;
    while (g.next < g.indices.length && taken?.(g.indices[g.next]!)) g.next++;
    return g.next < g.indices.length ? g.indices[g.next]! : -1;
  }

  /** Take the first index of the group (see first()). */
  take(name: string, instanceId: number): number {
    const i = this.first(name, instanceId);
    if (i >= 0) this.groups.get(`${instanceId} ${name}`)!.next++;
    return i;
  }
}

/** The device entries of a vmdesc, each describing one section: sections take the first unused entry of their name and instance. */
export class VmdescEntries {
  private readonly used: boolean[] = [];
  private readonly index = new ByNameInstance();

  constructor(readonly doc: Vmdesc) {
    doc.devices.forEach((d, i) => this.index.add(d.name, d.instance_id, i));
  }

  /** Index of the first unused entry for (idstr, instance), or -1. */
  find(idstr: string, instanceId: number): number {
    return this.index.first(idstr, instanceId, (i) => this.used[i] === true);
  }

  entry(i: number): VmdescDevice {
    return this.doc.devices[i]!;
  }

  use(i: number): void {
    this.used[i] = true;
  }
}

export type Attempt =
  | { readonly kind: "need" }
  | { readonly kind: "fail"; readonly error: VmstreamError }
  | {
      readonly kind: "ok";
      readonly state: State;
      readonly payloadEnd: number;
      readonly total: number;
      readonly footers: boolean;
      /** Visits the walk made (see VisitBudget). */
      readonly visits: number;
    };

/**
 * Decode a device payload with `desc`, then check the footer: "ok" only when conclusive (see walkAtHand),
 * "fail" when it cannot be this description, else "need".
 */
export function attemptDevice(
  desc: VMStateDescription,
  h: SectionHeader,
  hdrLen: number,
  input: AtHand,
  footersOn: boolean | undefined,
  budget?: VisitBudget,
): Attempt {
  const { n, hard } = input;
  const ref = { idstr: h.idstr, id: h.id, instanceId: h.instanceId };
  const walk = walkAtHand(desc, input, hdrLen, h.version, h.idstr, budget);
  if (walk.kind === "need") return { kind: "need" };
  if (walk.kind === "fail") return { kind: "fail", error: walk.error.withContext({ section: ref }) };
  const { state, end, conclusive } = walk;
  let footers = footersOn;
  if (footers === undefined) {
    if (end >= n) {
      if (!hard) return { kind: "need" };
      footers = false;
    } else footers = input.byteAt(end) === SEC.FOOTER;
  }
  let total = end;
  if (footers) {
    if (end + 5 > n) {
      if (!hard) return { kind: "need" };
      return {
        kind: "fail",
        error: new VmstreamError("EOF", "truncated stream", { offset: input.offset + end, section: ref, detail: "the stream ends before the section footer" }),
      };
    }
    const bad = footerError(input, end, h);
    if (bad) {
      return {
        kind: "fail",
        error: new VmstreamError(bad.code, bad.summary, {
          offset: bad.offset,
          section: ref,
          detail: `${bad.detail ?? ""}; the description "${desc.name}" consumed ${end - hdrLen} payload bytes`,
        }),
      };
    }
    total = end + 5;
  }
  if (!conclusive) return { kind: "need" };
  return { kind: "ok", state, payloadEnd: end, total, footers, visits: walk.visits };
}

/** What decoding a device section at hand came to. */
export type DeviceOutcome =
  | { readonly kind: "need"; readonly hint: number }
  /** Nothing describes it yet: hold the input until the vmdesc trailer (`failed`: the registered description's error). */
  | { readonly kind: "defer"; readonly ref: SectionRef; readonly failed?: VmstreamError }
  | {
      readonly kind: "ok";
      readonly header: SectionHeader;
      readonly hdrLen: number;
      readonly attempt: Extract<Attempt, { kind: "ok" }>;
      readonly description: VMStateDescription;
      readonly source: DeviceSource;
      readonly vmdescIndex?: number;
      readonly warning?: string;
    };

export interface DeviceDecodeContext {
  readonly sources: DescriptionSources & { readonly strictDevices?: boolean };
  readonly limits: DecoderLimits;
  /** The vmdesc entries, when the vmdesc is known. */
  readonly entries: VmdescEntries | undefined;
  readonly footers: boolean | undefined;
  readonly device: DeviceContext;
  /** What the walk may cost: the decoder's allowance so far (docs/decoder.md, "Bounds"). */
  readonly budget?: VisitBudget;
}

/**
 * Decode the device (FULL) section at the start of `input`: the registered description first; when it fails,
 * or there is none, the one from the section's vmdesc entry (a failing registered description is a warning).
 */
export function decodeDeviceSection(input: AtHand, ctx: DeviceDecodeContext): DeviceOutcome {
  const r = input.reader(0);
  const { id, idstr, instanceId, version } = readFullHeader(r);
  const hdrLen = r.pos;
  const header: SectionHeader = { type: "full", id, idstr, instanceId, version, offset: input.offset };
  const ref: SectionRef = { idstr, id, instanceId };
  const index = ctx.entries ? ctx.entries.find(idstr, instanceId) : -1;
  const entry = index >= 0 ? ctx.entries!.entry(index) : undefined;
  // the vmdesc says how long the payload is: wait for exactly that much; else back off exponentially (a big
  // section is retried at 2x, 4x ... the bytes of the failed attempt: linear total work)
  let sizeHint: number | undefined;
  if (entry) {
    try {
      sizeHint = hdrLen + vmdescPayloadSize(entry, ctx.limits) + 5 + PEEK_LOOKAHEAD;
    } catch {
      sizeHint = undefined;
    }
  }
  const need = (): DeviceOutcome => ({ kind: "need", hint: sizeHint !== undefined && sizeHint > input.n ? sizeHint : Math.max(input.n + 1, 2 * input.n) });
  let warning: string | undefined;
  let regError: VmstreamError | undefined;
  const reg = registeredDescription(ctx.sources, ref, version, ctx.device, input.offset);
  if (reg) {
    const a = attemptDevice(reg, header, hdrLen, input, ctx.footers, ctx.budget);
    if (a.kind === "need") return need();
    if (a.kind === "ok") return { kind: "ok", header, hdrLen, attempt: a, description: reg, source: "registry" };
    // the input ends inside the section: that is a truncated stream, not a wrong description
    if (ctx.sources.strictDevices || (input.hard && a.error.code === "EOF")) throw a.error;
    regError = registeredFailure(reg.name, a.error, ref, input.offset);
    warning = `${idstr} (instance ${instanceId}): registered description "${reg.name}" failed (${a.error.message}); decoded with the vmdesc`;
  }
  if (!ctx.entries) return { kind: "defer", ref, ...(regError ? { failed: regError } : {}) };
  if (!entry) {
    if (regError) throw regError;
    throw new VmstreamError("NO_DESCRIPTION", "no description for a device section", {
      offset: input.offset,
      section: ref,
      detail: reg ? "" : "not registered, and not listed in the vmdesc",
    });
  }
  const { description, source } = vmdescDescription(ctx.sources, entry, ref, version, ctx.limits, input.offset);
  const a = attemptDevice(description, header, hdrLen, input, ctx.footers, ctx.budget);
  if (a.kind === "need") return need();
  if (a.kind === "fail") throw a.error.withContext({ offset: input.offset, section: ref });
  return { kind: "ok", header, hdrLen, attempt: a, description, source, vmdescIndex: index, ...(warning ? { warning } : {}) };
}

/** A registered description that does not fit its section, said as such (with the walk's offset and field). */
function registeredFailure(name: string, e: VmstreamError, section: SectionRef, offset: number): VmstreamError {
  return new VmstreamError(e.code, `the registered description "${name}" does not fit this device section`, {
    offset: e.offset ?? offset,
    section,
    ...(e.path !== undefined ? { path: e.path } : {}),
    detail: `${e.summary}${e.detail ? `: ${e.detail}` : ""}`,
    cause: e,
  });
}

/** The result of a decoded device section (`sectionIndex`: its index in stream order; `state`: detached from the window). */
export function deviceSectionResult(
  out: Extract<DeviceOutcome, { kind: "ok" }>,
  sectionIndex: number,
  state: State,
  vmdesc: VmdescDevice | undefined,
): DeviceSectionResult {
  const { header: h, hdrLen, attempt: a } = out;
  return {
    idstr: h.idstr,
    instanceId: h.instanceId,
    version: h.version,
    sectionId: h.id,
    sectionIndex,
    payloadOffset: h.offset + hdrLen,
    payloadSize: a.payloadEnd - hdrLen,
    state,
    description: out.description,
    source: out.source,
    ...(vmdesc ? { vmdesc } : {}),
    ...(out.warning ? { warning: out.warning } : {}),
  };
}

/**
 * The input from the first device section nothing describes yet, held until the end: the vmdesc trailer there
 * says how to decode it (a live stream sends the device phase, EOF, then the vmdesc).
 */
export class DeferredInput {
  private readonly chunks: Uint8Array[] = [];
  private bytes = 0;

  constructor(
    readonly offset: number,
    readonly section: SectionRef,
    private readonly limit: number,
    /** The registered description's error, when there was one that failed. */
    private readonly failed?: VmstreamError,
  ) {}

  get length(): number {
    return this.bytes;
  }

  append(b: Uint8Array): void {
    if (this.bytes + b.length > this.limit) {
      throw new VmstreamError("LIMIT", "too much device state buffered while waiting for the vmdesc trailer", {
        offset: this.offset,
        section: this.section,
        detail: `more than ${this.limit} bytes (limits.deferredBytes); pass options.vmdesc or a description for this section`,
      });
    }
    if (b.length > 0) this.chunks.push(b.slice());
    this.bytes += b.length;
  }

  /** All held bytes, and the vmdesc trailer at their end. Throws when there is none. */
  resolve(limits: DecoderLimits): { bytes: Uint8Array; text: string; json: Vmdesc } {
    const all = new Uint8Array(this.bytes);
    let o = 0;
    for (const c of this.chunks) {
      all.set(c, o);
      o += c.length;
    }
    const found = findVmdescTrailer(all, limits.vmdescBytes, limits.vmdescDepth);
    if (found) return { bytes: all, text: found.text, json: found.json };
    // A complete stream without a vmdesc ends with the EOF byte; anything else is cut short.
    if (all[all.length - 1] !== SEC.EOF) {
      throw new VmstreamError("EOF", "truncated stream", {
        offset: this.offset + all.length,
        detail: `the stream ends neither with QEMU_VM_EOF nor with a vmdesc trailer (cut short, or bytes after its end) after the device section ${this.section.idstr} (id ${this.section.id}) at byte ${this.offset}`,
      });
    }
    if (this.failed) {
      const f = this.failed;
      const detail = `${f.detail}; and the stream has no vmdesc trailer to decode it with instead`;
      throw new VmstreamError(f.code, f.summary, { offset: f.offset, section: f.section, path: f.path, detail, cause: f.cause });
    }
    throw new VmstreamError("NO_DESCRIPTION", "a device section cannot be decoded", {
      offset: this.offset,
      section: this.section,
      detail: "it has no registered description and the stream has no vmdesc trailer (or the stream is truncated)",
    });
  }
}
