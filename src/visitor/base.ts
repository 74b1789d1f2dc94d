// What every visitor shares: the field path (for traces and error messages) and the sticky first error.
import type { VmstreamError } from "../io/errors.js";
import type { Name, ScalarInfo, Visitor } from "./visitor.js";

/** `[i]` for an element, the name otherwise. */
export function nameText(name: Name): string {
  return typeof name === "number" ? `[${name}]` : name;
}

export abstract class BaseVisitor implements Visitor {
  abstract readonly direction: "input" | "output";
  protected err: VmstreamError | undefined = undefined;
  /** Path components: struct -> its VMState name (or `[i]` as an array element), array -> `name(count)(size)`, subsection -> its name. */
  protected readonly stack: string[] = [];

  get error(): VmstreamError | undefined {
    return this.err;
  }

  fail(error: VmstreamError): void {
    if (this.err) return;
    this.err = error.path !== undefined ? error : error.withContext({ path: this.path() });
  }

  /** The path of the current position, or of field `name` inside it. */
  path(name?: Name): string {
    const parts = name === undefined ? this.stack : [...this.stack, nameText(name)];
    return parts.join(".");
  }

  startStruct(name: Name, vmsdName: string, _version: number): void {
    this.stack.push(typeof name === "number" ? `[${name}]` : vmsdName);
  }

  endStruct(): void {
    this.stack.pop();
  }

  startArray(name: Name, count: number, elemSize: number, _elemType: string): number {
    this.stack.push(`${nameText(name)}(${count < 0 ? "*" : count})(${elemSize})`);
    return count;
  }

  endArray(): void {
    this.stack.pop();
  }

  startSubsection(name: string, _version: number): void {
    this.stack.push(name);
  }

  endSubsection(): void {
    this.stack.pop();
  }

  optional(_name: Name, present: boolean): boolean {
    return present;
  }

  abstract nextSubsection(parentVmsdName: string): { name: string; version: number } | undefined;
  abstract listNext(name: Name, more: boolean): boolean;
  abstract nullPointer(name: Name, isNull: boolean): boolean;
  abstract bool(name: Name, v: boolean, info?: ScalarInfo): boolean;
  abstract int8(name: Name, v: number, info?: ScalarInfo): number;
  abstract int16(name: Name, v: number, info?: ScalarInfo): number;
  abstract int32(name: Name, v: number, info?: ScalarInfo): number;
  abstract int64(name: Name, v: bigint, info?: ScalarInfo): bigint;
  abstract uint8(name: Name, v: number, info?: ScalarInfo): number;
  abstract uint16(name: Name, v: number, info?: ScalarInfo): number;
  abstract uint32(name: Name, v: number, info?: ScalarInfo): number;
  abstract uint64(name: Name, v: bigint, info?: ScalarInfo): bigint;
  abstract float32(name: Name, v: number, info?: ScalarInfo): number;
  abstract float64(name: Name, v: number, info?: ScalarInfo): number;
  abstract buffer(name: Name, bytes: Uint8Array | undefined, len: number, info?: ScalarInfo): Uint8Array;
  abstract str(name: Name, v: string, info?: ScalarInfo): string;
}
