// The streaming decoder of QEMU 7.2 migration streams: framing (wire-format §2) with pluggable section
// handlers. Push-style: `d.push(chunk)` any number of times, then `d.end()` returns the result. The result
// never depends on where the input was split.
//
// Input bytes are copied once into a window in the kernels' memory, so RAM records are decoded in place by
// `ramDecode`, a whole window per call; a reader can also write into the window itself (`inputSpace()` +
// `commit(n)`, e.g. `fs.readSync` straight into it: then the kernel's read() is the only copy). Everything else is parsed as "atomic items" (a section header, a
// command, a device section, the vmdesc): an item is parsed when enough bytes are in the window and simply
// retried with more input otherwise (ByteReader reads consume nothing on failure). Device sections use QEMU's
// subsection peek heuristic, so a device decode is trusted only when its peeks stayed inside the bytes at hand
// (PEEK_LOOKAHEAD bytes after it always suffice) or the input has ended; big device sections are retried with exponential back-off (linear total work).
//
// Device (FULL) sections: a registered description (options.devices) is tried first; otherwise the section
// is decoded from its vmdesc entry (options.describe, then options.vmdescFallback). The vmdesc comes after
// EOF, so without it (options.vmdesc) the decoder buffers everything from the first section it cannot decode
// until end(), then finds the trailer at the end of the buffer and decodes the buffered part with it.
//
// This module knows nothing of what is inside RAM/block/htab sections: src/sections plugs those in.
// Browser-safe.
import { ByteReader } from "../io/reader.js";
import { VmstreamError, type ErrorContext, type SectionRef } from "../io/errors.js";
import { createKernels } from "../kernels/index.js";
import type { Kernels } from "../kernels/types.js";
import { WireInputVisitor } from "../visitor/wire.js";
import { loadState } from "../vmstate/engine.js";
import type { State, VMStateDescription } from "../vmstate/types.js";
import type { Vmdesc } from "../vmstate/vmdesc.js";
import { configurationSubsections } from "./configuration.js";
import {
  CMD, CMD_NAMES, DEFAULT_LIMITS, PEEK_LOOKAHEAD, QEMU_VM_FILE_MAGIC, QEMU_VM_FILE_VERSION, QEMU_VM_FILE_VERSION_COMPAT, SEC,
  type DecoderLimits,
} from "./constants.js";
import type {
  CommandRecord, Completeness, ConfigurationInfo, DecodeResult, DecoderEvent, DecoderOptions, DeviceSectionResult, DeviceSource,
  HandlerContext, SectionHandler, SectionHeader, SectionRecord, SectionType, ValidationResult, ValidationSummary, VmdescInfo,
} from "./types.js";
import { findVmdescTrailer, parseVmdescJson, vmdescPayloadSize } from "./vmdesc.js";

const P_HEADER = 0;
const P_AFTER_HEADER = 1;
const P_CONFIG = 2;
const P_ITEMS = 3;
const P_SECTION = 4;
const P_FOOTER = 5;
const P_DEVICE = 6;
const P_AFTER_EOF = 7;
const P_VMDESC = 8;
const P_DONE = 9;
const P_SKIP = 10;

const NEED = -1;
const INITIAL_WINDOW = 1 << 20;
const TYPE_NAMES: Record<number, SectionType> = { 1: "start", 2: "part", 3: "end", 4: "full" };

interface Binding {
  readonly idstr: string;
  readonly instanceId: number;
  readonly version: number;
  readonly handler: SectionHandler | undefined;
}

interface Current {
  header: SectionHeader;
  handler: SectionHandler;
  payloadOffset: number;
}

interface Frame {
  /** Absolute offset where the PACKAGED body ends. */
  readonly end: number;
}

type Attempt =
  | { kind: "need" }
  | { kind: "fail"; error: VmstreamError }
  | { kind: "ok"; state: State; payloadEnd: number; total: number; footers: boolean };

function hex(n: number, w = 2): string {
  return "0x" + n.toString(16).padStart(w, "0");
}

export class SavevmDecoder {
  readonly options: Readonly<DecoderOptions>;
  readonly limits: DecoderLimits;
  readonly kernels: Kernels;
  private readonly ownKernels: boolean;

  // window in the kernels' memory: bytes [rd, wr) of [win, win+cap) are unparsed; `off` = stream offset of rd
  private win = 0;
  private cap = 0;
  private rd = 0;
  private wr = 0;
  private off = 0;
  private needed = 1;
  private needHint = 0;

  private phase: number;
  private readonly frames: Frame[] = [];
  private readonly bindings = new Map<number, Binding>();
  private readonly handlers = new Map<string, SectionHandler>();
  private cur: Current | undefined;
  private footersOn: boolean | undefined;
  private version = 0;
  private config: ConfigurationInfo | undefined;
  private pageSizeValue: number;

  private readonly sectionList: SectionRecord[] = [];
  private sectionCount = 0;
  private readonly deviceList: DeviceSectionResult[] = [];
  private readonly commandList: CommandRecord[] = [];
  private commandCount = 0;
  private postcopy: "none" | "advise" | "discard" | "listen" | "running" = "none";
  private returnPath = false;
  private eofOffset: number | undefined;
  private vmdescInfo: VmdescInfo | undefined;
  /** The vmdesc used to decode device sections: from the options, from the trailer search, or as parsed. */
  private known: { text: string; json: Vmdesc; from: "option" | "search" | "stream" } | undefined;
  private readonly vmdescUsed: boolean[] = [];
  private deferred: { chunks: Uint8Array[]; bytes: number; offset: number; section: SectionRef } | undefined;
  /** The buffer handed out by inputSpace() while deferring (the window is not in use then). */
  private scratch: Uint8Array | undefined;
  private readonly warningList: string[] = [];

  private error: VmstreamError | undefined;
  private ended = false;
  private disposed = false;
  private result_: DecodeResult | undefined;
  private readonly handlerCtx: HandlerContext;

  constructor(options: DecoderOptions = {}) {
    this.options = options;
    this.limits = { ...DEFAULT_LIMITS, ...(options.limits ?? {}) };
    this.ownKernels = options.kernels === undefined;
    this.kernels = options.kernels ?? createKernels();
    this.phase = options.headerless ? P_ITEMS : P_HEADER;
    this.pageSizeValue = options.pageSize ?? 4096;
    if (options.vmdesc !== undefined) {
      const { text, json } = parseVmdescJson(options.vmdesc, this.limits.vmdescDepth);
      this.known = { text, json, from: "option" };
    }
    const self = this;
    this.handlerCtx = {
      kernels: this.kernels,
      options,
      limits: this.limits,
      pageSize: () => self.pageSizeValue,
      configuration: () => self.config,
      warn: (m) => self.warn(m),
    };
  }

  // ------------------------------------------------------------------------------------------
  // public API

  /** Feed the next bytes of the stream. Throws a VmstreamError as soon as the input is known to be bad. */
  push(chunk: Uint8Array): void {
    if (this.error) throw this.error;
    if (this.ended) throw new VmstreamError("STATE", "push() after end()");
    try {
      this.feed(chunk);
    } catch (e) {
      throw this.fail(e);
    }
  }

  /**
   * Zero-copy input: a view of the free part of the input window in the kernels' memory (at least `min`
   * bytes, as far as limits.windowBytes allows) to write the next bytes of the stream into, e.g. with
   * `fs.readSync`; then call `commit(n)` with the number of bytes written there. Writing a chunk there and
   * committing it is the same as `push(chunk)`, without the copy. The view is valid until the next call on
   * this decoder or on its kernels (the window may move, and the memory may grow).
   */
  inputSpace(min = 1): Uint8Array {
    if (this.error) throw this.error;
    if (this.ended) throw new VmstreamError("STATE", "inputSpace() after end()");
    try {
      if (this.deferred) {
        this.scratch = new Uint8Array(Math.max(min, INITIAL_WINDOW));
        return this.scratch;
      }
      this.scratch = undefined;
      this.ensureSpace(Math.max(1, min));
      const at = this.win + this.wr;
      return this.kernels.u8.subarray(at, this.win + this.cap);
    } catch (e) {
      throw this.fail(e);
    }
  }

  /** `n` bytes were written at the start of the last `inputSpace()` view: decode them. */
  commit(n: number): void {
    if (this.error) throw this.error;
    if (this.ended) throw new VmstreamError("STATE", "commit() after end()");
    try {
      const scratch = this.scratch;
      this.scratch = undefined;
      if (scratch) {
        if (!(Number.isInteger(n) && n >= 0 && n <= scratch.length)) throw new VmstreamError("STATE", `commit(${n}): not within the input space`);
        this.feed(scratch.subarray(0, n));
        return;
      }
      if (!(Number.isInteger(n) && n >= 0 && n <= this.cap - this.wr)) throw new VmstreamError("STATE", `commit(${n}): not within the input space`);
      this.wr += n;
      if (this.wr - this.rd >= this.needed) this.run(false);
    } catch (e) {
      throw this.fail(e);
    }
  }

  /** No more input: finish, check completeness, return the result. Throws on a truncated or bad stream. */
  end(): DecodeResult {
    if (this.error) throw this.error;
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
    const live: Record<string, unknown> = {};
    for (const [k, h] of this.handlers) live[k] = h.result();
    const c = this.completeness();
    return {
      bytes: this.off + (this.deferred?.bytes ?? 0) + (this.wr - this.rd),
      machine: this.config?.machine,
      sections: this.sectionCount,
      devices: this.deviceList.length,
      commands: this.commandCount,
      eof: this.eofOffset !== undefined,
      vmdesc: this.vmdescInfo !== undefined,
      complete: c.complete,
      live,
      warnings: [...this.warningList],
    };
  }

  /** Free all kernel memory this decoder holds (including materialised RAM of a result not yet disposed). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.releaseWorkMemory();
    for (const h of this.handlers.values()) h.dispose?.();
  }

  // ------------------------------------------------------------------------------------------
  // input window

  private feed(chunk: Uint8Array): void {
    let o = 0;
    while (o < chunk.length) {
      if (this.deferred) {
        this.deferAppend(chunk.subarray(o));
        return;
      }
      if (this.wr === this.cap) this.makeRoom();
      const n = Math.min(chunk.length - o, this.cap - this.wr);
      this.kernels.u8.set(chunk.subarray(o, o + n), this.win + this.wr);
      this.wr += n;
      o += n;
      if (this.wr - this.rd >= this.needed) this.run(false);
    }
  }

  private makeRoom(): void {
    const k = this.kernels;
    if (this.cap === 0) {
      this.cap = Math.min(INITIAL_WINDOW, this.limits.windowBytes);
      this.win = k.alloc(this.cap, 64);
      return;
    }
    if (this.rd > 0) {
      k.u8.copyWithin(this.win, this.win + this.rd, this.win + this.wr);
      this.wr -= this.rd;
      this.rd = 0;
      if (this.wr < this.cap) return;
    }
    const want = Math.min(Math.max(this.cap * 2, this.needed), this.limits.windowBytes);
    if (want <= this.cap) {
      throw new VmstreamError("LIMIT", "an item of the stream is larger than the decoder's window limit", {
        offset: this.off,
        detail: `more than ${this.limits.windowBytes} bytes (limits.windowBytes)`,
      });
    }
    const nw = k.alloc(want, 64);
    k.u8.copyWithin(nw, this.win, this.win + this.wr);
    k.free(this.win);
    this.win = nw;
    this.cap = want;
  }

  /** At least `min` free bytes after `wr` (compacting, then growing the window). */
  private ensureSpace(min: number): void {
    if (this.cap - this.wr >= min) return;
    const k = this.kernels;
    if (this.cap === 0) {
      this.cap = Math.min(Math.max(INITIAL_WINDOW, min), this.limits.windowBytes);
      this.win = k.alloc(this.cap, 64);
      if (this.cap >= min) return;
    }
    if (this.rd > 0) {
      k.u8.copyWithin(this.win, this.win + this.rd, this.win + this.wr);
      this.wr -= this.rd;
      this.rd = 0;
      if (this.cap - this.wr >= min) return;
    }
    const want = Math.min(Math.max(this.cap * 2, this.wr + min), this.limits.windowBytes);
    if (want <= this.cap) {
      if (this.cap > this.wr) return; // less than `min`: the window is at its limit
      this.makeRoom(); // full and at the limit: throws the LIMIT error
      return;
    }
    const nw = k.alloc(want, 64);
    k.u8.copyWithin(nw, this.win, this.win + this.wr);
    k.free(this.win);
    this.win = nw;
    this.cap = want;
  }

  private deferAppend(b: Uint8Array): void {
    const d = this.deferred!;
    if (d.bytes + b.length > this.limits.deferredBytes) {
      throw new VmstreamError("LIMIT", "too much device state buffered while waiting for the vmdesc trailer", {
        offset: d.offset,
        section: d.section,
        detail: `more than ${this.limits.deferredBytes} bytes (limits.deferredBytes); pass options.vmdesc or a description for this section`,
      });
    }
    if (b.length > 0) d.chunks.push(b.slice());
    d.bytes += b.length;
  }

  private releaseWorkMemory(): void {
    if (this.cap !== 0 && !this.ownKernels) this.kernels.free(this.win);
    this.cap = 0;
    this.win = this.rd = this.wr = 0;
    for (const h of this.handlers.values()) h.finish?.();
  }

  private fail(e: unknown): VmstreamError {
    let err = VmstreamError.wrap(e, { offset: this.off });
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
    if ((this.phase === P_SECTION || this.phase === P_FOOTER) && this.cur) {
      const h = this.cur.header;
      return { idstr: h.idstr, id: h.id, instanceId: h.instanceId };
    }
    return undefined;
  }

  // ------------------------------------------------------------------------------------------
  // the parse loop

  private run(final: boolean): void {
    for (;;) {
      if (this.deferred) return;
      const availAbs = this.off + (this.wr - this.rd);
      const frame = this.frames[this.frames.length - 1];
      let limitAbs = availAbs;
      let hard = final;
      if (frame && frame.end <= availAbs) {
        limitAbs = frame.end;
        hard = true;
      }
      if (frame && this.off === frame.end && (this.phase === P_ITEMS || this.phase === P_SKIP)) {
        this.frames.pop();
        this.phase = P_ITEMS;
        continue;
      }
      const n = limitAbs - this.off;
      const before = this.phase;
      this.needHint = 0;
      const c = this.step(n, hard);
      if (c === NEED) {
        if (hard) {
          if (this.terminal() && n === 0) return;
          throw this.truncated(n, final);
        }
        let need = Math.max(this.needHint, n + 1);
        if (frame) need = Math.min(need, frame.end - this.off);
        this.needed = Math.max(1, need);
        return;
      }
      if (c > n || c < 0) throw new VmstreamError("INTERNAL", `parser consumed ${c} of ${n} bytes`, { offset: this.off });
      this.rd += c;
      this.off += c;
      if (c === 0 && this.phase === before && !this.deferred) {
        throw new VmstreamError("INTERNAL", "parser made no progress", { offset: this.off, detail: `phase ${before}` });
      }
    }
  }

  private terminal(): boolean {
    return (this.phase === P_AFTER_EOF || this.phase === P_DONE) && this.frames.length === 0 && this.rd === this.wr;
  }

  private truncated(n: number, final: boolean): VmstreamError {
    const where = this.frames.length > 0 && !final ? " (inside a PACKAGED command)" : "";
    let detail: string;
    let section: SectionRef | undefined;
    switch (this.phase) {
      case P_HEADER: detail = "the stream ends inside the file header"; break;
      case P_AFTER_HEADER:
      case P_ITEMS: detail = n > 0 ? "the stream ends inside a section header or command" : "the stream ends before QEMU_VM_EOF"; break;
      case P_CONFIG: detail = "the stream ends inside the configuration section"; break;
      case P_SECTION:
      case P_FOOTER: {
        const h = this.cur!.header;
        section = { idstr: h.idstr, id: h.id, instanceId: h.instanceId };
        detail = this.phase === P_SECTION ? "the stream ends inside a section payload" : "the stream ends before the section footer";
        break;
      }
      case P_DEVICE: detail = "the stream ends inside a device section"; break;
      case P_VMDESC: detail = "the stream ends inside the vmdesc trailer"; break;
      case P_SKIP: detail = "the stream ends inside a PACKAGED command"; break;
      default: detail = "the stream ends early";
    }
    if (this.phase === P_DEVICE) section = this.peekDeviceRef();
    return new VmstreamError("EOF", "truncated stream", { offset: this.off, section, detail: detail + where + (n > 0 ? ` (${n} bytes left over)` : "") });
  }

  private peekDeviceRef(): SectionRef | undefined {
    try {
      const r = this.reader(0, this.wr - this.rd);
      r.u8();
      const id = r.be32();
      const idstr = r.cstr();
      const instanceId = r.be32();
      return { idstr, id, instanceId };
    } catch {
      return undefined;
    }
  }

  /** A throwing reader over window bytes [from, to) (relative to rd). */
  private reader(from: number, to: number, sticky = false): ByteReader {
    const base = this.win + this.rd;
    return new ByteReader(this.kernels.u8.subarray(base + from, base + to), { baseOffset: this.off + from, sticky });
  }

  private byteAt(i: number): number {
    return this.kernels.u8[this.win + this.rd + i]!;
  }

  private step(n: number, hard: boolean): number {
    switch (this.phase) {
      case P_HEADER: return this.stepHeader(n);
      case P_AFTER_HEADER:
        if (n < 1) return NEED;
        this.phase = this.byteAt(0) === SEC.CONFIGURATION ? P_CONFIG : P_ITEMS;
        return 0;
      case P_CONFIG: return this.stepConfig(n, hard);
      case P_ITEMS: return this.stepItem(n);
      case P_SECTION: return this.stepSection(n, hard);
      case P_FOOTER: return this.stepFooter(n);
      case P_DEVICE: return this.stepDevice(n, hard);
      case P_AFTER_EOF:
        if (n < 1) return NEED;
        if (this.byteAt(0) !== SEC.VMDESCRIPTION) {
          throw new VmstreamError("BAD_SECTION", "unexpected data after QEMU_VM_EOF", {
            offset: this.off,
            detail: `expected the vmdesc trailer (0x06), found ${hex(this.byteAt(0))}`,
          });
        }
        this.phase = P_VMDESC;
        return 0;
      case P_VMDESC: return this.stepVmdesc(n);
      case P_DONE:
        if (n === 0) return NEED;
        throw new VmstreamError("BAD_SECTION", "trailing bytes after the vmdesc trailer", { offset: this.off, detail: `${n}${hard ? "" : " or more"} bytes` });
      case P_SKIP:
        return n === 0 ? NEED : n;
      default:
        throw new VmstreamError("INTERNAL", `bad phase ${this.phase}`);
    }
  }

  private stepHeader(n: number): number {
    const magic = [0x51, 0x45, 0x56, 0x4d];
    for (let i = 0; i < Math.min(n, 4); i++) {
      if (this.byteAt(i) !== magic[i]) {
        const gz = this.byteAt(0) === 0x1f && (n < 2 || this.byteAt(1) === 0x8b);
        throw new VmstreamError("BAD_MAGIC", "not a QEMU migration stream", {
          offset: 0,
          detail: gz ? "the input is gzip-compressed: gunzip it first (the Node adapters do)" : "the first 4 bytes are not \"QEVM\"",
        });
      }
    }
    if (n < 8) return NEED;
    const r = this.reader(0, 8);
    const m = r.be32();
    const version = r.be32();
    if (m !== QEMU_VM_FILE_MAGIC) throw new VmstreamError("BAD_MAGIC", "not a QEMU migration stream", { offset: 0 });
    if (version === QEMU_VM_FILE_VERSION_COMPAT) {
      throw new VmstreamError("BAD_VERSION", "obsolete stream version 2 (QEMU refuses it)", { offset: 4 });
    }
    if (version !== QEMU_VM_FILE_VERSION) throw new VmstreamError("BAD_VERSION", "unsupported stream version", { offset: 4, detail: `${version}, expected 3` });
    this.version = version;
    this.emit({ type: "header", version });
    this.phase = P_AFTER_HEADER;
    return 8;
  }

  private stepConfig(n: number, hard: boolean): number {
    if (n < 5) return NEED;
    const r = this.reader(0, n);
    r.u8();
    const len = r.be32();
    if (len > this.limits.configName) {
      throw new VmstreamError("LIMIT", "configuration machine name too long", { offset: this.off + 1, detail: `${len} > ${this.limits.configName} (limits.configName)` });
    }
    if (n < 5 + len) {
      this.needHint = 5 + len;
      return NEED;
    }
    const name = r.bytes(len);
    let machine = "";
    for (let i = 0; i < name.length; i++) machine += String.fromCharCode(name[i]!);
    const sr = this.reader(5 + len, n, true);
    const v = new WireInputVisitor(sr);
    const state: State = { len, name: name.slice() };
    try {
      loadState(v, configurationSubsections(this.limits.capabilities), state, 0, "configuration");
    } catch (e) {
      v.fail(VmstreamError.wrap(e, { offset: sr.offset }, "BAD_VALUE"));
    }
    const end = 5 + len + sr.pos;
    const conclusive = hard || end + PEEK_LOOKAHEAD <= n || !sr.peekedPastEnd;
    if (!conclusive) {
      this.needHint = Math.max(n + 1, end + PEEK_LOOKAHEAD);
      return NEED;
    }
    const err = v.error ?? sr.error;
    if (err && err.code === "EOF" && !hard) {
      this.needHint = n + 1;
      return NEED;
    }
    if (err) throw err.withContext({ section: { idstr: "configuration", id: 0 } });
    const capabilities = state.capabilities as State[] | undefined;
    const config: ConfigurationInfo = {
      machine,
      ...("target_page_bits" in state ? { targetPageBits: state.target_page_bits as number } : {}),
      ...(capabilities ? { capabilities: capabilities.map((c) => c.name as string) } : {}),
      ...(state.uuid instanceof Uint8Array ? { uuid: state.uuid.slice() } : {}),
      state: copyOut(state, this.kernels.memory.buffer),
      offset: this.off,
      size: end,
    };
    this.config = config;
    if (config.targetPageBits !== undefined) {
      const ps = 2 ** config.targetPageBits;
      if (this.options.pageSize !== undefined && this.options.pageSize !== ps) {
        this.warn(`configuration/target-page-bits says ${ps}-byte pages, options.pageSize is ${this.options.pageSize}: using ${ps}`);
      }
      this.pageSizeValue = ps;
    }
    this.emit({ type: "configuration", configuration: config });
    this.phase = P_ITEMS;
    return end;
  }

  private handlerFor(idstr: string): SectionHandler | undefined {
    let h = this.handlers.get(idstr);
    if (h) return h;
    const factory = this.options.handlers?.[idstr];
    if (!factory) return undefined;
    h = factory(this.handlerCtx);
    this.handlers.set(idstr, h);
    return h;
  }

  private stepItem(n: number): number {
    if (n < 1) return NEED;
    const t = this.byteAt(0);
    switch (t) {
      case SEC.EOF:
        if (this.frames.length > 0) {
          this.phase = P_SKIP; // QEMU leaves the package's loop; the rest of the package is dropped
          return 1;
        }
        this.eofOffset = this.off;
        this.emit({ type: "eof", offset: this.off });
        this.phase = P_AFTER_EOF;
        return 1;
      case SEC.START:
      case SEC.FULL: {
        const r = this.reader(0, n);
        let id: number, idstr: string, instanceId: number, version: number;
        try {
          r.u8();
          id = r.be32();
          idstr = r.cstr();
          instanceId = r.be32();
          version = r.be32();
        } catch (e) {
          if (e instanceof VmstreamError && e.code === "EOF") return NEED;
          throw e;
        }
        const type = TYPE_NAMES[t]!;
        const header: SectionHeader = { type, id, idstr, instanceId, version, offset: this.off };
        const ref = { idstr, id, instanceId };
        const handler = this.handlerFor(idstr);
        if (handler) {
          if (instanceId !== 0) throw new VmstreamError("BAD_SECTION", "unknown section instance", { offset: this.off, section: ref, detail: `${idstr} has only instance 0` });
          if (version > handler.maxVersion) {
            throw new VmstreamError("BAD_VERSION", "unsupported section version", { offset: this.off, section: ref, detail: `${version}, this side loads up to ${handler.maxVersion}` });
          }
          this.bindings.set(id, { idstr, instanceId, version, handler });
          this.cur = { header, handler, payloadOffset: this.off + r.pos };
          this.phase = P_SECTION;
          try {
            handler.begin(header);
          } catch (e) {
            throw VmstreamError.wrap(e, { offset: this.off, section: ref });
          }
          return r.pos;
        }
        if (t === SEC.START) {
          throw new VmstreamError("BAD_SECTION", "START section for a section that is not iterative", { offset: this.off, section: ref, detail: "no live handler for this idstr" });
        }
        this.phase = P_DEVICE;
        return 0;
      }
      case SEC.PART:
      case SEC.END: {
        if (n < 5) return NEED;
        const r = this.reader(1, 5);
        const id = r.be32();
        const b = this.bindings.get(id);
        if (!b) throw new VmstreamError("BAD_SECTION", "PART/END section for a section id that was never started", { offset: this.off, detail: `section id ${id}` });
        const ref = { idstr: b.idstr, id, instanceId: b.instanceId };
        if (!b.handler) throw new VmstreamError("BAD_SECTION", "PART/END section for a section that is not iterative", { offset: this.off, section: ref });
        const header: SectionHeader = { type: TYPE_NAMES[t]!, id, idstr: b.idstr, instanceId: b.instanceId, version: b.version, offset: this.off };
        this.cur = { header, handler: b.handler, payloadOffset: this.off + 5 };
        this.phase = P_SECTION;
        try {
          b.handler.begin(header);
        } catch (e) {
          throw VmstreamError.wrap(e, { offset: this.off, section: ref });
        }
        return 5;
      }
      case SEC.COMMAND:
        return this.stepCommand(n);
      default:
        throw new VmstreamError("BAD_SECTION", "unknown section type", { offset: this.off, detail: `${hex(t)}${t === SEC.FOOTER ? " (a section footer where none is expected)" : ""}` });
    }
  }

  private stepSection(n: number, hard: boolean): number {
    const cur = this.cur!;
    const res = cur.handler.feed({ kernels: this.kernels, ptr: this.win + this.rd, len: n, offset: this.off, final: hard }, cur.header);
    if (!(res.consumed >= 0 && res.consumed <= n)) {
      throw new VmstreamError("INTERNAL", `section handler ${cur.header.idstr} consumed ${res.consumed} of ${n} bytes`, { offset: this.off });
    }
    if (res.done) {
      this.phase = P_FOOTER;
      return res.consumed;
    }
    return res.consumed === 0 ? NEED : res.consumed;
  }

  private stepFooter(n: number): number {
    const cur = this.cur!;
    const h = cur.header;
    if (this.footersOn === undefined) {
      if (n < 1) return NEED;
      this.footersOn = this.byteAt(0) === SEC.FOOTER;
    }
    let len = 0;
    if (this.footersOn) {
      if (n < 1) return NEED;
      if (this.byteAt(0) !== SEC.FOOTER || n >= 5) this.checkFooter(0, h);
      if (n < 5) return NEED;
      len = 5;
    }
    this.recordSection(h, cur.payloadOffset, this.off - cur.payloadOffset, this.off + len - h.offset, this.footersOn);
    this.phase = P_ITEMS;
    return len;
  }

  /** Footer at window index `at` (5 bytes available). */
  private checkFooter(at: number, h: { idstr: string; id: number; instanceId: number }): void {
    const ref = { idstr: h.idstr, id: h.id, instanceId: h.instanceId };
    if (this.byteAt(at) !== SEC.FOOTER) {
      throw new VmstreamError("BAD_SECTION", "missing section footer", { offset: this.off + at, section: ref, detail: `found ${hex(this.byteAt(at))} instead of 0x7e` });
    }
    const id = this.reader(at + 1, at + 5).be32();
    if (id !== h.id) throw new VmstreamError("BAD_SECTION", "mismatched section id in footer", { offset: this.off + at, section: ref, detail: `footer says ${id}` });
  }

  private recordSection(h: SectionHeader, payloadOffset: number, payloadSize: number, size: number, footer: boolean): number {
    this.sectionCount++;
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
      depth: this.frames.length,
    };
    if (this.sectionList.length < this.limits.sectionRecords) this.sectionList.push(rec);
    this.emit({ type: "section", section: rec });
    return this.sectionCount - 1;
  }

  // ------------------------------------------------------------------------------------------
  // device (FULL) sections

  private stepDevice(n: number, hard: boolean): number {
    const r = this.reader(0, n);
    r.u8();
    const id = r.be32();
    const idstr = r.cstr();
    const instanceId = r.be32();
    const version = r.be32();
    const hdrLen = r.pos;
    const header: SectionHeader = { type: "full", id, idstr, instanceId, version, offset: this.off };
    const ref: SectionRef = { idstr, id, instanceId };
    const ctx: ErrorContext = { offset: this.off, section: ref };

    let warning: string | undefined;
    let regError: VmstreamError | undefined;
    let reg: VMStateDescription | undefined;
    try {
      reg = this.options.devices?.(idstr, instanceId, version, { machine: this.config?.machine, pageSize: this.pageSizeValue });
    } catch (e) {
      throw VmstreamError.wrap(e, ctx);
    }
    const known = this.known;
    const index = known ? this.findVmdescEntry(known.json, idstr, instanceId) : -1;
    const entry = index >= 0 ? known!.json.devices[index]! : undefined;
    // the vmdesc says how long the payload is: wait for exactly that much (else back off exponentially)
    let sizeHint: number | undefined;
    if (entry) {
      try {
        sizeHint = hdrLen + vmdescPayloadSize(entry, this.limits) + 5 + PEEK_LOOKAHEAD;
      } catch {
        sizeHint = undefined;
      }
    }
    if (reg) {
      const a = this.attempt(reg, header, hdrLen, n, hard);
      if (a.kind === "need") return this.needDevice(n, sizeHint);
      if (a.kind === "ok") return this.commitDevice(a, header, hdrLen, reg, "registry", undefined, undefined);
      // the input ends inside the section: that is a truncated stream, not a wrong description
      if (this.options.strictDevices || (hard && a.error.code === "EOF")) throw a.error;
      regError = a.error;
      warning = `${idstr} (instance ${instanceId}): registered description "${reg.name}" failed (${a.error.message}); decoded with the vmdesc`;
    }
    if (!known) {
      this.enterDeferred(ref);
      return 0;
    }
    if (!entry) {
      if (regError) throw regError;
      throw new VmstreamError("NO_DESCRIPTION", "no description for a device section", { ...ctx, detail: reg ? "" : "not registered, and not listed in the vmdesc" });
    }
    if (entry.version !== undefined && entry.version !== version) {
      throw new VmstreamError("MISMATCH", "the vmdesc describes another version of this section", { ...ctx, detail: `vmdesc version ${String(entry.version)}, section version ${version}` });
    }
    let desc: VMStateDescription | undefined;
    let source: DeviceSource = "vmdesc";
    try {
      desc = this.options.describe?.(idstr, instanceId, entry);
      if (!desc && this.options.vmdescFallback) {
        const fb = this.options.vmdescFallback(idstr, instanceId, entry, this.limits);
        desc = fb.description;
        source = fb.source;
      }
    } catch (e) {
      throw VmstreamError.wrap(e, ctx, "BAD_VALUE");
    }
    if (!desc) throw new VmstreamError("NO_DESCRIPTION", "no description for a device section", { ...ctx, detail: "options.describe gave none for its vmdesc entry" });
    const a = this.attempt(desc, header, hdrLen, n, hard);
    if (a.kind === "need") return this.needDevice(n, sizeHint);
    if (a.kind === "fail") throw a.error.withContext(ctx);
    return this.commitDevice(a, header, hdrLen, desc, source, index, warning);
  }

  private needDevice(n: number, sizeHint: number | undefined): number {
    // with the size from the vmdesc: exactly that; else exponential back-off: a big device section is retried
    // at 2x, 4x ... the bytes of the failed attempt (linear total work)
    this.needHint = sizeHint !== undefined && sizeHint > n ? sizeHint : Math.max(n + 1, 2 * n);
    return NEED;
  }

  /** Decode a device payload with `desc` on the window; check the footer; trust only conclusive outcomes. */
  private attempt(desc: VMStateDescription, h: SectionHeader, hdrLen: number, n: number, hard: boolean): Attempt {
    const r = this.reader(hdrLen, n, true);
    const v = new WireInputVisitor(r);
    const state: State = {};
    try {
      loadState(v, desc, state, h.version, h.idstr);
    } catch (e) {
      v.fail(VmstreamError.wrap(e, { offset: r.offset }, "BAD_VALUE"));
    }
    const ref = { idstr: h.idstr, id: h.id, instanceId: h.instanceId };
    const end = hdrLen + r.pos;
    // conclusive when the input has ended, or when no peek reached past the bytes we have (so the outcome
    // cannot change with more input); PEEK_LOOKAHEAD bytes after the walk always suffice
    const conclusive = hard || end + PEEK_LOOKAHEAD <= n || !r.peekedPastEnd;
    const err = v.error ?? r.error;
    // a read past the window is never conclusive before the input ends
    if (err) return conclusive && (hard || err.code !== "EOF") ? { kind: "fail", error: err.withContext({ section: ref }) } : { kind: "need" };
    let footers = this.footersOn;
    if (footers === undefined) {
      if (end >= n) {
        if (!hard) return { kind: "need" };
        footers = false;
      } else footers = this.byteAt(end) === SEC.FOOTER;
    }
    let total = end;
    if (footers) {
      if (end + 5 > n) {
        if (!hard) return { kind: "need" };
        return { kind: "fail", error: new VmstreamError("EOF", "truncated stream", { offset: this.off + end, section: ref, detail: "the stream ends before the section footer" }) };
      }
      try {
        this.checkFooter(end, h);
      } catch (e) {
        const err2 = e as VmstreamError;
        return {
          kind: "fail",
          error: new VmstreamError(err2.code, err2.summary, {
            offset: err2.offset,
            section: ref,
            detail: `${err2.detail ?? ""}; the description "${desc.name}" consumed ${end - hdrLen} payload bytes`,
          }),
        };
      }
      total = end + 5;
    }
    if (!conclusive) return { kind: "need" };
    return { kind: "ok", state, payloadEnd: end, total, footers };
  }

  private commitDevice(
    a: Extract<Attempt, { kind: "ok" }>,
    h: SectionHeader,
    hdrLen: number,
    description: VMStateDescription,
    source: DeviceSource,
    vmdescIndex: number | undefined,
    warning: string | undefined,
  ): number {
    if (this.footersOn === undefined) this.footersOn = a.footers;
    this.bindings.set(h.id, { idstr: h.idstr, instanceId: h.instanceId, version: h.version, handler: undefined });
    if (vmdescIndex !== undefined) this.vmdescUsed[vmdescIndex] = true;
    if (warning) this.warn(warning);
    const sectionIndex = this.recordSection(h, this.off + hdrLen, a.payloadEnd - hdrLen, a.total, a.footers);
    const dev: DeviceSectionResult = {
      idstr: h.idstr,
      instanceId: h.instanceId,
      version: h.version,
      sectionId: h.id,
      sectionIndex,
      payloadOffset: this.off + hdrLen,
      payloadSize: a.payloadEnd - hdrLen,
      state: copyOut(a.state, this.kernels.memory.buffer),
      description,
      source,
      ...(vmdescIndex !== undefined && this.known ? { vmdesc: this.known.json.devices[vmdescIndex] } : {}),
      ...(warning ? { warning } : {}),
    };
    if (this.deviceList.length < this.limits.sectionRecords) this.deviceList.push(dev);
    this.emit({ type: "device", device: dev });
    this.phase = P_ITEMS;
    return a.total;
  }

  /** The first unused vmdesc entry for (idstr, instance), preferring the next one in order. */
  private findVmdescEntry(doc: Vmdesc, idstr: string, instanceId: number): number {
    const devs = doc.devices;
    for (let i = 0; i < devs.length; i++) {
      if (!this.vmdescUsed[i] && devs[i]!.name === idstr && devs[i]!.instance_id === instanceId) return i;
    }
    return -1;
  }

  private enterDeferred(section: SectionRef): void {
    const u8 = this.kernels.u8;
    this.deferred = { chunks: [], bytes: 0, offset: this.off, section };
    this.deferAppend(u8.subarray(this.win + this.rd, this.win + this.wr));
    this.rd = this.wr = 0;
  }

  private resolveDeferred(): void {
    const d = this.deferred!;
    const all = new Uint8Array(d.bytes);
    let o = 0;
    for (const c of d.chunks) {
      all.set(c, o);
      o += c.length;
    }
    const found = findVmdescTrailer(all, this.limits.vmdescBytes, this.limits.vmdescDepth);
    if (!found) {
      // A complete stream without a vmdesc ends with the EOF byte; anything else is cut short.
      if (all[all.length - 1] !== SEC.EOF) {
        throw new VmstreamError("EOF", "truncated stream", {
          offset: d.offset + all.length,
          detail: `no QEMU_VM_EOF and no vmdesc trailer after the device section ${d.section.idstr} (id ${d.section.id}) at byte ${d.offset}`,
        });
      }
      throw new VmstreamError("NO_DESCRIPTION", "a device section cannot be decoded", {
        offset: d.offset,
        section: d.section,
        detail: "it has no registered description and the stream has no vmdesc trailer (or the stream is truncated)",
      });
    }
    this.known = { text: found.text, json: found.json, from: "search" };
    this.deferred = undefined;
    this.needed = 1;
    this.feed(all);
    this.run(true);
  }

  // ------------------------------------------------------------------------------------------
  // commands

  private stepCommand(n: number): number {
    const at = this.off;
    if (n < 3) return NEED;
    const cmd = (this.byteAt(1) << 8) | this.byteAt(2);
    if (cmd === CMD.INVALID || cmd >= CMD_NAMES.length) throw new VmstreamError("BAD_VALUE", "unknown command", { offset: at, detail: `command ${cmd}` });
    const name = CMD_NAMES[cmd]!;
    if (n < 5) return NEED;
    const len = (this.byteAt(3) << 8) | this.byteAt(4);
    const fixed: Record<number, number> = {
      [CMD.OPEN_RETURN_PATH]: 0, [CMD.PING]: 4, [CMD.POSTCOPY_LISTEN]: 0, [CMD.POSTCOPY_RUN]: 0, [CMD.PACKAGED]: 4,
      [CMD.ENABLE_COLO]: 0, [CMD.POSTCOPY_RESUME]: 0,
    };
    const bad = (why: string): VmstreamError => new VmstreamError("BAD_VALUE", `bad ${name} command`, { offset: at, detail: why });
    if (fixed[cmd] !== undefined && len !== fixed[cmd]) throw bad(`length ${len}, expected ${fixed[cmd]}`);
    if (cmd === CMD.POSTCOPY_ADVISE && len !== 0 && len !== 16) throw bad(`length ${len}, expected 0 or 16`);
    if (cmd === CMD.POSTCOPY_RAM_DISCARD && len < 20) throw bad(`length ${len} < 20`);
    if (n < 5 + len) {
      this.needHint = 5 + len;
      return NEED;
    }
    const r = this.reader(5, 5 + len);
    const fields: Record<string, unknown> = {};
    const depth = this.frames.length;
    let after = 5 + len;
    switch (cmd) {
      case CMD.OPEN_RETURN_PATH:
        this.returnPath = true;
        break;
      case CMD.PING:
        fields.value = r.be32();
        if (!this.returnPath) throw bad("PING without a return path (no OPEN_RETURN_PATH before it)");
        break;
      case CMD.POSTCOPY_ADVISE:
        if (this.postcopy !== "none") throw bad(`in postcopy state "${this.postcopy}"`);
        if (len === 16) {
          fields.pageSizeSummary = r.be64();
          fields.targetPageSize = r.be64();
        }
        this.postcopy = "advise";
        break;
      case CMD.POSTCOPY_LISTEN:
        if (this.postcopy !== "advise" && this.postcopy !== "discard") throw bad(`in postcopy state "${this.postcopy}"`);
        this.postcopy = "listen";
        break;
      case CMD.POSTCOPY_RUN:
        if (this.postcopy !== "listen") throw bad(`in postcopy state "${this.postcopy}"`);
        this.postcopy = "running";
        break;
      case CMD.POSTCOPY_RAM_DISCARD: {
        if (this.postcopy !== "advise" && this.postcopy !== "discard") throw bad(`in postcopy state "${this.postcopy}"`);
        const ver = r.u8();
        if (ver !== 0) throw bad(`version ${ver}, expected 0`);
        if (this.byteAt(6) + 3 > len) throw bad("the block name is longer than the command");
        const block = r.cstr();
        if (r.u8() !== 0) throw bad("missing NUL after the block name");
        const rest = len - 3 - (this.byteAt(6));
        if (rest % 16 !== 0) throw bad(`${rest} bytes of ranges, not a multiple of 16`);
        const ram = this.handlers.get("ram")?.lookupBlock?.(block);
        if (!ram) throw bad(`unknown RAM block "${block}"`);
        const ranges: { start: bigint; length: bigint }[] = [];
        for (let i = 0; i < rest / 16; i++) {
          const start = r.be64();
          const length = r.be64();
          if (start + length > ram.length) throw bad(`range 0x${start.toString(16)}+0x${length.toString(16)} is outside block "${block}"`);
          ranges.push({ start, length });
        }
        fields.block = block;
        fields.ranges = ranges;
        this.postcopy = "discard";
        break;
      }
      case CMD.PACKAGED: {
        const size = r.be32();
        fields.size = size;
        if (size > this.limits.packagedBytes) throw new VmstreamError("LIMIT", "PACKAGED command too large", { offset: at, detail: `${size} > ${this.limits.packagedBytes} (limits.packagedBytes)` });
        if (depth >= this.limits.packageDepth) throw new VmstreamError("LIMIT", "PACKAGED commands nested too deeply", { offset: at, detail: `depth ${depth + 1} > ${this.limits.packageDepth}` });
        const end = at + 9 + size;
        const outer = this.frames[depth - 1];
        if (outer && end > outer.end) throw bad("the package is longer than the package that contains it");
        this.frames.push({ end });
        after = 9;
        break;
      }
      case CMD.ENABLE_COLO:
        break;
      case CMD.POSTCOPY_RESUME:
        throw bad("POSTCOPY_RESUME outside a postcopy recovery");
      case CMD.RECV_BITMAP: {
        if (len !== this.byteAt(5) + 1) throw bad(`length ${len} for a ${this.byteAt(5)}-byte block name`);
        const block = r.cstr();
        fields.block = block;
        throw bad("RECV_BITMAP outside a postcopy recovery");
      }
    }
    this.commandCount++;
    const rec: CommandRecord = { cmd, name, offset: at, length: len, depth, fields };
    if (this.commandList.length < this.limits.commandRecords) this.commandList.push(rec);
    this.emit({ type: "command", command: rec });
    if (cmd === CMD.POSTCOPY_RUN && depth > 0) this.phase = P_SKIP; // QEMU leaves the package's loop
    return after;
  }

  // ------------------------------------------------------------------------------------------
  // vmdesc

  private stepVmdesc(n: number): number {
    if (n < 5) return NEED;
    const len = this.reader(1, 5).be32();
    if (len > this.limits.vmdescBytes) {
      throw new VmstreamError("LIMIT", "vmdesc trailer too large", { offset: this.off, detail: `${len} > ${this.limits.vmdescBytes} (limits.vmdescBytes)` });
    }
    if (n < 5 + len) {
      this.needHint = 5 + len;
      return NEED;
    }
    const base = this.win + this.rd;
    const { text, json } = parseVmdescJson(this.kernels.u8.subarray(base + 5, base + 5 + len), this.limits.vmdescDepth, this.off + 5);
    this.vmdescInfo = { offset: this.off, length: len, text, json };
    if (this.known && this.known.text !== text) {
      if (this.known.from === "search") {
        throw new VmstreamError("MISMATCH", "the vmdesc trailer differs from the one found at the end of the stream", { offset: this.off });
      }
      this.warn("the stream's vmdesc trailer differs from options.vmdesc (device sections were decoded with options.vmdesc)");
    }
    if (!this.known) this.known = { text, json, from: "stream" };
    if (json.page_size !== this.pageSizeValue) this.warn(`the vmdesc says ${json.page_size}-byte target pages, the decoder used ${this.pageSizeValue}`);
    this.emit({ type: "vmdesc", vmdesc: this.vmdescInfo });
    this.phase = P_DONE;
    return 5 + len;
  }

  // ------------------------------------------------------------------------------------------
  // result

  private warn(message: string): void {
    this.warningList.push(message);
    this.emit({ type: "warning", message });
  }

  private emit(e: DecoderEvent): void {
    this.options.onEvent?.(e);
  }

  private completeness(): Completeness {
    const eof = this.eofOffset !== undefined;
    const doc = this.vmdescInfo?.json ?? (this.known?.from === "option" ? this.known.json : undefined);
    if (!doc) return { complete: eof && this.phaseDone(), eof, vmdesc: false, missingDevices: [], unlistedSections: [] };
    const used = new Array<boolean>(this.deviceList.length).fill(false);
    const missing: { name: string; instanceId: number }[] = [];
    for (const d of doc.devices) {
      let found = -1;
      for (let i = 0; i < this.deviceList.length; i++) {
        const s = this.deviceList[i]!;
        if (!used[i] && s.idstr === d.name && s.instanceId === d.instance_id) {
          found = i;
          break;
        }
      }
      if (found < 0) missing.push({ name: d.name, instanceId: d.instance_id });
      else {
        used[found] = true;
        const dev = this.deviceList[found]!;
        if (!dev.vmdesc) dev.vmdesc = d;
      }
    }
    const unlisted = this.deviceList.filter((_, i) => !used[i]).map((s) => ({ idstr: s.idstr, instanceId: s.instanceId }));
    return {
      complete: eof && this.phaseDone() && missing.length === 0 && unlisted.length === 0,
      eof,
      vmdesc: this.vmdescInfo !== undefined,
      missingDevices: missing,
      unlistedSections: unlisted,
    };
  }

  private phaseDone(): boolean {
    return (this.phase === P_AFTER_EOF || this.phase === P_DONE) && this.frames.length === 0;
  }

  private buildResult(): DecodeResult {
    const live: Record<string, unknown> = {};
    for (const [k, h] of this.handlers) live[k] = h.result();
    const handlers = [...this.handlers.values()];
    const self = this;
    return {
      bytes: this.off,
      version: this.version,
      configuration: this.config,
      footers: this.footersOn,
      pageSize: this.pageSizeValue,
      sections: this.sectionList,
      sectionCount: this.sectionCount,
      devices: this.deviceList,
      live,
      commands: this.commandList,
      commandCount: this.commandCount,
      eof: this.eofOffset !== undefined,
      eofOffset: this.eofOffset,
      vmdesc: this.vmdescInfo,
      completeness: this.completeness(),
      warnings: this.warningList,
      kernels: this.kernels,
      dispose() {
        if (self.disposed) return;
        self.disposed = true;
        for (const h of handlers) h.dispose?.();
      },
    };
  }
}

/** Replace views into the kernels' memory inside a decoded state by copies (the window is reused). */
function copyOut<T>(v: T, buffer: ArrayBufferLike, depth = 0): T {
  if (depth > 64 || v === null || typeof v !== "object") return v;
  if (v instanceof Uint8Array) return (v.buffer === buffer ? v.slice() : v) as T;
  if (ArrayBuffer.isView(v)) return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const e: unknown = v[i];
      if (e !== null && typeof e === "object") v[i] = copyOut(e, buffer, depth + 1);
    }
    return v;
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    const e = o[k];
    if (e !== null && typeof e === "object") o[k] = copyOut(e, buffer, depth + 1);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// one-shot helpers (generic: the decoder class is a parameter)

export type DecoderLike = { push(chunk: Uint8Array): void; end(): DecodeResult; summary(): ValidationSummary; dispose(): void };

/** Feed a whole buffer in window-sized slices (memory stays bounded). */
export function pushAll(d: { push(chunk: Uint8Array): void }, bytes: Uint8Array, slice = 1 << 20): void {
  for (let o = 0; o < bytes.length; o += slice) d.push(bytes.subarray(o, Math.min(bytes.length, o + slice)));
}

export type ByteSource = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

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

/** Validation verdict for a finished decode. */
export function verdictOf(d: DecoderLike, r: DecodeResult): ValidationResult {
  const summary = d.summary();
  r.dispose();
  if (!r.completeness.complete) {
    const c = r.completeness;
    const detail = [
      !c.eof ? "no QEMU_VM_EOF" : "",
      c.missingDevices.length ? `vmdesc devices without a section: ${c.missingDevices.map((m) => `${m.name}/${m.instanceId}`).join(", ")}` : "",
      c.unlistedSections.length ? `sections not in the vmdesc: ${c.unlistedSections.map((m) => `${m.idstr}/${m.instanceId}`).join(", ")}` : "",
    ].filter(Boolean).join("; ");
    return { ok: false, error: new VmstreamError("INCOMPLETE", "incomplete stream", { detail }), summary };
  }
  return { ok: true, summary };
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
