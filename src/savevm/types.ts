// The decoder's public shapes: options, the SectionHandler contract for iterative ("live") sections,
// the device-description hooks, events, and the result. Browser-safe.

import type { VmstreamError } from "../io/errors.js";
import type { Kernels } from "../kernels/types.js";
import type { State, VMStateDescription } from "../vmstate/types.js";
import type { Vmdesc, VmdescDevice } from "../vmstate/vmdesc.js";
import type { ConfigurationSpec } from "./configuration.js";
import type { DecoderLimits } from "./constants.js";

export type SectionType = "start" | "part" | "end" | "full";

/** A section header as read (PART/END carry the idstr, instance and version their START/FULL bound). */
export interface SectionHeader {
  readonly type: SectionType;
  readonly id: number;
  readonly idstr: string;
  readonly instanceId: number;
  readonly version: number;
  /** Absolute offset of the section type byte. */
  readonly offset: number;
}

/** The bytes a live handler may parse: `len` bytes at `ptr` in the kernels' memory. */
export interface SectionInput {
  readonly kernels: Kernels;
  /** Address in `kernels.memory` of the first unparsed payload byte. Re-read `kernels.u8` after any alloc. */
  readonly ptr: number;
  /** Bytes available from `ptr`. */
  readonly len: number;
  /** Absolute stream offset of the byte at `ptr`. */
  readonly offset: number;
  /** True when no byte will follow the `len` available (end of input or of the enclosing PACKAGED command). */
  readonly final: boolean;
}

export interface FeedResult {
  /** Bytes parsed (whole records only: the rest is offered again with more input). */
  readonly consumed: number;
  /** The section payload is complete (the footer, if any, follows). */
  readonly done: boolean;
}

/**
 * Loader of one iterative section type (`ram`, `block`, `spapr/htab`, `dirty-bitmap`, or your own). One
 * instance serves every START/PART/END (and FULL) section of its idstr in a stream, so state such as RAM's
 * current block carries across sections. Errors are thrown as VmstreamError (the decoder adds the section).
 */
export interface SectionHandler<R = unknown> {
  readonly idstr: string;
  /** The newest version this handler loads (a newer section version is an error, as in QEMU). */
  readonly maxVersion: number;
  /** A section of this handler starts (setup = "start", iterate = "part", complete = "end", or "full"). */
  begin(header: SectionHeader): void;
  /** Parse payload bytes; called again with more input until it reports `done`. Must consume whole records only. */
  feed(input: SectionInput, header: SectionHeader): FeedResult;
  /** What the handler found, for the decode result. */
  result(): R;
  /** The stream is over: give back work memory the result does not own (tables, scratch). */
  finish?(): void;
  /** Give back all kernel memory, materialised data included. `result()` must still answer (from a snapshot). */
  dispose?(): void;
  /** RAM only: a block by name (for POSTCOPY_RAM_DISCARD / RECV_BITMAP checks). */
  lookupBlock?(name: string): { readonly length: bigint } | undefined;
  /**
   * The handler reports each record it decodes through `HandlerContext.record` (when the decoder asks for
   * records); otherwise the decoder reports the payload bytes the handler consumed.
   */
  readonly emitsRecords?: boolean;
}

/** A decoded configuration section: its spec (the machine name one character per byte) and its state. */
export interface ConfigurationInfo extends ConfigurationSpec {
  /** The decoded configuration state (the walk of configurationDescription: name bytes and subsections). */
  readonly state: State;
  readonly offset: number;
  readonly size: number;
}

export interface HandlerContext {
  readonly kernels: Kernels;
  readonly options: Readonly<DecoderOptions>;
  readonly limits: DecoderLimits;
  /** Target page size in force: `options.pageSize`, or 1 << `configuration/target-page-bits`. */
  pageSize(): number;
  configuration(): ConfigurationInfo | undefined;
  warn(message: string): void;
  /** Report a decoded record (defined only when the decoder was asked for records: DecoderOptions.records). */
  readonly record: ((record: unknown) => void) | undefined;
  /** Bytes materialised so far by every handler, held against limits.materializedBytes (docs/memory.md). */
  readonly materialized: MaterializedBytes;
}

/**
 * What the handlers of one decode have materialised (RAM pages written, disk granules), shared so that one limit
 * covers them all. `bytes` is an upper bound a handler may raise cheaply; `settle()` asks every handler to make
 * its share exact (it registered how with `onSettle`), which a handler does before failing on the limit.
 */
export interface MaterializedBytes {
  bytes: number;
  settle(): void;
  onSettle(exact: () => void): void;
}

export type HandlerFactory = (ctx: HandlerContext) => SectionHandler;

export interface DeviceContext {
  /** Machine type from the configuration section, when there was one. */
  readonly machine: string | undefined;
  readonly pageSize: number;
}

/** Where a device section's description comes from. */
export type DeviceSource = "registry" | "vmdesc" | "legacy" | "opaque";

/** A registered description for a device section (checked against the section version by the engine). */
export type DeviceRegistry = (idstr: string, instanceId: number, version: number, ctx: DeviceContext) => VMStateDescription | undefined;

/** A description built from the section's vmdesc entry; its walk must consume exactly the bytes QEMU wrote. */
export type VmdescDescriber = (idstr: string, instanceId: number, device: VmdescDevice) => VMStateDescription | undefined;

/** Fallback for a vmdesc entry nobody described: legacy octet-stream sections, opaque blobs of the entry's size. */
export type VmdescFallback = (
  idstr: string,
  instanceId: number,
  device: VmdescDevice,
  limits: DecoderLimits,
) => { description: VMStateDescription; source: DeviceSource };

/** What to keep in the decoder's (or the result's) memory. */
export interface MaterializeOptions {
  /** RAM blocks in the kernels' memory, filled page by page (XBZRLE applied). */
  readonly ram?: boolean;
  /** Block-migration disk images. */
  readonly block?: boolean;
  /** The sPAPR hash page table. */
  readonly htab?: boolean;
}

export interface RamOptions {
  /**
   * MEM_SIZE entries carry a be64 page size when the stream uses postcopy with hugepage-backed blocks (the
   * stream does not say so): true for every block, or a predicate per block name. Default false.
   */
  readonly blockPageSize?: boolean | ((name: string) => boolean);
  /** MEM_SIZE entries carry a be64 MemoryRegion address (x-ignore-shared). Default: as the configuration announces. */
  readonly ignoreShared?: boolean;
}

export interface DecoderOptions {
  /** The kernels to decode RAM with (and to keep materialised RAM in). Default: a private instance. */
  readonly kernels?: Kernels;
  /** Target page size (default 4096, or what `configuration/target-page-bits` says). */
  readonly pageSize?: number;
  readonly materialize?: boolean | MaterializeOptions;
  readonly ram?: RamOptions;
  /** zlib (RFC 1950) inflate of one COMPRESS_PAGE record into exactly `pageSize` bytes. Without it, such records are an error. */
  readonly inflate?: (data: Uint8Array, pageSize: number) => Uint8Array;
  /** Live section handlers by idstr (added to, or replacing, the built-in ones). */
  readonly handlers?: Readonly<Record<string, HandlerFactory>>;
  /** Registered device descriptions, tried first for every FULL section. */
  readonly devices?: DeviceRegistry;
  /** Descriptions from vmdesc entries (e.g. the analyzer's descriptionFromVmdesc). */
  readonly describe?: VmdescDescriber;
  /** Last resort for vmdesc entries (legacy octet-stream / opaque blob of the entry's size). */
  readonly vmdescFallback?: VmdescFallback;
  /**
   * The stream's vmdesc JSON when known before decoding (e.g. read from the end of a file): device sections
   * without a registered description are then decoded as they arrive, with nothing buffered.
   */
  readonly vmdesc?: string | Uint8Array;
  /** A registered description that fails on a section is an error (default: fall back to the vmdesc, with a warning). */
  readonly strictDevices?: boolean;
  /** The input has no 8-byte header (a PACKAGED body or a COLO device-state stream). */
  readonly headerless?: boolean;
  readonly limits?: Partial<DecoderLimits>;
  /** Called for every event as it is decoded. */
  readonly onEvent?: (event: DecoderEvent) => void;
  /** Report live sections record by record ("begin", "record" / "payload" events): what converters replay. */
  readonly records?: boolean;
}

/** A section as decoded: its header, where its payload is, its size. */
export interface SectionRecord extends SectionHeader {
  /** Bytes from the type byte to the end of the footer (or payload when there is none). */
  readonly size: number;
  readonly payloadOffset: number;
  readonly payloadSize: number;
  readonly footer: boolean;
  /** PACKAGED nesting depth (0 = top level). */
  readonly depth: number;
}

export interface DeviceSectionResult {
  readonly idstr: string;
  readonly instanceId: number;
  readonly version: number;
  readonly sectionId: number;
  /** Index of the section in `sections`. */
  readonly sectionIndex: number;
  readonly payloadOffset: number;
  readonly payloadSize: number;
  readonly state: State;
  readonly description: VMStateDescription;
  readonly source: DeviceSource;
  /** The section's vmdesc entry (filled in when the vmdesc is known). */
  vmdesc?: VmdescDevice;
  /** Why the registered description was not used. */
  readonly warning?: string;
}

export interface CommandRecord {
  readonly cmd: number;
  readonly name: string;
  readonly offset: number;
  /** Length field (PACKAGED: 4; its body follows). */
  readonly length: number;
  readonly depth: number;
  /** PING, RESUME-ACK style values, POSTCOPY_ADVISE sizes, PACKAGED body length, DISCARD ranges, RECV_BITMAP block... */
  readonly fields: Readonly<Record<string, unknown>>;
}

export interface VmdescInfo {
  /** Offset of the 0x06 byte (undefined when the vmdesc came from the options only). */
  readonly offset?: number;
  readonly length: number;
  /** The raw JSON text (duplicate keys and all). */
  readonly text: string;
  /** JSON.parse of the text (duplicate keys: the last wins). */
  readonly json: Vmdesc;
}

export interface Completeness {
  /** EOF seen, and every vmdesc device had its FULL section and vice versa. */
  readonly complete: boolean;
  readonly eof: boolean;
  readonly vmdesc: boolean;
  /** vmdesc devices without a FULL section. */
  readonly missingDevices: readonly { readonly name: string; readonly instanceId: number }[];
  /** FULL sections not listed in the vmdesc. */
  readonly unlistedSections: readonly { readonly idstr: string; readonly instanceId: number }[];
}

export interface DecodeResult {
  /** Stream bytes decoded. */
  readonly bytes: number;
  readonly version: number;
  readonly configuration: ConfigurationInfo | undefined;
  /** Whether sections carry footers (undefined: no section seen). */
  readonly footers: boolean | undefined;
  readonly pageSize: number;
  /** Sections in stream order (at most limits.sectionRecords). */
  readonly sections: readonly SectionRecord[];
  readonly sectionCount: number;
  readonly devices: readonly DeviceSectionResult[];
  /** Live handler results by idstr (`ram`, `block`, `spapr/htab`, `dirty-bitmap`, ...). */
  readonly live: Readonly<Record<string, unknown>>;
  readonly commands: readonly CommandRecord[];
  readonly commandCount: number;
  readonly eof: boolean;
  readonly eofOffset: number | undefined;
  readonly vmdesc: VmdescInfo | undefined;
  readonly completeness: Completeness;
  readonly warnings: readonly string[];
  readonly kernels: Kernels;
  /** Free the kernel memory this result owns (materialised RAM). */
  dispose(): void;
}

export type DecoderEvent =
  | { readonly type: "header"; readonly version: number }
  | { readonly type: "configuration"; readonly configuration: ConfigurationInfo }
  /** A live section starts (with DecoderOptions.records): its records follow, then its "section" event. */
  | { readonly type: "begin"; readonly header: SectionHeader }
  /** A record of the live section, as its handler decoded it: views of the decoder's window, valid during the call. */
  | { readonly type: "record"; readonly header: SectionHeader; readonly record: unknown }
  /** Payload bytes of a live section whose handler reports no records (a view, valid during the call). */
  | { readonly type: "payload"; readonly header: SectionHeader; readonly bytes: Uint8Array }
  | { readonly type: "section"; readonly section: SectionRecord }
  | { readonly type: "device"; readonly device: DeviceSectionResult }
  | { readonly type: "command"; readonly command: CommandRecord }
  | { readonly type: "eof"; readonly offset: number }
  | { readonly type: "vmdesc"; readonly vmdesc: VmdescInfo }
  | { readonly type: "warning"; readonly message: string };

export interface ValidationSummary {
  readonly bytes: number;
  readonly machine: string | undefined;
  readonly sections: number;
  readonly devices: number;
  readonly commands: number;
  readonly eof: boolean;
  readonly vmdesc: boolean;
  readonly complete: boolean;
  readonly live: Readonly<Record<string, unknown>>;
  readonly warnings: readonly string[];
}

export interface ValidationResult {
  readonly ok: boolean;
  readonly error?: VmstreamError;
  readonly summary: ValidationSummary;
}
