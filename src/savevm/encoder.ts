// The stream encoder: QEMU 7.2's framing (wire-format §2) on a ByteWriter or a push callback. Device sections
// are written by their descriptions' walk, which writes their vmdesc objects too; live section payloads are
// written by the section writers (src/sections/*/writer.ts) on `encoder.writer`. Browser-safe.
import { VmstreamError } from "../io/errors.js";
import { ByteWriter } from "../io/writer.js";
import { WireOutputVisitor } from "../visitor/wire.js";
import { saveState, type VmdescSink } from "../vmstate/engine.js";
import { QemuJsonWriter } from "../vmstate/json-writer.js";
import { writeLegacyVmdesc } from "../vmstate/legacy.js";
import type { State, VMStateDescription } from "../vmstate/types.js";
import { type ConfigurationSpec, configurationDescription, configurationState } from "./configuration.js";
import { CMD, QEMU_VM_FILE_MAGIC, QEMU_VM_FILE_VERSION, SEC } from "./constants.js";
import type { ConfigurationInfo, DecodeResult, SectionType } from "./types.js";

/** The machine-type dependent framing switches (wire-format §2.10, §2.9). */
export interface FramingOptions {
  /** Write the 0x07 configuration section (send-configuration; off for machine types <= 2.3). Default true. */
  readonly configuration?: boolean;
  /** Write 0x7E footers after every section (send-section-footer; off for machine types <= 2.3). Default true. */
  readonly footers?: boolean;
  /** Write the vmdesc trailer after EOF (off for suppress-vmdesc machine types <= 2.2, xenfv). Default true. */
  readonly vmdesc?: boolean;
}

export interface EncoderOptions extends FramingOptions {
  /** Target page size written as `page_size` in the vmdesc (default 4096). */
  readonly pageSize?: number;
}

/** The framing switches QEMU 7.2 derives from a machine type name (pc-i440fx-2.3, pc-q35-2.2, pseries-2.2, xenfv...). */
export function framingForMachine(machine: string): Required<FramingOptions> {
  if (/^xenfv/.test(machine)) return { configuration: false, footers: false, vmdesc: false };
  const m = /^(pc-i440fx|pc-q35|pc|pseries|isapc)-(\d+)\.(\d+)$/.exec(machine);
  if (!m || m[1] === "isapc") return { configuration: true, footers: true, vmdesc: true };
  const major = Number(m[2]);
  const minor = Number(m[3]);
  const le = (a: number, b: number) => major < a || (major === a && minor <= b);
  const old23 = le(2, 3);
  return { configuration: !old23, footers: !old23, vmdesc: !le(2, 2) };
}

/** Where encoded bytes go. */
export type EncoderSink = ByteWriter | ((chunk: Uint8Array) => void);

export interface DeviceSpec {
  readonly id: number;
  /** The section's idstr (bytes: written as they are). */
  readonly idstr: string | Uint8Array;
  readonly instanceId: number;
  readonly description: VMStateDescription;
  readonly state: State;
  /** Version in the section header (default: the description's version). */
  readonly version?: number;
  /**
   * How the device appears in the vmdesc: "vmstate" (written by the walk, default), "legacy" (QEMU's
   * old-style entry: size + one buffer "data"), a JSON text to splice in as is, or "omit".
   */
  readonly vmdesc?: "vmstate" | "legacy" | "omit" | { readonly text: string };
}

const enc = new TextEncoder();
const utf8 = new TextDecoder("utf-8");
const pathName = (idstr: string | Uint8Array): string => (typeof idstr === "string" ? idstr : utf8.decode(idstr));

/**
 * Writes one migration stream. Call order follows the grammar: header(), configuration()?, then any of
 * begin()/end() (payload written on `writer` in between), device(), command(); eof(); vmdescTrailer()?.
 */
export class StreamEncoder {
  framing: Readonly<Required<FramingOptions>>;
  readonly pageSize: number;
  /** The writer every item is written to (section payload writers use it too). */
  readonly writer: ByteWriter;
  private readonly push: ((chunk: Uint8Array) => void) | undefined;
  private open: { type: SectionType; id: number } | undefined;
  private readonly devices: string[] = [];
  private eofWritten = false;
  /** Open PACKAGED commands (their length is patched at the end, so nothing is flushed until then). */
  private packages = 0;

  constructor(sink: EncoderSink = new ByteWriter(), options: EncoderOptions = {}) {
    this.framing = { configuration: options.configuration ?? true, footers: options.footers ?? true, vmdesc: options.vmdesc ?? true };
    this.pageSize = options.pageSize ?? 4096;
    if (sink instanceof ByteWriter) {
      this.writer = sink;
      this.push = undefined;
    } else {
      this.writer = new ByteWriter({ initialCapacity: 1 << 16 });
      this.push = sink;
    }
  }

  /** Hand finished bytes to the push sink (a no-op for a ByteWriter sink). */
  flush(): void {
    if (!this.push || this.packages > 0) return;
    for (const c of this.writer.takeChunks()) if (c.length > 0) this.push(c);
  }

  /** `QEVM`, version 3. */
  header(version = QEMU_VM_FILE_VERSION): void {
    this.writer.be32(QEMU_VM_FILE_MAGIC);
    this.writer.be32(version);
    this.flush();
  }

  /**
   * The 0x07 configuration section (skipped when the framing has none): from a spec, or a decoded
   * configuration's own state (its name bytes as they were).
   */
  configuration(c: ConfigurationSpec | Pick<ConfigurationInfo, "state">): void {
    if (!this.framing.configuration) return;
    const state = "state" in c ? c.state : configurationState(c);
    const caps = (state.caps_count as number | undefined) ?? 0;
    this.writer.u8(SEC.CONFIGURATION);
    const v = new WireOutputVisitor(this.writer);
    saveState(v, configurationDescription({ configName: state.len as number, capabilities: caps }), state);
    if (v.error) throw v.error;
    this.flush();
  }

  /** Open a section: START/FULL get the full header (idstr, instance, version), PART/END the short one. */
  begin(type: SectionType, id: number, idstr?: string | Uint8Array, instanceId = 0, version = 0): void {
    if (this.open) throw new VmstreamError("STATE", `section ${this.open.id} is still open`);
    const w = this.writer;
    const code = type === "start" ? SEC.START : type === "part" ? SEC.PART : type === "end" ? SEC.END : SEC.FULL;
    w.u8(code);
    w.be32(id >>> 0);
    if (type === "start" || type === "full") {
      if (idstr === undefined) throw new VmstreamError("STATE", `a ${type} section needs an idstr`);
      const b = typeof idstr === "string" ? enc.encode(idstr) : idstr;
      if (b.length < 1 || b.length > 255) throw new VmstreamError("RANGE", "section idstr must be 1..255 bytes", { detail: String(idstr) });
      w.cstr(b);
      w.be32(instanceId >>> 0);
      w.be32(version >>> 0);
    }
    this.open = { type, id };
  }

  /**
   * Footers on or off from now on: a replay learns them from the stream's first section (the machine type
   * decides), after the header and configuration are written.
   */
  useFooters(on: boolean): void {
    this.framing = { ...this.framing, footers: on };
  }

  /** Close the open section: its footer when footers are on. */
  end(): void {
    const o = this.open;
    if (!o) throw new VmstreamError("STATE", "no section is open");
    if (this.framing.footers) {
      this.writer.u8(SEC.FOOTER);
      this.writer.be32(o.id >>> 0);
    }
    this.open = undefined;
    this.flush();
  }

  /** A FULL section written from `state` by the description's walk; its vmdesc object is written in the same walk. */
  device(d: DeviceSpec): void {
    const version = d.version ?? d.description.version;
    this.begin("full", d.id, d.idstr, d.instanceId, version);
    const w = this.writer;
    const start = w.pos;
    const v = new WireOutputVisitor(w);
    const mode = d.vmdesc ?? "vmstate";
    if (mode === "vmstate" && this.framing.vmdesc) {
      const json = new QemuJsonWriter();
      json.startObject();
      json.str("name", typeof d.idstr === "string" ? d.idstr : utf8.decode(d.idstr));
      json.int("instance_id", d.instanceId);
      const sink: VmdescSink = { json, pos: () => w.pos };
      saveState(v, d.description, d.state, pathName(d.idstr), sink);
      json.endObject();
      this.devices.push(json.text());
    } else {
      saveState(v, d.description, d.state, pathName(d.idstr));
      if (this.framing.vmdesc && mode === "legacy") {
        const json = new QemuJsonWriter();
        writeLegacyVmdesc(json, pathName(d.idstr), d.instanceId, w.pos - start);
        this.devices.push(json.text());
      } else if (this.framing.vmdesc && typeof mode === "object") this.devices.push(mode.text);
    }
    if (v.error) throw v.error;
    this.end();
  }

  /** A command: `0x08 be16 cmd be16 len data` (PACKAGED bodies are written by the caller after it). */
  command(cmd: number, data: Uint8Array = new Uint8Array(0)): void {
    if (this.open) throw new VmstreamError("STATE", "a command inside an open section");
    const w = this.writer;
    w.u8(SEC.COMMAND);
    w.be16(cmd);
    w.be16(data.length);
    w.bytes(data);
    this.flush();
  }

  /** A PACKAGED command with its body: a headerless stream of sections and commands (e.g. written by another StreamEncoder). */
  packaged(body: Uint8Array): void {
    const at = this.beginPackaged();
    this.writer.bytes(body);
    this.endPackaged(at);
  }

  /**
   * Open a PACKAGED command whose body (sections, commands) is written next through this encoder; returns the
   * token for endPackaged(), which patches in the be32 body length. Nothing is flushed to a push sink meanwhile.
   */
  beginPackaged(): number {
    if (this.open) throw new VmstreamError("STATE", "a command inside an open section");
    const w = this.writer;
    w.u8(SEC.COMMAND);
    w.be16(CMD.PACKAGED);
    w.be16(4);
    this.packages++;
    return w.reserve(4);
  }

  /** Close the PACKAGED command opened by beginPackaged() (innermost first). */
  endPackaged(at: number): void {
    if (this.open) throw new VmstreamError("STATE", "a PACKAGED body ends inside an open section");
    if (this.packages === 0) throw new VmstreamError("STATE", "endPackaged() without beginPackaged()");
    const size = this.writer.pos - (at + 4);
    if (size < 0 || size > 0xffffffff) throw new VmstreamError("STATE", "bad PACKAGED token", { detail: `body size ${size}` });
    this.writer.patchBe32(at, size);
    this.packages--;
    this.flush();
  }

  /** PING (needs a return path on the destination). */
  ping(value: number): void {
    const d = new Uint8Array(4);
    new DataView(d.buffer).setUint32(0, value >>> 0);
    this.command(CMD.PING, d);
  }

  /** QEMU_VM_EOF. */
  eof(): void {
    if (this.open) throw new VmstreamError("STATE", "EOF inside an open section");
    this.writer.u8(SEC.EOF);
    this.eofWritten = true;
    this.flush();
  }

  /** The vmdesc JSON of the devices written so far, as QEMU formats it. */
  vmdescText(): string {
    return `{"page_size": ${this.pageSize}, "devices": [${this.devices.join(", ")}]}`;
  }

  /** The vmdesc trailer (`0x06 be32 len json`): the generated text, or `text` when given. Skipped when the framing has none. */
  vmdescTrailer(text: string | Uint8Array = this.vmdescText()): void {
    if (!this.framing.vmdesc) return;
    if (!this.eofWritten) throw new VmstreamError("STATE", "the vmdesc trailer comes after EOF");
    const b = typeof text === "string" ? enc.encode(text) : text;
    this.writer.u8(SEC.VMDESCRIPTION);
    this.writer.be32(b.length);
    this.writer.bytes(b);
    this.flush();
  }

  /** EOF and (when on) the generated vmdesc trailer. */
  finishStream(): void {
    this.eof();
    this.vmdescTrailer();
  }

  /** All bytes written (ByteWriter sink only). */
  bytes(): Uint8Array {
    if (this.push) throw new VmstreamError("STATE", "bytes() needs a ByteWriter sink");
    return this.writer.concat();
  }
}

/**
 * An encoder with the framing of a decoded stream (configuration section, footers and vmdesc trailer as the
 * stream had them), its header and configuration written.
 */
export function encoderFor(r: DecodeResult, out: ByteWriter, pageSize = r.pageSize): StreamEncoder {
  const enc = new StreamEncoder(out, { configuration: r.configuration !== undefined, footers: r.footers ?? true, vmdesc: r.vmdesc !== undefined, pageSize });
  enc.header(r.version);
  if (r.configuration) enc.configuration(r.configuration);
  return enc;
}
