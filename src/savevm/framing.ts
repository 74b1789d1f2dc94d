// The small items of the framing (wire-format §2.2-§2.5): the file header, section headers, footers. Browser-safe.
import { type SectionRef, VmstreamError } from "../io/errors.js";
import type { ByteReader } from "../io/reader.js";
import { QEMU_VM_FILE_MAGIC, QEMU_VM_FILE_VERSION, QEMU_VM_FILE_VERSION_COMPAT, SEC } from "./constants.js";
import type { AtHand } from "./input-window.js";
import type { SectionType } from "./types.js";

const MAGIC = [0x51, 0x45, 0x56, 0x4d]; // "QEVM"

/** The file header at the start of `input`: its version, or undefined until 8 bytes are at hand. A wrong magic is known early. */
export function readFileHeader(input: AtHand): number | undefined {
  const { n } = input;
  for (let i = 0; i < Math.min(n, 4); i++) {
    if (input.byteAt(i) !== MAGIC[i]) {
      const gz = input.byteAt(0) === 0x1f && (n < 2 || input.byteAt(1) === 0x8b);
      throw new VmstreamError("BAD_MAGIC", "not a QEMU migration stream", {
        offset: 0,
        detail: gz ? "the input is gzip-compressed: gunzip it first (the Node adapters do)" : 'the first 4 bytes are not "QEVM"',
      });
    }
  }
  if (n < 8) return undefined;
  const r = input.reader(0, 8);
  if (r.be32() !== QEMU_VM_FILE_MAGIC) throw new VmstreamError("BAD_MAGIC", "not a QEMU migration stream", { offset: 0 });
  const version = r.be32();
  if (version === QEMU_VM_FILE_VERSION_COMPAT) throw new VmstreamError("BAD_VERSION", "obsolete stream version 2 (QEMU refuses it)", { offset: 4 });
  if (version !== QEMU_VM_FILE_VERSION) throw new VmstreamError("BAD_VERSION", "unsupported stream version", { offset: 4, detail: `${version}, expected 3` });
  return version;
}

export const SECTION_TYPES: Readonly<Record<number, SectionType>> = { [SEC.START]: "start", [SEC.PART]: "part", [SEC.END]: "end", [SEC.FULL]: "full" };

/** The full header of a START or FULL section (type byte, id, idstr, instance, version); throws EOF when short. */
export function readFullHeader(r: ByteReader): { type: SectionType; id: number; idstr: string; instanceId: number; version: number } {
  const type = SECTION_TYPES[r.u8()]!;
  const id = r.be32();
  const idstr = r.cstr();
  const instanceId = r.be32();
  const version = r.be32();
  return { type, id, idstr, instanceId, version };
}

/** What is wrong with the footer at `at` (5 bytes at hand) of section `h`, if anything. */
export function footerError(input: Pick<AtHand, "byteAt" | "reader" | "offset">, at: number, h: SectionRef): VmstreamError | undefined {
  const ref = { idstr: h.idstr, id: h.id, instanceId: h.instanceId };
  const b = input.byteAt(at);
  if (b !== SEC.FOOTER) {
    return new VmstreamError("BAD_SECTION", "missing section footer", {
      offset: input.offset + at,
      section: ref,
      detail: `found 0x${b.toString(16).padStart(2, "0")} instead of 0x7e`,
    });
  }
  const id = input.reader(at + 1, at + 5).be32();
  if (id !== h.id)
    return new VmstreamError("BAD_SECTION", "mismatched section id in footer", { offset: input.offset + at, section: ref, detail: `footer says ${id}` });
  return undefined;
}
