// The destination side of a live migration: bytes pushed as they arrive, each record applied as soon as it is
// complete (RAM pages straight into the destination's or the host's memory), the verdict only when the input is
// closed: "complete" at QEMU_VM_EOF (and the whole vmdesc when one follows), else "failed" with the first error
// and the state marked partial. docs/live-migration.md, "The destination". Browser-safe.
import { VmstreamError } from "../io/errors.js";
import type { Kernels } from "../kernels/types.js";
import type { DecodeResult, DecoderEvent, HandlerContext, ValidationSummary } from "../savevm/types.js";
import { incompleteError } from "../savevm/verdict.js";
import type { RamBlockData } from "../sections/ram/format.js";
import { RamHandler, type RamResult } from "../sections/ram/handler.js";
import { StreamDecoder, type StreamDecoderOptions } from "../sections/stream.js";

export type DestinationStatus = "receiving" | "complete" | "failed";

/**
 * Where the stream is, from the last section seen: "header" before any section, "setup" after a START
 * (MEM_SIZE), "iterate" after a PART (precopy rounds), "complete" after an END (the stop-and-copy round),
 * "devices" after a FULL (device state), "eof" after QEMU_VM_EOF, "vmdesc" after the trailer.
 */
export type MigrationPhase = "header" | "setup" | "iterate" | "complete" | "devices" | "eof" | "vmdesc";

export interface DestinationPages {
  zero: number;
  normal: number;
  xbzrle: number;
  compressed: number;
}

export interface DestinationProgress {
  readonly status: DestinationStatus;
  readonly phase: MigrationPhase;
  /** Bytes received (pushed). */
  readonly bytes: number;
  /** Sections decoded so far. */
  readonly sections: number;
  /** Device (FULL) sections decoded so far. */
  readonly devices: number;
  /** RAM page records applied so far, by kind. */
  readonly pages: DestinationPages;
  /** Sum of the RAM block lengths announced by MEM_SIZE. */
  readonly ramBytes: number;
}

export interface MigrationDestinationOptions extends StreamDecoderOptions {
  /**
   * What to keep. Default `{ ram: true }`: a destination holds the guest's RAM (in the kernels' memory, or in
   * the host's blocks); `false` only checks the stream (pages are validated and counted).
   */
  readonly materialize?: StreamDecoderOptions["materialize"];
  /**
   * The host's memory for a RAM block, or undefined for the default (a block in the kernels' memory when
   * `materialize.ram`, otherwise pages are validated and counted only). The block must be in the kernels'
   * memory (pass the same `kernels`) and exactly as long as the stream says, else the migration fails.
   * Its pages may hold anything beforehand: ZERO records clear non-zero pages.
   */
  readonly ramBlock?: (name: string, length: number) => RamBlockData | undefined;
  /**
   * Require the vmdesc trailer after QEMU_VM_EOF. Default false: QEMU's own loader does not need it (and
   * streams of machines with suppress-vmdesc have none); a trailer that starts but is cut off fails either way.
   */
  readonly requireVmdesc?: boolean;
  /** Called with the progress after a push that moved the phase or crossed `progressBytes`, and at the end. */
  readonly onProgress?: (progress: DestinationProgress) => void;
  /** Bytes between two onProgress calls within a phase (default 1 MiB). */
  readonly progressBytes?: number;
}

export interface DestinationResult {
  readonly status: "complete" | "failed";
  /** True when the migration failed: whatever was applied (RAM in the host's blocks included) is partial. */
  readonly partial: boolean;
  /** The first error of a failed migration (offset, section). */
  readonly error?: VmstreamError;
  /** Bytes received. */
  readonly bytes: number;
  readonly progress: DestinationProgress;
  /** What was decoded (also for a failed migration: up to the error). */
  readonly summary: ValidationSummary;
  /** The decode result of a complete migration (device states, RAM blocks, vmdesc, ...). */
  readonly decoded?: DecodeResult;
  /** RAM blocks and record counts (also for a failed migration). */
  readonly ram?: RamResult;
  /** Free the kernel memory the destination allocated (not the host's blocks). */
  dispose(): void;
}

const emptyPages = (): DestinationPages => ({ zero: 0, normal: 0, xbzrle: 0, compressed: 0 });

export class MigrationDestination {
  private readonly decoder: StreamDecoder;
  private readonly options: MigrationDestinationOptions;
  private statusValue: DestinationStatus = "receiving";
  private errorValue: VmstreamError | undefined;
  private received = 0;
  private phaseValue: MigrationPhase = "header";
  private sectionCount = 0;
  private deviceCount = 0;
  private lastReport = 0;
  private final: DestinationResult | undefined;
  private ended = false;

  constructor(options: MigrationDestinationOptions = {}) {
    this.options = options;
    const user = options.onEvent;
    const ramBlock = options.ramBlock;
    const handlers = ramBlock ? { ram: (ctx: HandlerContext) => new RamHandler(ctx, { ramBlock }), ...(options.handlers ?? {}) } : options.handlers;
    this.decoder = new StreamDecoder({
      ...options,
      materialize: options.materialize ?? { ram: true },
      ...(handlers ? { handlers } : {}),
      onEvent: (e) => {
        this.track(e);
        user?.(e);
      },
    });
  }

  get status(): DestinationStatus {
    return this.statusValue;
  }

  /** The first error, once the migration failed. */
  get error(): VmstreamError | undefined {
    return this.errorValue;
  }

  /** Bytes received so far. */
  get bytes(): number {
    return this.received;
  }

  /** The phase of the stream so far (see MigrationPhase). */
  get phase(): MigrationPhase {
    return this.phaseValue;
  }

  get kernels(): Kernels {
    return this.decoder.kernels;
  }

  /**
   * The next bytes as they arrive. Returns false once the migration has failed (this chunk and later ones are
   * ignored: the first error sticks). The chunk is copied: the caller may reuse it.
   */
  push(chunk: Uint8Array): boolean {
    if (this.ended) throw new VmstreamError("STATE", "push() after end() of a migration destination");
    if (this.statusValue === "failed") return false;
    this.received += chunk.length;
    try {
      this.decoder.push(chunk);
    } catch (e) {
      this.failWith(e);
      return false;
    }
    this.maybeReport();
    return true;
  }

  /** The input is closed: the verdict. Never throws for bad input; a second call returns the same result. */
  end(): DestinationResult {
    if (this.final) return this.final;
    this.ended = true;
    let decoded: DecodeResult | undefined;
    if (this.statusValue === "receiving") {
      try {
        decoded = this.decoder.end();
        const incomplete = incompleteError(decoded);
        if (incomplete) throw incomplete;
        if (this.options.requireVmdesc && !decoded.vmdesc) {
          throw new VmstreamError("INCOMPLETE", "the migration stream ends without its vmdesc trailer", { offset: decoded.bytes, detail: "requireVmdesc" });
        }
        this.statusValue = "complete";
      } catch (e) {
        this.failWith(e);
      }
    }
    const summary = this.summarySafe();
    const complete = this.statusValue === "complete";
    const progress = this.progress(summary);
    const decoder = this.decoder;
    const keep = complete ? decoded : undefined;
    if (!complete) decoded?.dispose();
    this.final = {
      status: complete ? "complete" : "failed",
      partial: !complete,
      ...(this.errorValue ? { error: this.errorValue } : {}),
      bytes: this.received,
      progress,
      summary,
      ...(keep ? { decoded: keep } : {}),
      ...(summary.live["ram"] ? { ram: summary.live["ram"] as RamResult } : {}),
      dispose() {
        keep?.dispose();
        decoder.dispose();
      },
    };
    this.options.onProgress?.(progress);
    return this.final;
  }

  /**
   * The source failed (connection reset, read error): end with status "failed" even if the bytes so far
   * happen to form a complete stream. The error keeps the decoder's location (offset, section) and names the
   * source's failure.
   */
  abort(reason: unknown): DestinationResult {
    if (this.final) return this.final;
    const why = reason instanceof Error ? reason.message : String(reason);
    if (this.statusValue === "receiving") {
      let located: VmstreamError | undefined;
      try {
        this.decoder.end().dispose();
      } catch (e) {
        located = VmstreamError.wrap(e);
      }
      const detail = [located?.detail, `the source failed: ${why}`].filter(Boolean).join("; ");
      this.failWith(
        new VmstreamError(located?.code === "EOF" ? "EOF" : "IO", located?.summary ?? "the migration source failed", {
          offset: located?.offset ?? this.received,
          ...(located?.section ? { section: located.section } : {}),
          ...(located?.path ? { path: located.path } : {}),
          detail,
          cause: reason,
        }),
      );
    }
    return this.end();
  }

  /** Where the migration is now. */
  progress(summary?: ValidationSummary): DestinationProgress {
    const s = summary ?? this.summarySafe();
    const ram = s.live["ram"] as RamResult | undefined;
    const r = ram?.records;
    return {
      status: this.statusValue,
      phase: this.phaseValue,
      bytes: this.received,
      sections: this.sectionCount,
      devices: this.deviceCount,
      pages: r ? { zero: r.zero, normal: r.normal, xbzrle: r.xbzrle, compressed: r.compressed } : emptyPages(),
      ramBytes: ram ? Number(ram.totalBytes) : 0,
    };
  }

  /** RAM blocks as received so far (their `data` views show the pages applied up to now). */
  ram(): RamResult | undefined {
    return this.summarySafe().live["ram"] as RamResult | undefined;
  }

  /** Free everything (the result's memory too). */
  dispose(): void {
    this.final?.dispose();
    this.decoder.dispose();
  }

  private failWith(e: unknown): void {
    this.errorValue = VmstreamError.wrap(e, { offset: this.received });
    this.statusValue = "failed";
    if (!this.ended) this.options.onProgress?.(this.progress()); // end() reports its own
  }

  private summarySafe(): ValidationSummary {
    try {
      return this.decoder.summary();
    } catch {
      return { bytes: 0, machine: undefined, sections: 0, devices: 0, commands: 0, eof: false, vmdesc: false, complete: false, live: {}, warnings: [] };
    }
  }

  private track(e: DecoderEvent): void {
    let next = this.phaseValue;
    switch (e.type) {
      case "section":
        this.sectionCount++;
        next = e.section.type === "start" ? "setup" : e.section.type === "part" ? "iterate" : e.section.type === "end" ? "complete" : "devices";
        // a FULL ram/block section is still device-phase data; a START after devices (rare) keeps "setup"
        break;
      case "device":
        this.deviceCount++;
        break;
      case "eof":
        next = "eof";
        break;
      case "vmdesc":
        next = "vmdesc";
        break;
      default:
        break;
    }
    if (next !== this.phaseValue) {
      this.phaseValue = next;
      // reported at once (not at the end of the push) so that no phase is skipped
      this.options.onProgress?.(this.progress());
      this.lastReport = this.received;
    }
  }

  private maybeReport(): void {
    const cb = this.options.onProgress;
    if (!cb) return;
    const every = this.options.progressBytes ?? 1 << 20;
    if (this.received - this.lastReport < every) return;
    this.lastReport = this.received;
    cb(this.progress());
  }
}

/**
 * Receive one migration from an async source of chunks (a socket, a file stream, ...). Stops reading at the
 * first error. Never throws for bad input or a failing source: the result says "failed" and why.
 */
export async function receiveMigration(source: AsyncIterable<Uint8Array>, options: MigrationDestinationOptions = {}): Promise<DestinationResult> {
  let d: MigrationDestination;
  try {
    d = new MigrationDestination(options);
  } catch (e) {
    const error = VmstreamError.wrap(e);
    const progress: DestinationProgress = { status: "failed", phase: "header", bytes: 0, sections: 0, devices: 0, pages: emptyPages(), ramBytes: 0 };
    return {
      status: "failed",
      partial: true,
      error,
      bytes: 0,
      progress,
      summary: { bytes: 0, machine: undefined, sections: 0, devices: 0, commands: 0, eof: false, vmdesc: false, complete: false, live: {}, warnings: [] },
      dispose() {},
    };
  }
  try {
    for await (const chunk of source) {
      if (!d.push(chunk)) break;
    }
  } catch (e) {
    return d.abort(e);
  }
  return d.end();
}
