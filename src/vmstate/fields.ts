// Short constructors for VMState fields, named after QEMU's VMSTATE_* macros they stand for.
import type {
  ArrayField,
  BitmapField,
  BufferField,
  Count,
  CustomField,
  Field,
  GTreeField,
  ListField,
  PointerArrayField,
  ScalarField,
  ScalarFieldType,
  StructArrayField,
  StructField,
  TmpField,
  UnusedField,
  ValidateField,
  VMStateDescription,
} from "./types.js";

type Opts = Partial<Pick<Field, "key" | "version" | "test">>;

const scalar =
  (type: ScalarFieldType, info?: string, check?: "equal" | "le") =>
  (name: string, o: Opts = {}): ScalarField => ({
    kind: "scalar",
    name,
    type,
    ...(info ? { info } : {}),
    ...(check ? { check } : {}),
    ...o,
  });

export const F = {
  bool: scalar("bool"),
  int8: scalar("int8"),
  int16: scalar("int16"),
  int32: scalar("int32"),
  int64: scalar("int64"),
  uint8: scalar("uint8"),
  uint16: scalar("uint16"),
  uint32: scalar("uint32"),
  uint64: scalar("uint64"),
  /** VMSTATE_UINT8_EQUAL and friends: the loaded value must equal the destination's. */
  uint8Equal: scalar("uint8", "uint8 equal", "equal"),
  uint16Equal: scalar("uint16", "uint16 equal", "equal"),
  int32Equal: scalar("int32", "int32 equal", "equal"),
  uint32Equal: scalar("uint32", "uint32 equal", "equal"),
  /** VMSTATE_UINT64_EQUAL: QEMU 7.2 names its info "int64 equal". */
  uint64Equal: scalar("uint64", "int64 equal", "equal"),
  /** VMSTATE_INT32_POSITIVE_LE: "int32 le" is big-endian; "le" means 0 <= loaded <= local. */
  int32Le: scalar("int32", "int32 le", "le"),
  /** A QEMUTimer: be64 expiry in ns, -1 = not armed. */
  timer: scalar("int64", "timer"),
  /** CPU_Double_U: be64 of the IEEE double. */
  cpuDouble: scalar("float64", "CPU_Double_U"),
  float64: scalar("float64"),
  float32: scalar("float32"),

  array: (name: string, type: ScalarFieldType, count: Count, o: Opts & { start?: number; info?: string } = {}): ArrayField => ({
    kind: "array",
    name,
    type,
    count,
    ...o,
  }),
  buffer: (name: string, size: Count, o: Opts & { start?: number; info?: string } = {}): BufferField => ({ kind: "buffer", name, size, ...o }),
  unused: (size: number, o: Opts = {}): UnusedField => ({ kind: "unused", name: "unused", size, ...o }),
  struct: (name: string, vmsd: VMStateDescription, o: Opts & { structVersion?: number } = {}): StructField => ({ kind: "struct", name, vmsd, ...o }),
  structArray: (name: string, vmsd: VMStateDescription, count: Count, o: Opts & { elemSize?: number } = {}): StructArrayField => ({
    kind: "structArray",
    name,
    vmsd,
    count,
    ...o,
  }),
  pointerArray: (
    name: string,
    elem: ScalarFieldType | VMStateDescription,
    count: Count,
    o: Opts & { info?: string; elemSize?: number } = {},
  ): PointerArrayField => ({
    kind: "pointerArray",
    name,
    elem,
    count,
    ...o,
  }),
  bitmap: (name: string, nbits: Count, o: Opts = {}): BitmapField => ({ kind: "bitmap", name, nbits, ...o }),
  tmp: (vmsd: VMStateDescription, toTmp: TmpField["toTmp"], fromTmp: TmpField["fromTmp"], o: Opts = {}): TmpField => ({
    kind: "tmp",
    name: "tmp",
    vmsd,
    toTmp,
    fromTmp,
    ...o,
  }),
  qtailq: (name: string, vmsd: VMStateDescription, o: Opts = {}): ListField => ({ kind: "list", name, vmsd, info: "qtailq", ...o }),
  qlist: (name: string, vmsd: VMStateDescription, o: Opts = {}): ListField => ({ kind: "list", name, vmsd, info: "qlist", ...o }),
  gtree: (name: string, valueVmsd: VMStateDescription, keyVmsd?: VMStateDescription, o: Opts = {}): GTreeField => ({
    kind: "gtree",
    name,
    valueVmsd,
    ...(keyVmsd ? { keyVmsd } : {}),
    ...o,
  }),
  validate: (name: string, check: ValidateField["check"], o: Opts = {}): ValidateField => ({ kind: "validate", name, check, ...o }),
  custom: (name: string, info: string, size: number, visit: CustomField["visit"], o: Opts = {}): CustomField => ({
    kind: "custom",
    name,
    info,
    size,
    visit,
    ...o,
  }),
};
