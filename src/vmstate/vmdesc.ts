// The shape of QEMU's vmdesc JSON (wire-format §4): the one set of types for the trailer's parser
// (savevm/vmdesc.ts), the descriptions built from it (from-vmdesc.ts) and the tools that read it.
// Parsed JSON is untrusted: every object may carry extra keys, and users check values before use.

/** A field object: one element written (or `array_len` of them). Extra keys (tmp/vstruct/qtailq bodies) are allowed. */
export interface VmdescField {
  readonly name: string;
  readonly type: string;
  readonly size: number;
  readonly array_len?: number;
  readonly index?: number;
  /** Only for "struct": the nested body, or `{}` for a NULL entry of an array of pointers. */
  readonly struct?: VmdescBody | Record<string, never>;
  readonly [key: string]: unknown;
}

/** A VMState body: a struct's, a subsection's, or the top level of a VMState device. */
export interface VmdescBody {
  readonly vmsd_name: string;
  readonly version: number;
  readonly fields: readonly VmdescField[];
  readonly subsections?: readonly VmdescBody[];
  readonly [key: string]: unknown;
}

/** A VMState device section. */
export interface VmdescVmstateDevice extends VmdescBody {
  readonly name: string;
  readonly instance_id: number;
}

/** An old-style (save_state) device: one opaque buffer of `size` bytes. */
export interface VmdescLegacyDevice {
  readonly name: string;
  readonly instance_id: number;
  readonly size: number;
  readonly fields: readonly [{ readonly name: "data"; readonly size: number; readonly type: "buffer"; readonly [key: string]: unknown }];
  readonly [key: string]: unknown;
}

/** One entry of `devices`: a device section, in stream order. */
export type VmdescDevice = VmdescVmstateDevice | VmdescLegacyDevice;

/** The whole vmdesc document. */
export interface Vmdesc {
  readonly page_size: number;
  readonly devices: readonly VmdescDevice[];
  readonly [key: string]: unknown;
}
