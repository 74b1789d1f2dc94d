// The Visitor interface, shaped like QEMU's QAPI visitors: one walk (the VMState engine) serves every
// direction, and the visitor decides what happens (QEMU wire, BER, pretty, JSON, trace). Scalar
// visits return the value and the first error sticks: docs/vmstate.md, "Visitors".
import type { VmstreamError } from "../io/errors.js";

export type IntType = "int8" | "int16" | "int32" | "int64" | "uint8" | "uint16" | "uint32" | "uint64";
export type ScalarType = IntType | "bool" | "float32" | "float64";
export type Name = string | number;

/** Width in bytes of each integer type. */
export const INT_WIDTH: Readonly<Record<IntType, number>> = {
  int8: 1,
  uint8: 1,
  int16: 2,
  uint16: 2,
  int32: 4,
  uint32: 4,
  int64: 8,
  uint64: 8,
};

/**
 * What a scalar means beyond its wire type, for visitors that describe (BER, JSON, pretty):
 * QEMU's VMStateInfo name when it is not the plain type (e.g. "int32 equal", "timer",
 * "CPU_Double_U", "pci irq state"). The wire visitors ignore it.
 */
export interface ScalarInfo {
  /** QEMU VMStateInfo name as it appears in the vmdesc JSON ("uint8", "int32 le", "timer"...). */
  readonly info?: string;
}

export interface Visitor {
  readonly direction: "input" | "output";
  /** The first error; later visits do nothing. */
  readonly error: VmstreamError | undefined;
  /** Record an error (only the first one is kept). Engines report description-level problems here. */
  fail(error: VmstreamError): void;
  /** The current field path, or the path of field `name` inside it, for error messages (`PIIX3.PCIDevice.config(256)(1).[3]`). */
  path(name?: Name): string;

  /**
   * Start a struct. `name` is the field name in the parent (or the section's idstr at the root),
   * `vmsdName` the VMState description's name, `version` the version it is walked at.
   * Self-describing input visitors check the name and version against the stream.
   */
  startStruct(name: Name, vmsdName: string, version: number): void;
  endStruct(): void;

  /**
   * Start an array of `count` elements of `elemSize` bytes each (the trace's
   * `name(count)(size)`). Returns the element count to walk: the local count for the wire
   * visitors, the stream's count for self-describing input (which reports a mismatch).
   */
  startArray(name: Name, count: number, elemSize: number, elemType: string): number;
  endArray(): void;

  /**
   * A field that is present or absent by a version or test gate. Returns whether it is present in
   * the stream (the wire visitors: `present`; BER input: what the stream holds, with a mismatch
   * reported when that differs from `present`).
   */
  optional(name: Name, present: boolean): boolean;

  /**
   * Subsections. Output: `startSubsection(name, version)` ... `endSubsection()` for each one sent.
   * Input: `nextSubsection(parentVmsdName)` returns the next subsection in the stream (name and
   * version) or undefined when there are no more, consuming its header only when it returns one.
   */
  nextSubsection(parentVmsdName: string): { name: string; version: number } | undefined;
  startSubsection(name: string, version: number): void;
  endSubsection(): void;

  /**
   * QTAILQ/QLIST/GTree element markers: output writes "another element follows" (`more`) or the
   * end of the list; input returns what the stream says.
   */
  listNext(name: Name, more: boolean): boolean;

  /** A NULL entry of an array of pointers (QEMU's 0x30 marker). Input: returns whether the stream holds the marker when `isNull`. */
  nullPointer(name: Name, isNull: boolean): boolean;

  bool(name: Name, v: boolean, info?: ScalarInfo): boolean;
  int8(name: Name, v: number, info?: ScalarInfo): number;
  int16(name: Name, v: number, info?: ScalarInfo): number;
  int32(name: Name, v: number, info?: ScalarInfo): number;
  int64(name: Name, v: bigint, info?: ScalarInfo): bigint;
  uint8(name: Name, v: number, info?: ScalarInfo): number;
  uint16(name: Name, v: number, info?: ScalarInfo): number;
  uint32(name: Name, v: number, info?: ScalarInfo): number;
  uint64(name: Name, v: bigint, info?: ScalarInfo): bigint;
  /** IEEE single, big-endian on the QEMU wire. */
  float32(name: Name, v: number, info?: ScalarInfo): number;
  /** IEEE double; on the QEMU wire CPU_Double_U is be64 of the bits. */
  float64(name: Name, v: number, info?: ScalarInfo): number;
  /**
   * An octet-stream of exactly `len` bytes (buffers, unused bytes, opaque legacy state, unknown
   * types). Output: writes `bytes` (which must be `len` long). Input: returns a view of the bytes
   * read (valid until the reader's buffer is reused: copy it to keep it).
   */
  buffer(name: Name, bytes: Uint8Array | undefined, len: number, info?: ScalarInfo): Uint8Array;
  /** A string (QEMU counted string on the wire: u8 length + bytes). */
  str(name: Name, v: string, info?: ScalarInfo): string;
}
