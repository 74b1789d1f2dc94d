// Test helpers for the BER format: save/load a state as BER or QEMU wire bytes through the engine, and
// run the outside judges (libtasn1's asn1Parser/asn1Decoding, asn1c's unber) on what we write.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BerReader } from "../../src/ber/reader.js";
import type { VmstreamError } from "../../src/io/errors.js";
import { ByteReader } from "../../src/io/reader.js";
import { ByteWriter } from "../../src/io/writer.js";
import { BerInputVisitor, type BerLengths, BerOutputVisitor } from "../../src/visitor/ber/index.js";
import { WireInputVisitor, WireOutputVisitor } from "../../src/visitor/wire.js";
import { x86DeviceForIdstr } from "../../src/vmstate/devices/index.js";
import { loadState, saveState } from "../../src/vmstate/engine.js";
import type { State, VMStateDescription } from "../../src/vmstate/types.js";
import { fromHex } from "./bytes.js";
import { readStream } from "./stream-sections.js";

/** BER of `s` (throws the visitor's error). */
export function saveBer(vmsd: VMStateDescription, s: State, lengths: BerLengths = "auto"): Uint8Array {
  const v = new BerOutputVisitor({ lengths });
  saveState(v, vmsd, s);
  if (v.error) throw v.error;
  return v.w.finish().slice();
}

/** Load BER into `s` at the version the stream holds; returns the state and the error (if any). */
export function loadBer(vmsd: VMStateDescription, bytes: Uint8Array, s: State = {}): { s: State; error: VmstreamError | undefined } {
  const v = new BerInputVisitor(bytes);
  const head = v.peekStruct();
  loadState(v, vmsd, s, head?.version ?? vmsd.version);
  if (!v.error && !v.atEnd()) throw new Error(`${bytes.length - v.r.pos} bytes left after the struct`);
  return { s, error: v.error };
}

/** QEMU wire bytes of `s` (throws the visitor's error). */
export function saveWire(vmsd: VMStateDescription, s: State): Uint8Array {
  const w = new ByteWriter();
  const v = new WireOutputVisitor(w);
  saveState(v, vmsd, s);
  if (v.error) throw v.error;
  return w.concat();
}

/** Load QEMU wire bytes (at the description's version) into `s`. */
export function loadWire(
  vmsd: VMStateDescription,
  bytes: Uint8Array,
  s: State = {},
  version = vmsd.version,
): { s: State; error: VmstreamError | undefined; left: number } {
  const r = new ByteReader(bytes, { sticky: true });
  const v = new WireInputVisitor(r);
  loadState(v, vmsd, s, version);
  return { s, error: v.error, left: r.end - r.pos };
}

// ---------------------------------------------------------------------------------------------
// Outside judges

export const SCHEMA = fileURLToPath(new URL("../../docs/vmstate.asn1", import.meta.url));

export interface ToolRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[]): ToolRun {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let tmp: string | undefined;
let seq = 0;

/** Write bytes to a fresh temporary file; returns its path. */
export function tempFile(bytes: Uint8Array, ext = ".ber"): string {
  tmp ??= mkdtempSync(join(tmpdir(), "vmstream-ber-"));
  const path = join(tmp, `f${seq++}${ext}`);
  writeFileSync(path, bytes);
  return path;
}

/** Remove the temporary files (call from afterAll). */
export function removeTempFiles(): void {
  if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
}

/** `asn1Decoding docs/vmstate.asn1 FILE VMStream.<type>`. */
export function asn1Decoding(bytes: Uint8Array, type: string): ToolRun {
  return run("asn1Decoding", [SCHEMA, tempFile(bytes), `VMStream.${type}`]);
}

/**
 * Decode `bytes` as `type` with asn1Decoding, then every open-type (Nested, ANY) value it prints as a
 * NestedValue, recursively: so every level of a nested state is checked against the schema by libtasn1.
 * Returns every run (the first is the top level).
 */
export function asn1DecodeDeep(bytes: Uint8Array, type: string, limit = 500): ToolRun[] {
  const runs: ToolRun[] = [];
  const queue: [Uint8Array, string][] = [[bytes, type]];
  while (queue.length > 0 && runs.length < limit) {
    const [b, t] = queue.shift()!;
    const r = asn1Decoding(b, t);
    runs.push(r);
    if (r.status !== 0) break;
    for (const m of r.stdout.matchAll(/type:ANY {2}value:([0-9a-fA-F]+)/g)) queue.push([fromHex(m[1]!), "NestedValue"]);
  }
  return runs;
}

/** `unber -p FILE`. */
export function unber(bytes: Uint8Array): ToolRun {
  return run("unber", ["-p", tempFile(bytes)]);
}

/** The fields of the root VMState in BER bytes, in stream order; `absent`: the gated-out marker ([16] NULL). */
export function berRootFields(bytes: Uint8Array): { name: string; absent: boolean }[] {
  const r = new BerReader(bytes);
  r.header();
  r.enter();
  r.header();
  r.skip(); // name
  r.header();
  r.skip(); // version
  r.header();
  const end = r.enter();
  const fields: { name: string; absent: boolean }[] = [];
  while (!r.atEnd(end)) {
    r.header();
    const fe = r.enter();
    r.header();
    const name = r.utf8();
    r.header();
    fields.push({ name, absent: r.id === 0x90 });
    r.skip();
    while (!r.atEnd(fe)) r.skipElement();
    r.leave(fe);
  }
  return fields;
}

/** The names of the root fields that hold a value (gated-out markers left out). */
export function berRootFieldNames(bytes: Uint8Array): string[] {
  return berRootFields(bytes)
    .filter((f) => !f.absent)
    .map((f) => f.name);
}

// ---------------------------------------------------------------------------------------------
// Real QEMU 7.2 device sections (the x86-pc-64m fixture) with the x86 device descriptions, when
// both are in the tree. Loaded dynamically: these tests follow those modules, not the other way.

export interface RealSection {
  idstr: string;
  instanceId: number;
  version: number;
  payload: Uint8Array;
  vmsd: VMStateDescription;
}

/** The fixture's device sections with their descriptions, or a reason why they are not available. */
export async function realX86Sections(): Promise<RealSection[]> {
  const fixture = new URL("../fixtures/x86-pc-64m.mig.gz", import.meta.url);
  return readStream(fixture).sections.flatMap((s) => {
    const vmsd = x86DeviceForIdstr(s.idstr);
    return vmsd ? [{ idstr: s.idstr, instanceId: s.instanceId, version: s.version, payload: s.payload, vmsd }] : [];
  });
}
