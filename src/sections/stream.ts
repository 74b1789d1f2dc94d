// The stream decoder with everything built in: the framing decoder of src/savevm with the section kinds of
// this folder, the x86 device registry for x86 PC machines and the legacy/opaque vmdesc fallback, and one-shot
// decode / validate helpers. Browser-safe (Node adapters: src/sections/node.ts).
import { VmstreamError } from "../io/errors.js";
import { SavevmDecoder } from "../savevm/decoder.js";
import type { DecodeResult, DecoderOptions, ValidationResult } from "../savevm/types.js";
import { type ByteSource, emptySummary, failedVerdictOf, pushAll, runDecoder, runValidation, verdictOf } from "../savevm/verdict.js";
import type { BlockResult } from "./block/handler.js";
import { defaultVmdescFallback } from "./device/fallback.js";
import { type DeviceRegistryOption, resolveRegistry } from "./device/registry.js";
import type { DirtyBitmapResult } from "./dirty-bitmap/handler.js";
import { builtinHandlers } from "./kinds.js";
import type { RamResult } from "./ram/handler.js";
import type { HtabResult } from "./spapr-htab/handler.js";

export interface StreamDecoderOptions extends Omit<DecoderOptions, "devices"> {
  /**
   * Registered device descriptions: a registry, "auto" (default: the x86 `pc` descriptions when the
   * configuration names an x86 PC machine) or "none" (every device section from the vmdesc).
   */
  readonly devices?: DeviceRegistryOption;
}

function wire(options: StreamDecoderOptions): DecoderOptions {
  const { devices, ...rest } = options;
  return {
    ...rest,
    handlers: { ...builtinHandlers, ...(options.handlers ?? {}) },
    devices: resolveRegistry(devices),
    vmdescFallback: options.vmdescFallback ?? defaultVmdescFallback,
  };
}

/**
 * Push-style decoder of QEMU 7.2 migration streams:
 * `const d = new StreamDecoder(opts); d.push(chunk); ...; const result = d.end();`
 */
export class StreamDecoder extends SavevmDecoder {
  constructor(options: StreamDecoderOptions = {}) {
    super(wire(options));
  }
}

/** Decode a whole stream held in memory (fed in 1 MiB slices). */
export function decodeBytes(bytes: Uint8Array, options: StreamDecoderOptions = {}): DecodeResult {
  const d = new StreamDecoder(options);
  try {
    pushAll(d, bytes);
    return d.end();
  } catch (e) {
    d.dispose();
    throw e;
  }
}

/** Decode from a buffer, an iterable or an async iterable of chunks. */
export async function decodeStream(source: ByteSource, options: StreamDecoderOptions = {}): Promise<DecodeResult> {
  const d = new StreamDecoder(options);
  try {
    return await runDecoder(d, source);
  } catch (e) {
    d.dispose();
    throw e;
  }
}

/** `check`-style verdict: {ok, error?, summary}. Never throws for bad input. RAM is never materialised. */
export function validateStream(source: ByteSource, options: StreamDecoderOptions = {}): Promise<ValidationResult> {
  let d: StreamDecoder;
  try {
    d = new StreamDecoder({ ...options, materialize: false });
  } catch (e) {
    return Promise.resolve({ ok: false, error: VmstreamError.wrap(e), summary: emptySummary() });
  }
  return runValidation(d, source);
}

/** Synchronous validateStream for a buffer. */
export function validateBytes(bytes: Uint8Array, options: StreamDecoderOptions = {}): ValidationResult {
  let d: StreamDecoder;
  try {
    d = new StreamDecoder({ ...options, materialize: false });
  } catch (e) {
    return { ok: false, error: VmstreamError.wrap(e), summary: emptySummary() };
  }
  try {
    pushAll(d, bytes);
    return verdictOf(d, d.end());
  } catch (e) {
    return failedVerdictOf(d, e);
  }
}

/** Typed views of the built-in handlers' results. */
export const ramOf = (r: DecodeResult): RamResult | undefined => r.live.ram as RamResult | undefined;
export const blockOf = (r: DecodeResult): BlockResult | undefined => r.live.block as BlockResult | undefined;
export const htabOf = (r: DecodeResult): HtabResult | undefined => r.live["spapr/htab"] as HtabResult | undefined;
export const dirtyBitmapOf = (r: DecodeResult): DirtyBitmapResult | undefined => r.live["dirty-bitmap"] as DirtyBitmapResult | undefined;
