// The decoder's live (iterative) sections: one handler per idstr, made on first use from the options'
// factories; section ids bound by START/FULL headers; the section being fed. Browser-safe.
import { type SectionRef, VmstreamError, type VmstreamErrorCode } from "../io/errors.js";
import type {
  DecoderOptions,
  FeedResult,
  HandlerContext,
  HandlerFactory,
  MaterializedBytes,
  MaterializeOptions,
  SectionHandler,
  SectionHeader,
  SectionInput,
} from "./types.js";

interface Binding {
  readonly idstr: string;
  readonly instanceId: number;
  readonly version: number;
  /** undefined: a device (FULL) section, which has no PART or END. */
  readonly handler: SectionHandler | undefined;
}

/** The shared count of materialised bytes (HandlerContext.materialized). */
export class MaterializedCount implements MaterializedBytes {
  bytes = 0;
  private readonly settlers: (() => void)[] = [];
  settle(): void {
    for (const s of this.settlers) s();
  }
  onSettle(exact: () => void): void {
    this.settlers.push(exact);
  }
}

export function refOf(h: SectionHeader): SectionRef {
  return { idstr: h.idstr, id: h.id, instanceId: h.instanceId };
}

export class LiveSections {
  private readonly handlers = new Map<string, SectionHandler>();
  private readonly bindings = new Map<number, Binding>();
  /** The live section being fed. */
  current: { readonly header: SectionHeader; readonly handler: SectionHandler; readonly payloadOffset: number } | undefined;

  constructor(
    private readonly factories: Readonly<Record<string, HandlerFactory>> | undefined,
    private readonly ctx: HandlerContext,
  ) {}

  /** The handler of a live idstr, or undefined for a device section. */
  handlerFor(idstr: string): SectionHandler | undefined {
    let h = this.handlers.get(idstr);
    if (h) return h;
    // own properties only: an idstr such as "constructor" or "__proto__" comes from the stream
    const factory = this.factories && Object.hasOwn(this.factories, idstr) ? this.factories[idstr] : undefined;
    if (!factory) return undefined;
    h = factory(this.ctx);
    this.handlers.set(idstr, h);
    return h;
  }

  /** A START/FULL header of a live idstr binds its section id; the section starts. */
  start(header: SectionHeader, handler: SectionHandler, payloadOffset: number): void {
    const ref = refOf(header);
    if (header.instanceId !== 0)
      throw new VmstreamError("BAD_SECTION", "unknown section instance", {
        offset: header.offset,
        section: ref,
        detail: `${header.idstr} has only instance 0`,
      });
    if (header.version > handler.maxVersion) {
      throw new VmstreamError("BAD_VERSION", "unsupported section version", {
        offset: header.offset,
        section: ref,
        detail: `${header.version}, this side loads up to ${handler.maxVersion}`,
      });
    }
    this.bindings.set(header.id, { idstr: header.idstr, instanceId: header.instanceId, version: header.version, handler });
    this.begin(header, handler, payloadOffset);
  }

  /** A PART/END header (its id at `offset`): the section it continues starts. */
  resume(type: "part" | "end", id: number, offset: number): SectionHeader {
    const b = this.bindings.get(id);
    if (!b) throw new VmstreamError("BAD_SECTION", "PART/END section for a section id that was never started", { offset, detail: `section id ${id}` });
    if (!b.handler)
      throw new VmstreamError("BAD_SECTION", "PART/END section for a section that is not iterative", {
        offset,
        section: { idstr: b.idstr, id, instanceId: b.instanceId },
      });
    const header: SectionHeader = { type, id, idstr: b.idstr, instanceId: b.instanceId, version: b.version, offset };
    this.begin(header, b.handler, offset + 5);
    return header;
  }

  /** A device section bound its id (a later PART/END for it is an error). */
  bindDevice(h: SectionHeader): void {
    this.bindings.set(h.id, { idstr: h.idstr, instanceId: h.instanceId, version: h.version, handler: undefined });
  }

  /** Feed the current section's handler; checks what it says it consumed. */
  feed(input: SectionInput): FeedResult {
    const { header, handler } = this.current!;
    const res = handler.feed(input, header);
    if (!(res.consumed >= 0 && res.consumed <= input.len)) {
      throw new VmstreamError("INTERNAL", `section handler ${header.idstr} consumed ${res.consumed} of ${input.len} bytes`, { offset: input.offset });
    }
    return res;
  }

  /** RAM's block by name (POSTCOPY_RAM_DISCARD ranges are checked against it). */
  ramBlock(name: string): { readonly length: bigint } | undefined {
    return this.handlers.get("ram")?.lookupBlock?.(name);
  }

  /** Every handler's result, by idstr. */
  results(): Record<string, unknown> {
    const live: Record<string, unknown> = {};
    for (const [k, h] of this.handlers) live[k] = h.result();
    return live;
  }

  /** The stream is over: handlers give back their work memory. */
  finish(): void {
    for (const h of this.handlers.values()) h.finish?.();
  }

  /** Handlers give back everything (materialised data too). */
  dispose(): void {
    for (const h of this.handlers.values()) h.dispose?.();
  }

  private begin(header: SectionHeader, handler: SectionHandler, payloadOffset: number): void {
    this.current = { header, handler, payloadOffset };
    try {
      handler.begin(header);
    } catch (e) {
      throw VmstreamError.wrap(e, { offset: header.offset, section: refOf(header) });
    }
  }
}

/** Whether a decode keeps a kind's data: `materialize: true`, or the kind's flag. */
export function materializes(options: Pick<DecoderOptions, "materialize">, kind: keyof MaterializeOptions): boolean {
  const m = options.materialize;
  return m === true || (typeof m === "object" && m[kind] === true);
}

/** An error about the byte at window address `at` of a live section's input: its absolute offset, the section named. */
export type InputError = (code: VmstreamErrorCode, summary: string, at: number, detail?: string) => VmstreamError;

export function inputError(input: SectionInput, h: SectionHeader): InputError {
  return (code, summary, at, detail) => new VmstreamError(code, summary, { offset: input.offset + (at - input.ptr), section: refOf(h), detail });
}
