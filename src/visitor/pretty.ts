// PrettyVisitor: the readable trace of the QEMU "Migration/Visitor" plan, kept exactly, one line per
// value (`PIIX3.PCIDevice.config(256)(1).[255] = (uint8) 0x0`). An output visitor: every visit
// returns its argument. The format: docs/visitors.md, "The pretty trace".
import { BaseVisitor } from "./base.js";
import { INT_WIDTH, type IntType, type Name, type ScalarInfo } from "./visitor.js";

export interface PrettyOptions {
  /** Called with each line as it is produced; when given, lines are not collected in `lines`. */
  readonly onLine?: (line: string) => void;
  /** Type shown for scalars: the wire type (default) or the QEMU VMStateInfo name when there is one. */
  readonly typeNames?: "wire" | "info";
}

const scratch = new DataView(new ArrayBuffer(8));

/** `0x` + lowercase hex of an integer of `type`, negative values as two's complement of the type's width. */
export function hexOfInt(type: IntType, v: number | bigint): string {
  const bits = INT_WIDTH[type] * 8;
  if (typeof v === "bigint" || bits === 64) return "0x" + BigInt.asUintN(bits, BigInt(v)).toString(16);
  const n = bits === 32 ? v >>> 0 : v & ((1 << bits) - 1);
  return "0x" + n.toString(16);
}

/** `0x` + lowercase hex of the IEEE bits of `v` as a single (`float32`) or a double (`float64`). */
export function hexOfFloat(type: "float32" | "float64", v: number): string {
  if (type === "float32") {
    scratch.setFloat32(0, v);
    return "0x" + scratch.getUint32(0).toString(16);
  }
  scratch.setFloat64(0, v);
  return "0x" + scratch.getBigUint64(0).toString(16);
}

export class PrettyVisitor extends BaseVisitor {
  readonly direction = "output" as const;
  /** The lines produced so far (empty when an `onLine` callback was given). */
  readonly lines: string[] = [];
  private readonly onLine: ((line: string) => void) | undefined;
  private readonly infoNames: boolean;

  constructor(options: PrettyOptions = {}) {
    super();
    this.onLine = options.onLine;
    this.infoNames = options.typeNames === "info";
  }

  private emit(name: Name, type: string, text: string): void {
    if (this.err) return;
    const line = `${this.path(name)} = (${type}) ${text}`;
    if (this.onLine) this.onLine(line);
    else this.lines.push(line);
  }

  private typeOf(type: string, info: ScalarInfo | undefined): string {
    return this.infoNames && info?.info ? info.info : type;
  }

  private int<T extends number | bigint>(type: IntType, name: Name, v: T, info: ScalarInfo | undefined): T {
    this.emit(name, this.typeOf(type, info), hexOfInt(type, v));
    return v;
  }

  nextSubsection(): undefined {
    return undefined;
  }

  listNext(_name: Name, more: boolean): boolean {
    return more;
  }

  nullPointer(name: Name, isNull: boolean): boolean {
    if (isNull) this.emit(name, "nullptr", "0x30");
    return isNull;
  }

  bool(name: Name, v: boolean, info?: ScalarInfo): boolean {
    this.emit(name, this.typeOf("bool", info), v ? "0x1" : "0x0");
    return v;
  }
  int8(name: Name, v: number, info?: ScalarInfo): number {
    return this.int("int8", name, v, info);
  }
  int16(name: Name, v: number, info?: ScalarInfo): number {
    return this.int("int16", name, v, info);
  }
  int32(name: Name, v: number, info?: ScalarInfo): number {
    return this.int("int32", name, v, info);
  }
  int64(name: Name, v: bigint, info?: ScalarInfo): bigint {
    return this.int("int64", name, v, info);
  }
  uint8(name: Name, v: number, info?: ScalarInfo): number {
    return this.int("uint8", name, v, info);
  }
  uint16(name: Name, v: number, info?: ScalarInfo): number {
    return this.int("uint16", name, v, info);
  }
  uint32(name: Name, v: number, info?: ScalarInfo): number {
    return this.int("uint32", name, v, info);
  }
  uint64(name: Name, v: bigint, info?: ScalarInfo): bigint {
    return this.int("uint64", name, v, info);
  }
  float32(name: Name, v: number, info?: ScalarInfo): number {
    this.emit(name, this.typeOf("float32", info), hexOfFloat("float32", v));
    return v;
  }
  float64(name: Name, v: number, info?: ScalarInfo): number {
    this.emit(name, this.typeOf("float64", info), hexOfFloat("float64", v));
    return v;
  }
  buffer(name: Name, bytes: Uint8Array | undefined, len: number): Uint8Array {
    const b = bytes ?? new Uint8Array(len);
    this.startArray(name, len, 1, "uint8");
    for (let i = 0; i < len && !this.err; i++) this.emit(i, "uint8", "0x" + (b[i] ?? 0).toString(16));
    this.endArray();
    return b;
  }
  str(name: Name, v: string): string {
    this.emit(name, "str", JSON.stringify(v));
    return v;
  }
}
