// The VMState description language: device state described once as named, typed fields, in the
// shape of QEMU 7.2's VMStateDescription (wire-format §3), walked by one engine (engine.ts) with any
// visitor. The fields, and how state is held: docs/vmstate.md.
import type { IntType } from "../visitor/visitor.js";

// biome-ignore lint/suspicious/noExplicitAny: a state holds whatever its description's fields hold; descriptions check it
export type State = Record<string, any>;

/** An element count: fixed, or read from another field of the same struct (VARRAY), times `multiply`. */
export type Count = number | { readonly field: string; readonly multiply?: number } | ((s: State) => number);

export interface VMStateDescription {
  readonly name: string;
  /** version_id: what a save writes; the newest a load accepts. */
  readonly version: number;
  /** minimum_version_id: the oldest a load accepts (default 0). */
  readonly minimumVersion?: number;
  readonly fields: readonly Field[];
  /** Subsections, sent in this order when `needed` says so (no `needed` = always sent). */
  readonly subsections?: readonly VMStateDescription[];
  /** For subsections and top-level sections: is this state sent at all? */
  needed?(s: State): boolean;
  preSave?(s: State): void;
  preLoad?(s: State): void;
  /** Validation after a load; return a string to fail the load with that reason. */
  postLoad?(s: State, version: number): string | void;
}

export type ScalarFieldType = IntType | "bool" | "float32" | "float64";

interface FieldBase {
  /** The field's name: in the vmdesc JSON, the trace and BER. */
  readonly name: string;
  /** Where the value lives in the state object (default: `name`); for duplicated names such as fw_cfg's two `cur_offset`. */
  readonly key?: string;
  /** Present only when the walked version >= this (QEMU's `_V` macros). */
  readonly version?: number;
  /** Present only when this returns true (QEMU's `_TEST` macros): decided on the state, so the load evaluates it on what was loaded so far. */
  readonly test?: (s: State, version: number) => boolean;
}

/** A single scalar (VMSTATE_UINT8, _INT64, _BOOL, CPU_Double_U as float64 ...). */
export interface ScalarField extends FieldBase {
  readonly kind: "scalar";
  readonly type: ScalarFieldType;
  /** QEMU VMStateInfo name when it differs from the type ("timer", "CPU_Double_U", "int32 equal"...). */
  readonly info?: string;
  /** Load-time check against the destination's current value: "equal" (_EQUAL types) or "le" ("int32 le": 0 <= v <= local). */
  readonly check?: "equal" | "le";
}

/** A fixed or variable array of scalars (VMSTATE_*_ARRAY, _VARRAY_*, _SUB_ARRAY with `start`). */
export interface ArrayField extends FieldBase {
  readonly kind: "array";
  readonly type: ScalarFieldType;
  readonly count: Count;
  /** First index of a sub-array inside the state array. */
  readonly start?: number;
  readonly info?: string;
}

/** Raw bytes (VMSTATE_BUFFER, _PARTIAL_BUFFER, _VBUFFER*, _BUFFER_START_MIDDLE, custom opaque types). */
export interface BufferField extends FieldBase {
  readonly kind: "buffer";
  /** Byte count. */
  readonly size: Count;
  /** Offset inside the state buffer where the sent bytes start (BUFFER_START_MIDDLE / partial). */
  readonly start?: number;
  /** VMStateInfo name (default "buffer"); e.g. "pci config" for PCI config space. */
  readonly info?: string;
}

/** VMSTATE_UNUSED: `size` filler bytes, zero on save, skipped on load. */
export interface UnusedField extends FieldBase {
  readonly kind: "unused";
  readonly size: number;
}

/** A nested struct (VMS_STRUCT, walked at the nested description's own version) or a VSTRUCT (explicit version). */
export interface StructField extends FieldBase {
  readonly kind: "struct";
  readonly vmsd: VMStateDescription;
  /** VMSTATE_VSTRUCT: walk the nested description at this version (JSON type "vstruct"). */
  readonly structVersion?: number;
}

/** An array of structs (VMSTATE_STRUCT_ARRAY, _STRUCT_VARRAY_*). */
export interface StructArrayField extends FieldBase {
  readonly kind: "structArray";
  readonly vmsd: VMStateDescription;
  readonly count: Count;
  /** The C element size, shown by the trace as `name(count)(size)` (default: the struct's fixed wire size, if it has one). */
  readonly elemSize?: number;
}

/**
 * An array of pointers (VMSTATE_ARRAY_OF_POINTER, _TIMER_PTR_ARRAY, _ARRAY_OF_POINTER_TO_STRUCT):
 * a `null` element travels as QEMU's one-byte 0x30 marker.
 */
export interface PointerArrayField extends FieldBase {
  readonly kind: "pointerArray";
  readonly count: Count;
  /** Element: a scalar type, or a struct description. */
  readonly elem: ScalarFieldType | VMStateDescription;
  readonly info?: string;
  readonly elemSize?: number;
}

/** VMSTATE_BITMAP: `nbits` bits as be64 words (state: bigint[] of ceil(nbits/64) words). */
export interface BitmapField extends FieldBase {
  readonly kind: "bitmap";
  readonly nbits: Count;
}

/**
 * VMSTATE_WITH_TMP: the nested description is walked over a temporary object that `toTmp` builds
 * from the parent before a save, and `fromTmp` folds back after a load (JSON type "tmp").
 */
export interface TmpField extends FieldBase {
  readonly kind: "tmp";
  readonly vmsd: VMStateDescription;
  toTmp(parent: State): State;
  fromTmp(parent: State, tmp: State): void;
}

/** QTAILQ / QLIST of structs: each element preceded by 0x01, the list ended by 0x00 (state: State[]). */
export interface ListField extends FieldBase {
  readonly kind: "list";
  readonly vmsd: VMStateDescription;
  /** "qtailq" or "qlist" (the JSON type). */
  readonly info: "qtailq" | "qlist";
}

/** GTree: be32 node count, then per node 0x01, key (be64 when direct, else a struct), value struct; 0x00 (state: [key, value][]). */
export interface GTreeField extends FieldBase {
  readonly kind: "gtree";
  readonly keyVmsd?: VMStateDescription;
  readonly valueVmsd: VMStateDescription;
}

/** VMSTATE_VALIDATE: a load-time check, no bytes. Returns a reason to fail, or nothing. */
export interface ValidateField extends FieldBase {
  readonly kind: "validate";
  check(s: State, version: number): string | void;
}

/**
 * A QEMU type with its own put/get and a known layout (e.g. "pci irq state" = 4 x int32): `visit`
 * walks it with any visitor, so it prints by meaning. `size` is its wire size.
 */
export interface CustomField extends FieldBase {
  readonly kind: "custom";
  readonly info: string;
  readonly size: number;
  visit(v: import("../visitor/visitor.js").Visitor, name: string, value: unknown): unknown;
}

export type Field =
  | ScalarField
  | ArrayField
  | BufferField
  | UnusedField
  | StructField
  | StructArrayField
  | PointerArrayField
  | BitmapField
  | TmpField
  | ListField
  | GTreeField
  | ValidateField
  | CustomField;
