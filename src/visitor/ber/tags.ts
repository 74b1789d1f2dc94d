// What both BER visitors agree on: the identifiers of device state (docs/ber.md, "Device state"),
// the scalar types (tag, name, range) and the kinds of open container.
import { CLASS_APPLICATION, CLASS_CONTEXT, CONSTRUCTED } from "../../ber/writer.js";

/** [APPLICATION 18] VMState, constructed. */
export const TAG_VMSTATE = CLASS_APPLICATION | CONSTRUCTED | 18;
/** [APPLICATION 5] Subsection, constructed. */
export const TAG_SUBSECTION = CLASS_APPLICATION | CONSTRUCTED | 5;

/** A scalar Value type: its context tag and its name (for messages). */
export interface ValueType {
  readonly tag: number;
  readonly name: string;
}

/** An integer type: its range, and `wrap`, which cuts a value to the type's width. */
export interface IntegerType<T extends number | bigint> extends ValueType {
  readonly min: T;
  readonly max: T;
  readonly wrap: (v: T) => T;
}

export const INT8: IntegerType<number> = { tag: CLASS_CONTEXT | 0, name: "int8", min: -0x80, max: 0x7f, wrap: (v) => (v << 24) >> 24 };
export const INT16: IntegerType<number> = { tag: CLASS_CONTEXT | 1, name: "int16", min: -0x8000, max: 0x7fff, wrap: (v) => (v << 16) >> 16 };
export const INT32: IntegerType<number> = { tag: CLASS_CONTEXT | 2, name: "int32", min: -0x80000000, max: 0x7fffffff, wrap: (v) => v | 0 };
export const INT64: IntegerType<bigint> = {
  tag: CLASS_CONTEXT | 3,
  name: "int64",
  min: -0x8000000000000000n,
  max: 0x7fffffffffffffffn,
  wrap: (v) => BigInt.asIntN(64, v),
};
export const UINT8: IntegerType<number> = { tag: CLASS_CONTEXT | 4, name: "uint8", min: 0, max: 0xff, wrap: (v) => v & 0xff };
export const UINT16: IntegerType<number> = { tag: CLASS_CONTEXT | 5, name: "uint16", min: 0, max: 0xffff, wrap: (v) => v & 0xffff };
export const UINT32: IntegerType<number> = { tag: CLASS_CONTEXT | 6, name: "uint32", min: 0, max: 0xffffffff, wrap: (v) => v >>> 0 };
export const UINT64: IntegerType<bigint> = { tag: CLASS_CONTEXT | 7, name: "uint64", min: 0n, max: 0xffffffffffffffffn, wrap: (v) => BigInt.asUintN(64, v) };
export const BOOL: ValueType = { tag: CLASS_CONTEXT | 8, name: "bool" };
export const FLOAT32: ValueType = { tag: CLASS_CONTEXT | 9, name: "float32" };
export const FLOAT64: ValueType = { tag: CLASS_CONTEXT | 10, name: "float64" };
export const OCTETS: ValueType = { tag: CLASS_CONTEXT | 11, name: "buffer" };
export const STRING: ValueType = { tag: CLASS_CONTEXT | 12, name: "string" };

// The other Values.
export const T_NULLPTR = CLASS_CONTEXT | 13;
export const T_ARRAY = CLASS_CONTEXT | CONSTRUCTED | 14;
export const T_LIST = CLASS_CONTEXT | CONSTRUCTED | 15;
/** [16] NULL: a field the sender's version or test gate left out. */
export const T_ABSENT = CLASS_CONTEXT | 16;

/** The Value types by context tag number, for messages. */
export const VALUE_TYPES = [
  "int8",
  "int16",
  "int32",
  "int64",
  "uint8",
  "uint16",
  "uint32",
  "uint64",
  "bool",
  "float32",
  "float64",
  "buffer",
  "string",
  "NULL pointer",
  "array",
  "list",
  "no value (the sender's version or test gate left the field out)",
];

// Kinds of open container (a frame of either visitor): what the next value belongs to.
/** A struct's or subsection's fields. */
export const FIELDS = 0;
/** A struct's subsections. */
export const SUBS = 1;
/** A struct with nothing left to read. */
export const DONE = 2;
/** An array's or list's elements (also the root: a value without a Field wrapper). */
export const ELEMS = 3;
