// The v86 adapter: boots a headless v86 emulator in Node, exposes its guest RAM as a vmstream RAM block over v86's
// own WebAssembly.Memory (zero copy), and carries the rest of the machine as v86's RAM-less save_state() in a
// legacy "v86/state" section whose header records the machine configuration (a mismatch is refused). The v86
// internals relied on (0.5.462, pinned): docs/v86.md, "The adapter". Node only; v86 is imported dynamically.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { deflateRawSync, inflateRawSync } from "node:zlib";
import type { V86, V86Options } from "v86";
import { VmstreamError } from "../io/errors.js";
import { type BackendChoice, createKernels, type Kernels } from "../kernels/index.js";
import type { RamBlockData } from "../sections/ram/format.js";
import { F } from "../vmstate/fields.js";
import type { VMStateDescription } from "../vmstate/types.js";
import { guestDiskImage } from "./guest.js";

/** The v86 release this adapter was written and tested against (its state layout is undocumented). */
export const V86_VERSION = "0.5.462";
/** Where Debian/Ubuntu's `seabios` package puts the BIOS. */
export const DEFAULT_BIOS = "/usr/share/seabios/bios.bin";
/** RAM block name in vmstream streams. */
export const V86_RAM_BLOCK = "v86.ram";
/** idstr of the device-state section. */
export const V86_STATE_SECTION = "v86/state";
/** Machine name written in the configuration section. */
export const V86_MACHINE = "v86";

/** The internals of v86's CPU object used here (names that survive its Closure build). */
interface V86Cpu {
  wasm_memory: WebAssembly.Memory;
  mem8: Uint8Array;
  memory_size: Uint32Array | number[];
  jit_clear_cache(): void;
  pack_memory?: () => { bitmap: { get_buffer(): ArrayBuffer }; packed_memory: Uint8Array };
  unpack_memory?: (bitmap: unknown, packed: Uint8Array) => void;
}
type V86Instance = V86 & { v86: { cpu: V86Cpu } };

export interface V86MachineOptions {
  /** Guest RAM in bytes (a multiple of 4 KiB; v86 wants a power of two). Default 32 MiB. */
  readonly memorySize?: number;
  /** SVGA memory in bytes; it travels in the device state, so keep it small headless. Default 256 KiB. */
  readonly vgaMemorySize?: number;
  /** BIOS image: a path or the bytes. Default /usr/share/seabios/bios.bin (Debian package `seabios`). */
  readonly bios?: string | Uint8Array;
  /** Hard-disk image (default: vmstream's guest, see guest.ts, unless `fda` is given). */
  readonly hda?: Uint8Array;
  /** Floppy image. */
  readonly fda?: Uint8Array;
  /** Start the guest once the emulator is ready (default true; a migration destination passes false). */
  readonly autostart?: boolean;
  /** v86.wasm (default: the one shipped in the v86 package). */
  readonly wasmPath?: string;
  /** Options passed to V86 as they are (screen, network...): they are NOT recorded in the configuration. */
  readonly extra?: Partial<V86Options>;
}

/** What must be identical on both sides of a snapshot or migration. */
export interface V86MachineConfig {
  /** v86 package version (e.g. "0.5.462+g5f9a90f"). */
  readonly v86: string;
  /** v86's STATE_VERSION (the second int32 of a save_state blob). */
  readonly stateVersion: number;
  readonly memorySize: number;
  readonly vgaMemorySize: number;
  /** Device topology: disks by slot with their sizes in bytes, and the options that add devices. */
  readonly devices: Readonly<Record<string, number | boolean>>;
  /** sha256 of the BIOS image (hex). */
  readonly biosSha256: string;
}

let v86Module: Promise<{ V86: new (o: V86Options) => V86 }> | undefined;

/** Import the optional peer dependency, with a clear error when it is absent. */
export function loadV86(): Promise<{ V86: new (o: V86Options) => V86 }> {
  v86Module ??= import("v86").then(
    (m) => m as unknown as { V86: new (o: V86Options) => V86 },
    (e: unknown) => {
      v86Module = undefined;
      throw new VmstreamError("MISSING", "the v86 package is not installed", {
        detail: `npm install v86@${V86_VERSION} (an optional peer dependency of vmstream): ${e instanceof Error ? e.message : String(e)}`,
      });
    },
  );
  return v86Module;
}

const require = createRequire(import.meta.url);

/** The installed v86 package's version and its build folder. */
export function v86Package(): { version: string; dir: string } {
  let main: string;
  try {
    main = require.resolve("v86");
  } catch {
    throw new VmstreamError("MISSING", "the v86 package is not installed", { detail: `npm install v86@${V86_VERSION}` });
  }
  const dir = path.dirname(main);
  const pkg = JSON.parse(readFileSync(path.join(dir, "..", "package.json"), "utf8")) as { version: string };
  return { version: pkg.version, dir };
}

/** The BIOS bytes, or a VmstreamError naming the package to install. */
export function findBios(bios: string | Uint8Array = DEFAULT_BIOS): Uint8Array {
  if (typeof bios !== "string") return bios;
  if (!existsSync(bios)) {
    throw new VmstreamError("MISSING", `no BIOS at ${bios}`, {
      detail: "v86 ships none: install SeaBIOS (Debian/Ubuntu: apt-get install seabios) or pass bios: <path or bytes>",
    });
  }
  return new Uint8Array(readFileSync(bios));
}

/** Whether the default BIOS is installed (tests and the demo use this to explain what is missing). */
export function biosInstalled(file = DEFAULT_BIOS): boolean {
  return existsSync(file);
}

function arrayBufferOf(u8: Uint8Array): ArrayBuffer {
  // v86 keeps and writes into disk buffers: always hand it a private copy
  return u8.slice().buffer;
}

const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

const STATE_MAGIC = 0x86768676 | 0;

/** A headless v86 emulator with the accessors vmstream needs. */
export class V86Machine {
  private serialText = "";
  private readonly serialListeners = new Set<(text: string) => void>();
  private k: Kernels | undefined;
  private destroyed = false;

  private constructor(
    readonly emu: V86,
    readonly config: V86MachineConfig,
  ) {
    emu.add_listener("serial0-output-byte", (b: number) => {
      const c = String.fromCharCode(b);
      // keep the last 64 KiB: enough for any check, bounded for a guest that runs for hours
      this.serialText = (this.serialText.length > 65536 ? this.serialText.slice(-32768) : this.serialText) + c;
      for (const l of this.serialListeners) l(c);
    });
  }

  /** Construct, wait for `emulator-ready`, record the configuration, start the guest unless autostart is false. */
  static async create(o: V86MachineOptions = {}): Promise<V86Machine> {
    const memorySize = o.memorySize ?? 32 * 1024 * 1024;
    const vgaMemorySize = o.vgaMemorySize ?? 256 * 1024;
    if (!Number.isInteger(memorySize) || memorySize <= 0 || memorySize % 4096 !== 0) {
      throw new VmstreamError("RANGE", "v86 memory size must be a positive multiple of 4 KiB", { detail: String(memorySize) });
    }
    const bios = findBios(o.bios);
    const { V86: Ctor } = await loadV86();
    const pkg = v86Package();
    const hda = o.hda ?? (o.fda ? undefined : guestDiskImage("hda"));
    const options: V86Options = {
      wasm_path: o.wasmPath ?? path.join(pkg.dir, "v86.wasm"),
      bios: { buffer: arrayBufferOf(bios) },
      memory_size: memorySize,
      vga_memory_size: vgaMemorySize,
      autostart: false,
      ...(hda ? { hda: { buffer: arrayBufferOf(hda) } } : {}),
      ...(o.fda ? { fda: { buffer: arrayBufferOf(o.fda) } } : {}),
      ...(o.extra ?? {}),
    };
    const emu = new Ctor(options);
    await new Promise<void>((resolve) => emu.add_listener("emulator-ready", () => resolve()));
    const devices: Record<string, number | boolean> = {};
    if (hda) devices["hda"] = hda.length;
    if (o.fda) devices["fda"] = o.fda.length;
    for (const key of ["hdb", "fdb", "cdrom", "acpi", "uart1", "uart2", "uart3", "net_device", "virtio_console", "virtio_balloon", "filesystem"] as const) {
      const v = (o.extra as Record<string, unknown> | undefined)?.[key];
      if (v !== undefined && v !== false) devices[key] = true;
    }
    // STATE_VERSION from a RAM-less save of the fresh machine (a few ms)
    const probe = new Int32Array(await saveStateWithoutRam(emu as V86Instance), 0, 4);
    if (probe[0] !== STATE_MAGIC)
      throw new VmstreamError("BAD_MAGIC", "v86 save_state() did not start with its magic", { detail: `0x${(probe[0]! >>> 0).toString(16)}` });
    const config: V86MachineConfig = {
      v86: pkg.version,
      stateVersion: probe[1]!,
      memorySize,
      vgaMemorySize,
      devices,
      biosSha256: sha256(bios),
    };
    const m = new V86Machine(emu, config);
    if (o.autostart !== false) await emu.run();
    return m;
  }

  private get cpu(): V86Cpu {
    if (this.destroyed) throw new VmstreamError("STATE", "the v86 machine was destroyed");
    return (this.emu as V86Instance).v86.cpu;
  }

  /** v86's WebAssembly.Memory (it may grow: take views again after anything that runs v86 or allocates). */
  get memory(): WebAssembly.Memory {
    return this.cpu.wasm_memory;
  }

  /** Offset of guest physical address 0 in `memory`. */
  get ramOffset(): number {
    return this.cpu.mem8.byteOffset;
  }

  get ramLength(): number {
    return this.cpu.memory_size[0]!;
  }

  /** A zero-copy view of guest RAM, valid until the memory grows (build it again for every pass). */
  ramView(): Uint8Array {
    const cpu = this.cpu;
    return new Uint8Array(cpu.wasm_memory.buffer, cpu.mem8.byteOffset, cpu.memory_size[0]!);
  }

  /** Guest RAM as a vmstream block in `kernels()`' memory (the same bytes, no copy). */
  ramBlock(): RamBlockData {
    return { name: V86_RAM_BLOCK, ptr: this.ramOffset, length: this.ramLength };
  }

  /**
   * Kernels on v86's own memory (the import-memory build), created once per machine: guest RAM is a block of
   * their memory with no copy. Their allocator claims pages by growing the memory and never hands out pages
   * v86's own allocator grew for itself (src/kernels/arena.ts), so both may grow it while the guest runs.
   */
  kernels(opts: { backend?: BackendChoice } = {}): Kernels {
    this.k ??= createKernels({ memory: this.memory, ...(opts.backend ? { backend: opts.backend } : {}) });
    return this.k;
  }

  get running(): boolean {
    return this.emu.is_running();
  }

  /** Stop the guest (resolves at the end of the current slice). */
  async pause(): Promise<void> {
    if (this.emu.is_running()) await this.emu.stop();
  }

  async resume(): Promise<void> {
    if (!this.emu.is_running()) await this.emu.run();
  }

  /** CPU, device, disk and VGA state without the RAM (v86's save_state format). */
  async deviceState(): Promise<Uint8Array> {
    return new Uint8Array(await saveStateWithoutRam(this.emu as V86Instance));
  }

  /**
   * Restore a RAM-less state; the RAM already in the machine stays as it is. Clears the JIT cache (restore_state
   * does too): pages written from outside may hold code v86 had compiled.
   */
  async restoreDeviceState(state: Uint8Array): Promise<void> {
    const emu = this.emu as V86Instance;
    const cpu = emu.v86.cpu;
    const header = new Int32Array(state.buffer, state.byteOffset, 4);
    if (state.byteLength < 16 || (state.byteOffset & 3) !== 0 || header[0] !== STATE_MAGIC) {
      throw new VmstreamError("BAD_MAGIC", "not a v86 state", { detail: `${state.byteLength} bytes` });
    }
    cpu.unpack_memory = () => {};
    try {
      const ab = state.byteOffset === 0 && state.byteLength === state.buffer.byteLength ? (state.buffer as ArrayBuffer) : arrayBufferOf(state);
      await emu.restore_state(ab);
    } finally {
      delete cpu.unpack_memory;
    }
    cpu.jit_clear_cache();
  }

  /** The `v86/state` section payload: header (configuration) + the RAM-less state, deflated. */
  async stateSection(opts: { compress?: boolean } = {}): Promise<Uint8Array> {
    return encodeStateSection(this.config, await this.deviceState(), opts.compress ?? true);
  }

  /** Check a `v86/state` payload against this machine and restore it (RAM untouched). */
  async restoreStateSection(payload: Uint8Array): Promise<V86MachineConfig> {
    const { config, state } = decodeStateSection(payload);
    checkConfig(config, this.config);
    await this.restoreDeviceState(state);
    return config;
  }

  /** Every serial byte so far (the last 64 KiB at most). */
  get serial(): string {
    return this.serialText;
  }

  /** Serial output as it arrives; returns the unsubscribe function. */
  onSerial(listener: (text: string) => void): () => void {
    this.serialListeners.add(listener);
    return () => this.serialListeners.delete(listener);
  }

  /** Wait until the serial output (from `from` on) matches; rejects after `timeoutMs`. */
  waitForSerial(re: RegExp, timeoutMs = 10_000, from = 0): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => this.serialText.slice(from).match(re);
      const m = check();
      if (m) return resolve(m);
      const timer = setTimeout(() => {
        off();
        reject(new VmstreamError("TIMEOUT", `no serial output matching ${re} within ${timeoutMs} ms`, { detail: JSON.stringify(this.serialText.slice(-200)) }));
      }, timeoutMs);
      const off = this.onSerial(() => {
        const r = check();
        if (r) {
          clearTimeout(timer);
          off();
          resolve(r);
        }
      });
    });
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.serialListeners.clear();
    try {
      await this.emu.stop();
    } finally {
      await this.emu.destroy();
    }
  }
}

async function saveStateWithoutRam(emu: V86Instance): Promise<ArrayBuffer> {
  const cpu = emu.v86.cpu;
  cpu.pack_memory = () => ({ bitmap: { get_buffer: () => new ArrayBuffer(0) }, packed_memory: new Uint8Array(0) });
  try {
    return await emu.save_state();
  } finally {
    delete cpu.pack_memory;
  }
}

// --- the v86/state section payload ---------------------------------------------------------------------------
// A legacy octet-stream (QEMU's vmdesc calls it one buffer "data"), laid out so it delimits itself:
//   "V86S" | be32 header length | be32 body length | header JSON (utf-8) | state (deflate-raw or raw)
// `v86StateConversion` describes those bytes field by field (a conversion in the sense of vmstate/legacy.ts): a
// destination registers it, so the section decodes as it arrives, before the vmdesc trailer.

const SECTION_MAGIC = 0x56383653; // "V86S"

/** The layout of the `v86/state` payload as a VMState description (its walk consumes exactly the payload). */
export const v86StateConversion: VMStateDescription = {
  name: "v86/state",
  version: 1,
  fields: [
    F.uint32("magic"),
    F.uint32("header_len"),
    F.uint32("body_len"),
    F.buffer("header", { field: "header_len" }),
    F.buffer("body", { field: "body_len" }),
  ],
};

interface SectionHeader {
  readonly format: 1;
  readonly config: V86MachineConfig;
  readonly encoding: "deflate-raw" | "raw";
  /** Bytes of the state before compression. */
  readonly stateBytes: number;
}

export function encodeStateSection(config: V86MachineConfig, state: Uint8Array, compress = true): Uint8Array {
  const body = compress ? new Uint8Array(deflateRawSync(state, { level: 1 })) : state;
  const header: SectionHeader = { format: 1, config, encoding: compress ? "deflate-raw" : "raw", stateBytes: state.length };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(12 + json.length + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, SECTION_MAGIC);
  dv.setUint32(4, json.length);
  dv.setUint32(8, body.length);
  out.set(json, 12);
  out.set(body, 12 + json.length);
  return out;
}

const section = { idstr: V86_STATE_SECTION, id: 0 };

export function decodeStateSection(payload: Uint8Array): { config: V86MachineConfig; state: Uint8Array } {
  const bad = (what: string, offset: number, detail?: string) =>
    new VmstreamError("BAD_VALUE", what, { offset, path: V86_STATE_SECTION, ...(detail ? { detail } : {}) });
  if (payload.length < 12) throw bad("v86 state section too short", 0, `${payload.length} bytes`);
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (dv.getUint32(0) !== SECTION_MAGIC) throw new VmstreamError("BAD_MAGIC", "not a v86 state section", { offset: 0, path: V86_STATE_SECTION });
  const n = dv.getUint32(4);
  const m = dv.getUint32(8);
  if (12 + n + m !== payload.length) throw bad("v86 state section lengths do not add up", 4, `header ${n} + body ${m} + 12, section ${payload.length} bytes`);
  let h: SectionHeader;
  try {
    h = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload.subarray(12, 12 + n))) as SectionHeader;
  } catch (e) {
    throw bad("v86 state header is not JSON", 12, e instanceof Error ? e.message : String(e));
  }
  const c = h?.config;
  if (
    h?.format !== 1 ||
    typeof c !== "object" ||
    c === null ||
    typeof c.v86 !== "string" ||
    typeof c.memorySize !== "number" ||
    typeof c.stateVersion !== "number" ||
    typeof c.devices !== "object" ||
    c.devices === null ||
    typeof c.biosSha256 !== "string"
  ) {
    throw bad("v86 state header has an unknown layout", 12);
  }
  if (!Number.isSafeInteger(h.stateBytes) || h.stateBytes < 16 || h.stateBytes > 2 ** 31) throw bad("v86 state size out of range", 12, String(h.stateBytes));
  const body = payload.subarray(12 + n);
  let state: Uint8Array;
  if (h.encoding === "raw") state = body;
  else if (h.encoding === "deflate-raw") {
    try {
      state = new Uint8Array(inflateRawSync(body, { maxOutputLength: h.stateBytes }));
    } catch (e) {
      throw bad("v86 state does not inflate", 12 + n, e instanceof Error ? e.message : String(e));
    }
  } else throw bad("unknown v86 state encoding", 12, String(h.encoding));
  if (state.length !== h.stateBytes) throw bad("v86 state has the wrong size", 12 + n, `${state.length} bytes, header says ${h.stateBytes}`);
  if (state.byteOffset & 3) state = state.slice();
  const head = new DataView(state.buffer, state.byteOffset, 16);
  if (head.getInt32(0, true) !== STATE_MAGIC) throw bad("the v86 state inside the section has no v86 magic", 12 + n);
  if (head.getInt32(4, true) !== c.stateVersion)
    throw bad("the v86 state's version differs from its header", 12 + n, `${head.getInt32(4, true)} vs ${c.stateVersion}`);
  return { config: c, state };
}

/** Refuse a state from a differently built machine, naming every difference. */
export function checkConfig(incoming: V86MachineConfig, local: V86MachineConfig): void {
  const diffs: string[] = [];
  const cmp = (name: string, a: unknown, b: unknown) => {
    if (a !== b) diffs.push(`${name}: ${JSON.stringify(a)} in the stream, ${JSON.stringify(b)} here`);
  };
  cmp("v86 version", incoming.v86, local.v86);
  cmp("STATE_VERSION", incoming.stateVersion, local.stateVersion);
  cmp("memory_size", incoming.memorySize, local.memorySize);
  cmp("vga_memory_size", incoming.vgaMemorySize, local.vgaMemorySize);
  const keys = new Set([...Object.keys(incoming.devices), ...Object.keys(local.devices)]);
  for (const key of [...keys].sort()) cmp(`device ${key}`, incoming.devices[key], local.devices[key]);
  cmp("BIOS sha256", incoming.biosSha256, local.biosSha256);
  if (diffs.length > 0) {
    throw new VmstreamError("MISMATCH", "the v86 machine differs from the one the state was saved on; refusing to restore", {
      section,
      path: V86_STATE_SECTION,
      detail: diffs.join("; "),
    });
  }
}
