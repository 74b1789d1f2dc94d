// What the converters share: the decoder they replay (records reported, nothing materialised, device sections
// without a registered description described from the vmdesc), record copies, counts, a run over a buffer.
// Browser-safe.
import type { VmstreamError } from "../io/errors.js";
import type { DecodeResult, DecoderEvent } from "../savevm/types.js";
import { incompleteError, pushAll } from "../savevm/verdict.js";
import type { HtabItem } from "../sections/spapr-htab/format.js";
import { StreamDecoder, type StreamDecoderOptions } from "../sections/stream.js";
import { descriptionFromVmdesc } from "../vmstate/from-vmdesc.js";

export function replayDecoder(options: StreamDecoderOptions = {}, event: (e: DecoderEvent) => void): StreamDecoder {
  const userEvent = options.onEvent;
  return new StreamDecoder({
    describe: (_i, _n, entry) => descriptionFromVmdesc(entry),
    ...options,
    materialize: false,
    records: true,
    onEvent: (e) => {
      event(e);
      userEvent?.(e);
    },
  });
}

/**
 * Copies of records whose byte fields outlive the decoder's window. Bytes are copied into 1 MiB blocks (one
 * allocation per block, not per page); a block is never reused, so views of it may be handed out.
 */
export class RecordCopier {
  private block = new Uint8Array(0);
  private used = 0;

  copy<R>(r: R): R {
    const o = { ...(r as Record<string, unknown>) };
    for (const k of Object.keys(o)) {
      const v = o[k];
      if (v instanceof Uint8Array) o[k] = this.bytes(v);
    }
    return o as R;
  }

  private bytes(v: Uint8Array): Uint8Array {
    if (v.length > this.block.length - this.used) {
      this.block = new Uint8Array(Math.max(1 << 20, v.length));
      this.used = 0;
    }
    const out = this.block.subarray(this.used, this.used + v.length);
    out.set(v);
    this.used += v.length;
    return out;
  }
}

/** What every converter's report counts. */
export interface ReplayCounts {
  readonly sections: number;
  readonly devices: number;
  readonly ramRecords: number;
  readonly blockRecords: number;
  readonly htabChunks: number;
  readonly commands: number;
  /**
   * The input decoded without an error but is not a complete stream (incompleteError: vmdesc devices without a
   * section, or sections the vmdesc does not list): the output is no complete stream either.
   */
  readonly incomplete?: VmstreamError;
}

/** The report field for a finished decode: `incomplete` when the stream is not complete. */
export function verdictField(r: DecodeResult): { incomplete?: VmstreamError } {
  const e = incompleteError(r);
  return e ? { incomplete: e } : {};
}

/** The records a replay counts for its report. */
export class RecordCounts {
  ram = 0;
  block = 0;
  htabChunks = 0;

  add(idstr: string, r: unknown): void {
    if (idstr === "ram") this.ram++;
    else if (idstr === "block") this.block++;
    else if (idstr === "spapr/htab" && (r as HtabItem).kind === "chunk") this.htabChunks++;
  }
}

/** Run a push-style converter over a whole buffer: its output chunks and its report. */
export function convertBuffer<R>(
  c: { push(chunk: Uint8Array): Uint8Array[]; end(): { chunks: Uint8Array[]; report: R }; dispose(): void },
  input: Uint8Array,
): { chunks: Uint8Array[]; bytes: number; report: R } {
  const chunks: Uint8Array[] = [];
  try {
    pushAll({ push: (b) => chunks.push(...c.push(b)) }, input);
    const rest = c.end();
    chunks.push(...rest.chunks);
    return { chunks, bytes: chunks.reduce((a, b) => a + b.length, 0), report: rest.report };
  } catch (e) {
    c.dispose();
    throw e;
  }
}
