// Driving a decoder over a whole source, and the verdict on a stream: complete (EOF, and every vmdesc device
// with its section and back), incomplete, or the first error — with a summary of what was decoded either way.
// Generic: the decoder class is a parameter. Browser-safe.
import { VmstreamError } from "../io/errors.js";
import type { Vmdesc } from "../vmstate/vmdesc.js";
import type { DecoderLimits } from "./constants.js";
import { ByNameInstance } from "./device-sections.js";
import type { CommandRecord, Completeness, DecodeResult, DeviceSectionResult, SectionRecord, ValidationResult, ValidationSummary } from "./types.js";

export type DecoderLike = { push(chunk: Uint8Array): void; end(): DecodeResult; summary(): ValidationSummary; dispose(): void };

export type ByteSource = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** Feed a whole buffer in window-sized slices (memory stays bounded). */
export function pushAll(d: { push(chunk: Uint8Array): void }, bytes: Uint8Array, slice = 1 << 20): void {
  for (let o = 0; o < bytes.length; o += slice) d.push(bytes.subarray(o, Math.min(bytes.length, o + slice)));
}

/** Drive a decoder over a buffer, an iterable or an async iterable of chunks. */
export async function runDecoder(d: DecoderLike, source: ByteSource): Promise<DecodeResult> {
  if (source instanceof Uint8Array) pushAll(d, source);
  else if (Symbol.asyncIterator in source) {
    for await (const c of source as AsyncIterable<Uint8Array>) pushAll(d, c);
  } else {
    for (const c of source as Iterable<Uint8Array>) pushAll(d, c);
  }
  return d.end();
}

/** What a decode has listed so far: each list stops at its limit, the counts go on. */
export class DecodeLog {
  readonly sections: SectionRecord[] = [];
  sectionCount = 0;
  readonly devices: DeviceSectionResult[] = [];
  readonly commands: CommandRecord[] = [];
  commandCount = 0;
  readonly warnings: string[] = [];

  constructor(private readonly limits: Pick<DecoderLimits, "sectionRecords" | "commandRecords">) {}

  /** Returns the section's index in stream order. */
  section(rec: SectionRecord): number {
    if (this.sections.length < this.limits.sectionRecords) this.sections.push(rec);
    return this.sectionCount++;
  }

  device(dev: DeviceSectionResult): void {
    if (this.devices.length < this.limits.sectionRecords) this.devices.push(dev);
  }

  command(rec: CommandRecord): void {
    this.commandCount++;
    if (this.commands.length < this.limits.commandRecords) this.commands.push(rec);
  }
}

/**
 * Completeness of a decode: vmdesc devices matched to FULL sections in order (an unmatched section's
 * result gets its entry filled in); without a vmdesc, EOF alone decides.
 */
export function completenessOf(
  devices: readonly DeviceSectionResult[],
  doc: Vmdesc | undefined,
  eof: boolean,
  ended: boolean,
  vmdescSeen: boolean,
): Completeness {
  if (!doc) return { complete: eof && ended, eof, vmdesc: false, missingDevices: [], unlistedSections: [] };
  const used = new Array<boolean>(devices.length).fill(false);
  const sections = new ByNameInstance();
  devices.forEach((s, i) => sections.add(s.idstr, s.instanceId, i));
  const missing: { name: string; instanceId: number }[] = [];
  for (const d of doc.devices) {
    const found = sections.take(d.name, d.instance_id);
    if (found < 0) missing.push({ name: d.name, instanceId: d.instance_id });
    else {
      used[found] = true;
      const dev = devices[found]!;
      if (!dev.vmdesc) dev.vmdesc = d;
    }
  }
  const unlisted = devices.filter((_, i) => !used[i]).map((s) => ({ idstr: s.idstr, instanceId: s.instanceId }));
  return {
    complete: eof && ended && missing.length === 0 && unlisted.length === 0,
    eof,
    vmdesc: vmdescSeen,
    missingDevices: missing,
    unlistedSections: unlisted,
  };
}

/** What an incomplete stream lacks, in one line. */
export function incompleteness(c: Completeness): string {
  return [
    !c.eof ? "no QEMU_VM_EOF" : "",
    c.missingDevices.length ? `vmdesc devices without a section: ${c.missingDevices.map((m) => `${m.name}/${m.instanceId}`).join(", ")}` : "",
    c.unlistedSections.length ? `sections not in the vmdesc: ${c.unlistedSections.map((m) => `${m.idstr}/${m.instanceId}`).join(", ")}` : "",
  ]
    .filter(Boolean)
    .join("; ");
}

/**
 * The incomplete verdict on a decode that ended without an error, or undefined when the stream is complete:
 * the one wording every command and the library give (the offset is where the stream ends).
 */
export function incompleteError(r: Pick<DecodeResult, "bytes" | "completeness">): VmstreamError | undefined {
  if (r.completeness.complete) return undefined;
  return new VmstreamError("INCOMPLETE", "incomplete stream", { offset: r.bytes, detail: incompleteness(r.completeness) });
}

/** Validation verdict for a finished decode. */
export function verdictOf(d: DecoderLike, r: DecodeResult): ValidationResult {
  const summary = d.summary();
  r.dispose();
  const error = incompleteError(r);
  return error ? { ok: false, error, summary } : { ok: true, summary };
}

/** Validation verdict for a decode that threw. */
export function failedVerdictOf(d: DecoderLike, e: unknown): ValidationResult {
  const error = VmstreamError.wrap(e);
  let summary: ValidationSummary;
  try {
    summary = d.summary();
  } catch {
    summary = emptySummary();
  }
  d.dispose();
  return { ok: false, error, summary };
}

export function emptySummary(): ValidationSummary {
  return { bytes: 0, machine: undefined, sections: 0, devices: 0, commands: 0, eof: false, vmdesc: false, complete: false, live: {}, warnings: [] };
}

/** Validation verdict: ok, or the first error; and a summary of what was decoded either way. Never throws for bad input. */
export async function runValidation(d: DecoderLike, source: ByteSource): Promise<ValidationResult> {
  try {
    return verdictOf(d, await runDecoder(d, source));
  } catch (e) {
    return failedVerdictOf(d, e);
  }
}
