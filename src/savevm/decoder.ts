// The streaming decoder of QEMU 7.2 migration streams: framing (wire-format §2) with pluggable section
// handlers, push-style (`push(chunk)`..., then `end()`); the result never depends on where the input was split.
// Each step parses one item from the input window or asks for more bytes; docs/decoder.md tells how items,
// device sections and the vmdesc trailer are found. Browser-safe.
import { type SectionRef, VmstreamError } from "../io/errors.js";
import { createKernels } from "../kernels/index.js";
import type { Kernels } from "../kernels/types.js";
import type { Vmdesc } from "../vmstate/vmdesc.js";
import { CommandReader } from "./commands.js";
import { configurationSpec, readConfiguration } from "./configuration.js";
import { CMD, DEFAULT_LIMITS, type DecoderLimits, SEC } from "./constants.js";
import { DeferredInput, decodeDeviceSection, deviceSectionResult, VmdescEntries } from "./device-sections.js";
import { footerError, readFileHeader, readFullHeader } from "./framing.js";
import { InputWindow } from "./input-window.js";
import { LiveSections, MaterializedCount, refOf } from "./live-sections.js";
import type { ConfigurationInfo, DecodeResult, DecoderEvent, DecoderOptions, SectionHeader, SectionRecord, ValidationSummary, VmdescInfo } from "./types.js";
import { completenessOf, DecodeLog } from "./verdict.js";
import { parseVmdescJson, readVmdescTrailer } from "./vmdesc.js";

enum Phase {
  Header,
  AfterHeader,
  Config,
  Items,
  Section,
  Footer,
  Device,
  AfterEof,
  Vmdesc,
  Done,
  /** The rest of a PACKAGED body after POSTCOPY_RUN or EOF inside it: QEMU does not read it. */
  Skip,
}

const NEED = -1;

/** Where a stream that ends in a phase was cut. */
const CUT_IN: Partial<Record<Phase, string>> = {
  [Phase.Header]: "inside the file header",
  [Phase.Config]: "inside the configuration section",
  [Phase.Section]: "inside a section payload",
  [Phase.Footer]: "before the section footer",
  [Phase.Device]: "inside a device section",
  [Phase.Vmdesc]: "inside the vmdesc trailer",
  [Phase.Skip]: "inside a PACKAGED command",
};

/** The vmdesc that decodes device sections: from the options, from the trailer search, or as parsed. */
interface KnownVmdesc {
  readonly text: string;
  readonly json: Vmdesc;
  readonly from: "option" | "search" | "stream";
  readonly entries: VmdescEntries;
}

const hex = (n: number): string => "0x" + n.toString(16).padStart(2, "0");

export class SavevmDecoder {
  readonly options: Readonly<DecoderOptions>;
  readonly limits: DecoderLimits;
  readonly kernels: Kernels;
  private readonly ownKernels: boolean;
  private readonly input: InputWindow;
  /** Bytes the current step needs before it is tried again. */
  private needed = 1;
  private needHint = 0;

  private phase: Phase;
  /** Ends (absolute offsets) of the open PACKAGED bodies, innermost last. */
  private readonly packages: number[] = [];
  private readonly live: LiveSections;
  private footersOn: boolean | undefined;
  private version = 0;
  private config: ConfigurationInfo | undefined;
  private pageSizeValue: number;
  private readonly commands: CommandReader;

  private readonly log: DecodeLog;
  private eofOffset: number | undefined;
  private vmdescInfo: VmdescInfo | undefined;
  private known: KnownVmdesc | undefined;
  private deferred: DeferredInput | undefined;
  /** Device payload bytes decoded and the visits their walks made: the next walk's allowance (limits.visitsBase). */
  private readonly deviceWork = { bytes: 0, visits: 0 };
  /** The buffer handed out by inputSpace() while deferring (the window is not in use then). */
  private scratch: Uint8Array | undefined;

  /** pause(): the parse loop stops after its current step; chunks pushed meanwhile wait in `held` (from `heldHead` on). */
  private paused = false;
  private held: Uint8Array[] = [];
  private heldHead = 0;
  private heldBytes = 0;
  /** finishInput(): no more bytes come, so what is buffered is decoded to its end (a partial item is an error). */
  private inputDone = false;

  private error: VmstreamError | undefined;
  private ended = false;
  private disposed = false;
  private result_: DecodeResult | undefined;

  constructor(options: DecoderOptions = {}) {
    this.options = options;
    this.limits = { ...DEFAULT_LIMITS, ...(options.limits ?? {}) };
    this.ownKernels = options.kernels === undefined;
    this.kernels = options.kernels ?? createKernels();
    this.input = new InputWindow(this.kernels, this.limits.windowBytes);
    this.log = new DecodeLog(this.limits);
    this.phase = options.headerless ? Phase.Items : Phase.Header;
    this.pageSizeValue = options.pageSize ?? 4096;
    if (options.vmdesc !== undefined) this.know(parseVmdescJson(options.vmdesc, this.limits.vmdescDepth), "option");
    this.commands = new CommandReader((name) => this.live.ramBlock(name));
    this.live = new LiveSections(options.handlers, {
      kernels: this.kernels,
      options,
      limits: this.limits,
      pageSize: () => this.pageSizeValue,
      configuration: () => this.config,
      warn: (m) => this.warn(m),
      record: options.records ? (record) => this.emit({ type: "record", header: this.live.current!.header, record }) : undefined,
      materialized: new MaterializedCount(),
    });
  }

  // ------------------------------------------------------------------------------------------
  // public API

  /** The target page size in force: options.pageSize, or what `configuration/target-page-bits` says. */
  get pageSize(): number {
    return this.pageSizeValue;
  }

  /** Feed the next bytes of the stream. Throws a VmstreamError as soon as the input is known to be bad. */
  push(chunk: Uint8Array): void {
    this.guard("push", () => this.feed(chunk));
  }

  /**
   * Zero-copy input: a view of the free part of the input window in the kernels' memory (at least `min`
   * bytes, as far as limits.windowBytes allows) to write the next bytes of the stream into, e.g. with
   * `fs.readSync`; then call `commit(n)` with the number of bytes written there. Writing a chunk there and
   * committing it is the same as `push(chunk)`, without the copy. The view is valid until the next call on
   * this decoder or on its kernels (the window may move, and the memory may grow).
   */
  inputSpace(min = 1): Uint8Array {
    return this.guard("inputSpace", () => {
      if (this.deferred) return (this.scratch = new Uint8Array(Math.max(min, 1 << 20)));
      this.scratch = undefined;
      return this.input.space(min);
    });
  }

  /** `n` bytes were written at the start of the last `inputSpace()` view: decode them. */
  commit(n: number): void {
    this.guard("commit", () => {
      const scratch = this.scratch;
      this.scratch = undefined;
      if (scratch) {
        if (!(Number.isInteger(n) && n >= 0 && n <= scratch.length)) throw new VmstreamError("STATE", `commit(${n}): not within the input space`);
        this.feed(scratch.subarray(0, n));
        return;
      }
      this.input.commit(n);
      if (this.input.available >= this.needed) this.run(false);
    });
  }

  /**
   * Stop decoding after the step in progress (for an event callback that must wait for something outside the
   * stream, e.g. the multifd channels at a sync point). Bytes pushed meanwhile are kept, copied; resume() goes on.
   */
  pause(): void {
    this.paused = true;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Go on after pause(): decode what is buffered (which may pause again). */
  resume(): void {
    this.guard("resume", () => {
      this.paused = false;
      if (this.input.available >= this.needed) this.run(false);
      while (!this.paused && this.heldHead < this.held.length) {
        const chunk = this.held[this.heldHead]!;
        const taken = this.feedUntilPause(chunk);
        this.heldBytes -= taken;
        // a chunk that paused the decoder again keeps its place, what is left of it first
        if (taken < chunk.length) this.held[this.heldHead] = chunk.subarray(taken);
        else this.heldHead++;
      }
      // forget the chunks fed (amortised linear: compact once half of the list is done)
      if (this.heldHead === this.held.length || (this.heldHead > 64 && this.heldHead * 2 > this.held.length)) {
        this.held = this.held.slice(this.heldHead);
        this.heldHead = 0;
      }
      if (this.inputDone && !this.paused) this.run(true);
    });
  }

  /**
   * The input has ended: decode everything buffered now, as end() would, but still pausing where a caller
   * pauses (a parser waits for more bytes before some items: without this, a caller that pauses at events
   * would see the last ones only inside end()). end() gives the verdict afterwards.
   */
  finishInput(): void {
    this.guard("finishInput", () => {
      this.inputDone = true;
      if (!this.paused) this.run(true);
    });
  }

  /** No more input: finish, check completeness, return the result. Throws on a truncated or bad stream. */
  end(): DecodeResult {
    if (this.error) throw this.error;
    if (this.paused) throw this.fail(new VmstreamError("STATE", "end() while paused"));
    if (this.ended) {
      if (this.result_) return this.result_;
      throw new VmstreamError("STATE", "end() called twice");
    }
    this.ended = true;
    try {
      this.run(true);
      if (this.deferred) this.resolveDeferred();
      if (!this.terminal()) throw this.truncated(0, true);
      this.result_ = this.buildResult();
      this.releaseWorkMemory();
      return this.result_;
    } catch (e) {
      throw this.fail(e);
    }
  }

  /** What has been decoded so far (also after an error). */
  summary(): ValidationSummary {
    const c = this.completeness();
    return {
      bytes: this.input.offset + (this.deferred?.length ?? 0) + this.input.available + this.heldBytes,
      machine: this.config?.machine,
      sections: this.log.sectionCount,
      devices: this.log.devices.length,
      commands: this.log.commandCount,
      eof: this.eofOffset !== undefined,
      vmdesc: this.vmdescInfo !== undefined,
      complete: c.complete,
      live: this.live.results(),
      warnings: [...this.log.warnings],
    };
  }

  /** Free all kernel memory this decoder holds (including materialised RAM of a result not yet disposed). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.releaseWorkMemory();
    this.live.dispose();
  }

  // ------------------------------------------------------------------------------------------
  // input and errors

  /** Run an input call under the sticky error: the first error is kept and thrown by every later call. */
  private guard<T>(what: string, f: () => T): T {
    if (this.error) throw this.error;
    if (this.ended) throw new VmstreamError("STATE", `${what}() after end()`);
    try {
      return f();
    } catch (e) {
      throw this.fail(e);
    }
  }

  private feed(chunk: Uint8Array): void {
    const taken = this.feedUntilPause(chunk);
    if (taken < chunk.length) {
      this.held.push(chunk.slice(taken));
      this.heldBytes += chunk.length - taken;
    }
  }

  /** Decode from `chunk` until the decoder pauses; returns the bytes taken. */
  private feedUntilPause(chunk: Uint8Array): number {
    let o = 0;
    while (o < chunk.length) {
      if (this.paused) return o;
      if (this.deferred) {
        this.deferred.append(chunk.subarray(o));
        return chunk.length;
      }
      o += this.input.append(chunk.subarray(o), this.needed);
      if (this.input.available >= this.needed) this.run(false);
    }
    return o;
  }

  private releaseWorkMemory(): void {
    this.input.release(!this.ownKernels);
    this.live.finish();
  }

  private fail(e: unknown): VmstreamError {
    let err = VmstreamError.wrap(e, { offset: this.input.offset });
    const ctx = this.sectionContext();
    if (ctx) err = err.withContext({ section: ctx });
    this.error = err;
    if (!this.ownKernels && !this.disposed) {
      // a shared kernels instance: give everything back (a failed decode returns no result)
      try {
        this.dispose();
      } catch {
        // nothing more to do
      }
    }
    return err;
  }

  private sectionContext(): SectionRef | undefined {
    if ((this.phase === Phase.Section || this.phase === Phase.Footer) && this.live.current) return refOf(this.live.current.header);
    return undefined;
  }

  // ------------------------------------------------------------------------------------------
  // the parse loop

  private run(final: boolean): void {
    const w = this.input;
    for (;;) {
      if (this.deferred || this.paused) return;
      const availAbs = w.offset + w.available;
      const packageEnd = this.packages[this.packages.length - 1];
      let limitAbs = availAbs;
      let hard = final;
      if (packageEnd !== undefined && packageEnd <= availAbs) {
        limitAbs = packageEnd;
        hard = true;
      }
      if (packageEnd !== undefined && w.offset === packageEnd && (this.phase === Phase.Items || this.phase === Phase.Skip)) {
        this.packages.pop();
        this.phase = Phase.Items;
        continue;
      }
      const n = limitAbs - w.offset;
      const before = this.phase;
      this.needHint = 0;
      const c = this.step(n, hard);
      if (c === NEED) {
        if (hard) {
          if (this.terminal() && n === 0) return;
          throw this.truncated(n, final);
        }
        let need = Math.max(this.needHint, n + 1);
        if (packageEnd !== undefined) need = Math.min(need, packageEnd - w.offset);
        this.needed = Math.max(1, need);
        return;
      }
      if (c > n || c < 0) throw new VmstreamError("INTERNAL", `parser consumed ${c} of ${n} bytes`, { offset: w.offset });
      w.consume(c);
      if (c === 0 && this.phase === before && !this.deferred) {
        throw new VmstreamError("INTERNAL", "parser made no progress", { offset: w.offset, detail: `phase ${before}` });
      }
    }
  }

  private terminal(): boolean {
    return this.phaseDone() && this.input.available === 0;
  }

  private phaseDone(): boolean {
    return (this.phase === Phase.AfterEof || this.phase === Phase.Done) && this.packages.length === 0;
  }

  private truncated(n: number, final: boolean): VmstreamError {
    const p = this.phase;
    const inItems = p === Phase.AfterHeader || p === Phase.Items;
    const cut = inItems ? (n > 0 ? "inside a section header or command" : "before QEMU_VM_EOF") : (CUT_IN[p] ?? "early");
    const where = this.packages.length > 0 && !final ? " (inside a PACKAGED command)" : "";
    const section = p === Phase.Device ? this.peekDeviceRef() : p === Phase.Section || p === Phase.Footer ? refOf(this.live.current!.header) : undefined;
    return new VmstreamError("EOF", "truncated stream", {
      offset: this.input.offset,
      section,
      detail: `the stream ends ${cut}${where}${n > 0 ? ` (${n} bytes left over)` : ""}`,
    });
  }

  private peekDeviceRef(): SectionRef | undefined {
    try {
      const { id, idstr, instanceId } = readFullHeader(this.input.reader(0, this.input.available));
      return { idstr, id, instanceId };
    } catch {
      return undefined;
    }
  }

  private step(n: number, hard: boolean): number {
    const w = this.input;
    switch (this.phase) {
      case Phase.Header:
        return this.stepHeader(n);
      case Phase.AfterHeader:
        if (n < 1) return NEED;
        this.phase = w.byteAt(0) === SEC.CONFIGURATION ? Phase.Config : Phase.Items;
        return 0;
      case Phase.Config:
        return this.stepConfig(n, hard);
      case Phase.Items:
        return this.stepItem(n);
      case Phase.Section:
        return this.stepSection(n, hard);
      case Phase.Footer:
        return this.stepFooter(n);
      case Phase.Device:
        return this.stepDevice(n, hard);
      case Phase.AfterEof:
        if (n < 1) return NEED;
        if (w.byteAt(0) !== SEC.VMDESCRIPTION) {
          throw new VmstreamError("BAD_SECTION", "unexpected data after QEMU_VM_EOF", {
            offset: w.offset,
            detail: `expected the vmdesc trailer (0x06), found ${hex(w.byteAt(0))}`,
          });
        }
        this.phase = Phase.Vmdesc;
        return 0;
      case Phase.Vmdesc:
        return this.stepVmdesc(n);
      case Phase.Done:
        if (n === 0) return NEED;
        throw new VmstreamError("BAD_SECTION", "trailing bytes after the vmdesc trailer", { offset: w.offset, detail: `${n}${hard ? "" : " or more"} bytes` });
      case Phase.Skip:
        return n === 0 ? NEED : n;
    }
  }

  private stepHeader(n: number): number {
    const version = readFileHeader(this.input.atHand(n, false));
    if (version === undefined) return NEED;
    this.version = version;
    this.emit({ type: "header", version });
    this.phase = Phase.AfterHeader;
    return 8;
  }

  private stepConfig(n: number, hard: boolean): number {
    const w = this.input;
    const read = readConfiguration(w.atHand(n, hard), this.limits);
    if ("need" in read) {
      this.needHint = read.need;
      return NEED;
    }
    const state = w.detach(read.state);
    const config: ConfigurationInfo = { ...configurationSpec(state), state, offset: w.offset, size: read.size };
    this.config = config;
    if (config.targetPageBits !== undefined) {
      const ps = 2 ** config.targetPageBits;
      if (this.options.pageSize !== undefined && this.options.pageSize !== ps) {
        this.warn(`configuration/target-page-bits says ${ps}-byte pages, options.pageSize is ${this.options.pageSize}: using ${ps}`);
      }
      this.pageSizeValue = ps;
    }
    this.emit({ type: "configuration", configuration: config });
    this.phase = Phase.Items;
    return read.size;
  }

  private stepItem(n: number): number {
    const w = this.input;
    if (n < 1) return NEED;
    const t = w.byteAt(0);
    switch (t) {
      case SEC.EOF:
        if (this.packages.length > 0) {
          this.phase = Phase.Skip; // QEMU leaves the package's loop; the rest of the package is dropped
          return 1;
        }
        this.eofOffset = w.offset;
        this.emit({ type: "eof", offset: w.offset });
        this.phase = Phase.AfterEof;
        return 1;
      case SEC.START:
      case SEC.FULL: {
        const r = w.reader(0, n);
        let read: ReturnType<typeof readFullHeader>;
        try {
          read = readFullHeader(r);
        } catch (e) {
          if (e instanceof VmstreamError && e.code === "EOF") return NEED;
          throw e;
        }
        const header: SectionHeader = { ...read, offset: w.offset };
        const handler = this.live.handlerFor(read.idstr);
        if (handler) {
          this.live.start(header, handler, w.offset + r.pos);
          this.begun(header);
          return r.pos;
        }
        if (t === SEC.START) {
          throw new VmstreamError("BAD_SECTION", "START section for a section that is not iterative", {
            offset: w.offset,
            section: refOf(header),
            detail: "no live handler for this idstr",
          });
        }
        this.phase = Phase.Device;
        return 0;
      }
      case SEC.PART:
      case SEC.END: {
        if (n < 5) return NEED;
        this.begun(this.live.resume(t === SEC.PART ? "part" : "end", w.reader(1, 5).be32(), w.offset));
        return 5;
      }
      case SEC.COMMAND:
        return this.stepCommand(n);
      default:
        throw new VmstreamError("BAD_SECTION", "unknown section type", {
          offset: w.offset,
          detail: `${hex(t)}${t === SEC.FOOTER ? " (a section footer where none is expected)" : ""}`,
        });
    }
  }

  /** A live section's header was read: its payload is next. */
  private begun(header: SectionHeader): void {
    this.phase = Phase.Section;
    if (this.options.records) this.emit({ type: "begin", header });
  }

  private stepSection(n: number, hard: boolean): number {
    const w = this.input;
    const cur = this.live.current!;
    const res = this.live.feed({ kernels: this.kernels, ptr: w.ptr, len: n, offset: w.offset, final: hard });
    // a handler that does not report its records: its payload bytes instead (a fresh view: it may have grown the memory)
    if (this.options.records && !cur.handler.emitsRecords && res.consumed > 0) {
      this.emit({ type: "payload", header: cur.header, bytes: this.input.view(0, res.consumed) });
    }
    if (res.done) {
      this.phase = Phase.Footer;
      return res.consumed;
    }
    return res.consumed === 0 ? NEED : res.consumed;
  }

  private stepFooter(n: number): number {
    const w = this.input;
    const cur = this.live.current!;
    const h = cur.header;
    if (this.footersOn === undefined) {
      if (n < 1) return NEED;
      this.footersOn = w.byteAt(0) === SEC.FOOTER;
    }
    let len = 0;
    if (this.footersOn) {
      if (n < 1) return NEED;
      if (w.byteAt(0) !== SEC.FOOTER || n >= 5) {
        const bad = footerError(w.atHand(n, false), 0, h);
        if (bad) throw bad;
      }
      if (n < 5) return NEED;
      len = 5;
    }
    this.recordSection(h, cur.payloadOffset, w.offset - cur.payloadOffset, w.offset + len - h.offset, this.footersOn);
    this.phase = Phase.Items;
    return len;
  }

  private recordSection(h: SectionHeader, payloadOffset: number, payloadSize: number, size: number, footer: boolean): number {
    const rec: SectionRecord = {
      type: h.type,
      id: h.id,
      idstr: h.idstr,
      instanceId: h.instanceId,
      version: h.version,
      offset: h.offset,
      size,
      payloadOffset,
      payloadSize,
      footer,
      depth: this.packages.length,
    };
    const index = this.log.section(rec);
    this.emit({ type: "section", section: rec });
    return index;
  }

  // ------------------------------------------------------------------------------------------
  // device (FULL) sections

  private stepDevice(n: number, hard: boolean): number {
    const w = this.input;
    const out = decodeDeviceSection(w.atHand(n, hard), {
      sources: this.options,
      limits: this.limits,
      entries: this.known?.entries,
      footers: this.footersOn,
      device: { machine: this.config?.machine, pageSize: this.pageSizeValue },
      budget: {
        base: this.limits.visitsBase + this.limits.visitsPerByte * this.deviceWork.bytes - this.deviceWork.visits,
        perByte: this.limits.visitsPerByte,
      },
    });
    if (out.kind === "need") {
      this.needHint = out.hint;
      return NEED;
    }
    if (out.kind === "defer") {
      this.deferred = new DeferredInput(w.offset, out.ref, this.limits.deferredBytes, out.failed);
      this.deferred.append(w.drain());
      return 0;
    }
    const { header: h, hdrLen, attempt: a } = out;
    this.deviceWork.bytes += a.payloadEnd - hdrLen;
    this.deviceWork.visits += a.visits;
    if (this.footersOn === undefined) this.footersOn = a.footers;
    this.live.bindDevice(h);
    if (out.vmdescIndex !== undefined) this.known!.entries.use(out.vmdescIndex);
    if (out.warning) this.warn(out.warning);
    const sectionIndex = this.recordSection(h, w.offset + hdrLen, a.payloadEnd - hdrLen, a.total, a.footers);
    const entry = out.vmdescIndex !== undefined ? this.known!.entries.entry(out.vmdescIndex) : undefined;
    const dev = deviceSectionResult(out, sectionIndex, w.detach(a.state), entry);
    this.log.device(dev);
    this.emit({ type: "device", device: dev });
    this.phase = Phase.Items;
    return a.total;
  }

  private know(v: { text: string; json: Vmdesc }, from: KnownVmdesc["from"]): void {
    this.known = { ...v, from, entries: new VmdescEntries(v.json) };
  }

  private resolveDeferred(): void {
    const { bytes, text, json } = this.deferred!.resolve(this.limits);
    this.know({ text, json }, "search");
    this.deferred = undefined;
    this.needed = 1;
    this.feed(bytes);
    this.run(true);
  }

  // ------------------------------------------------------------------------------------------
  // commands

  private stepCommand(n: number): number {
    const read = this.commands.read(this.input.atHand(n, false), this.packages, this.limits);
    if ("need" in read) {
      this.needHint = read.need;
      return NEED;
    }
    const rec = read.record;
    if (read.packageEnd !== undefined) this.packages.push(read.packageEnd);
    this.log.command(rec);
    this.emit({ type: "command", command: rec });
    if (rec.cmd === CMD.POSTCOPY_RUN && rec.depth > 0) this.phase = Phase.Skip; // QEMU leaves the package's loop
    return read.size;
  }

  // ------------------------------------------------------------------------------------------
  // vmdesc

  private stepVmdesc(n: number): number {
    const w = this.input;
    const read = readVmdescTrailer(w.atHand(n, false), this.limits);
    if ("need" in read) {
      this.needHint = read.need;
      return NEED;
    }
    const { length, text, json } = read;
    this.vmdescInfo = { offset: w.offset, length, text, json };
    if (this.known && this.known.text !== text) {
      if (this.known.from === "search") {
        throw new VmstreamError("MISMATCH", "the vmdesc trailer differs from the one found at the end of the stream", { offset: w.offset });
      }
      this.warn("the stream's vmdesc trailer differs from options.vmdesc (device sections were decoded with options.vmdesc)");
    }
    if (!this.known) this.know({ text, json }, "stream");
    if (json.page_size !== this.pageSizeValue) this.warn(`the vmdesc says ${json.page_size}-byte target pages, the decoder used ${this.pageSizeValue}`);
    this.emit({ type: "vmdesc", vmdesc: this.vmdescInfo });
    this.phase = Phase.Done;
    return 5 + length;
  }

  // ------------------------------------------------------------------------------------------
  // result

  private warn(message: string): void {
    this.log.warnings.push(message);
    this.emit({ type: "warning", message });
  }

  private emit(e: DecoderEvent): void {
    this.options.onEvent?.(e);
  }

  private completeness() {
    const doc = this.vmdescInfo?.json ?? (this.known?.from === "option" ? this.known.json : undefined);
    return completenessOf(this.log.devices, doc, this.eofOffset !== undefined, this.phaseDone(), this.vmdescInfo !== undefined);
  }

  private buildResult(): DecodeResult {
    const self = this;
    return {
      bytes: this.input.offset,
      version: this.version,
      configuration: this.config,
      footers: this.footersOn,
      pageSize: this.pageSizeValue,
      sections: this.log.sections,
      sectionCount: this.log.sectionCount,
      devices: this.log.devices,
      live: this.live.results(),
      commands: this.log.commands,
      commandCount: this.log.commandCount,
      eof: this.eofOffset !== undefined,
      eofOffset: this.eofOffset,
      vmdesc: this.vmdescInfo,
      completeness: this.completeness(),
      warnings: this.log.warnings,
      kernels: this.kernels,
      dispose() {
        if (self.disposed) return;
        self.disposed = true;
        self.live.dispose();
      },
    };
  }
}
