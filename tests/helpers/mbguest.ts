// Tiny bare-metal guests for `qemu-system-x86_64 -M pc -kernel FILE` (tests and tools/make-fixtures.ts), written as
// bytes: Multiboot v1 images with the a.out kludge (load address in the header, so no ELF and no toolchain),
// entered by QEMU's multiboot loader in 32-bit protected mode, paging off.
// - `mbguestImage()` loops forever incrementing the first dword of every page of [0x400000, 0x800000) (1024 pages,
//   4 MiB): a guest that keeps re-dirtying pages with small deltas, as XBZRLE wants.
// - `sweepGuestImage()` (the x86-pc-xbzrle fixture's guest) fills 16 MiB at 16 MiB with non-zero per-page words,
//   prints SWEEP_GUEST_READY on COM1, then forever rewrites one 8-byte word per page and busy-waits between sweeps.
import { writeFileSync } from "node:fs";

export const MBGUEST_DIRTY = { start: 0x400000, end: 0x800000 } as const;

const LOAD = 0x100000;
const ENTRY = LOAD + 32;

/** The 32-byte Multiboot header (a.out kludge, the whole file loaded at LOAD), then `code` entered at ENTRY. */
function multibootImage(code: readonly number[]): Uint8Array {
  const MAGIC = 0x1badb002;
  const FLAGS = 0x00010000; // bit 16: a.out kludge (addresses below are valid)
  const img = new Uint8Array(Math.max(4096, 32 + code.length));
  const dv = new DataView(img.buffer);
  const hdr = [MAGIC, FLAGS, -(MAGIC + FLAGS) >>> 0, LOAD /* header_addr */, LOAD /* load_addr */, 0 /* load_end: whole file */, 0 /* bss_end */, ENTRY];
  hdr.forEach((v, i) => dv.setUint32(4 * i, v >>> 0, true));
  img.set(code, 32);
  return img;
}

export function mbguestImage(): Uint8Array {
  // prettier-ignore
  return multibootImage([
    0xbb,
    0x00,
    0x00,
    0x40,
    0x00, //  0: mov ebx, 0x400000
    0x89,
    0xd8, //                     5: outer: mov eax, ebx
    0xff,
    0x00, //                     7: inner: inc dword [eax]
    0x05,
    0x00,
    0x10,
    0x00,
    0x00, //   9: add eax, 0x1000
    0x3d,
    0x00,
    0x00,
    0x80,
    0x00, //  14: cmp eax, 0x800000
    0x72,
    0xf2, //                    19: jb inner
    0xeb,
    0xee, //                    21: jmp outer
  ]);
}

export function writeMbguest(file: string): void {
  writeFileSync(file, mbguestImage());
}

/** The pages `sweepGuestImage()` fills and keeps dirtying (16 MiB at 16 MiB). */
export const SWEEP_GUEST_PAGES = { start: 0x1000000, count: 4096 } as const;
/** Printed on COM1 once the fill is done and the sweeps begin. */
export const SWEEP_GUEST_READY = "SWEEP-READY";

type Item = number | { label: string } | { rel8: string } | { abs32: string };

/** Lay out code with labels: `{ rel8: L }` is a jump displacement to L, `{ abs32: L }` L's load address. */
function assemble(items: readonly Item[]): number[] {
  const at = new Map<string, number>();
  let pc = 0;
  for (const it of items) {
    if (typeof it === "number") pc += 1;
    else if ("label" in it) at.set(it.label, pc);
    else pc += "rel8" in it ? 1 : 4;
  }
  const out: number[] = [];
  for (const it of items) {
    if (typeof it === "number") out.push(it);
    else if ("rel8" in it) {
      const d = at.get(it.rel8)! - (out.length + 1);
      if (d < -128 || d > 127) throw new Error(`jump to ${it.rel8} out of rel8 range`);
      out.push(d & 0xff);
    } else if ("abs32" in it) {
      const a = ENTRY + at.get(it.abs32)!;
      out.push(a & 0xff, (a >>> 8) & 0xff, (a >>> 16) & 0xff, a >>> 24);
    }
  }
  return out;
}

const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];

/**
 * Fill: every 8-byte word of page i holds "FXPG", i (non-zero, distinct pages). Sweep n (n = 1, 2, ...): in page
 * i, the word at offset (8 i) mod 4096 becomes n, "TIRD"; then `delayLoops` iterations of `loop $`.
 */
export function sweepGuestImage(delayLoops = 2_000_000): Uint8Array {
  const { start, count } = SWEEP_GUEST_PAGES;
  // prettier-ignore
  return multibootImage(
    assemble([
      0xfa, //                                   cli
      0xbf,
      ...le32(start), //                   mov edi, start
      0x31,
      0xd2, //                             xor edx, edx            ; page index
      { label: "fill_page" },
      0xb9,
      ...le32(512), //                     mov ecx, 512            ; words per page
      { label: "fill_word" },
      0xc7,
      0x07,
      ...le32(0x47505846), //        mov dword [edi], "FXPG"
      0x89,
      0x57,
      0x04, //                       mov [edi+4], edx
      0x83,
      0xc7,
      0x08, //                       add edi, 8
      0xe2,
      { rel8: "fill_word" }, //            loop fill_word
      0x42, //                                   inc edx
      0x81,
      0xfa,
      ...le32(count), //             cmp edx, count
      0x72,
      { rel8: "fill_page" }, //            jb fill_page
      0xbe,
      { abs32: "ready" }, //               mov esi, ready
      0x66,
      0xba,
      0xf8,
      0x03, //                 mov dx, 0x3f8           ; COM1
      { label: "print" },
      0xac, //                                   lodsb
      0x84,
      0xc0, //                             test al, al
      0x74,
      { rel8: "printed" }, //              jz printed
      0xee, //                                   out dx, al
      0xeb,
      { rel8: "print" }, //                jmp print
      { label: "printed" },
      0xbb,
      ...le32(1), //                       mov ebx, 1              ; sweep number
      { label: "sweep" },
      0x31,
      0xd2, //                             xor edx, edx
      { label: "dirty" },
      0x89,
      0xd7, //                             mov edi, edx
      0xc1,
      0xe7,
      0x0c, //                       shl edi, 12
      0x89,
      0xd0, //                             mov eax, edx
      0xc1,
      0xe0,
      0x03, //                       shl eax, 3
      0x25,
      ...le32(0xfff), //                   and eax, 0xfff
      0x8d,
      0xbc,
      0x07,
      ...le32(start), //       lea edi, [edi + eax + start]
      0x89,
      0x1f, //                             mov [edi], ebx
      0xc7,
      0x47,
      0x04,
      ...le32(0x44524954), //  mov dword [edi+4], "TIRD"
      0x42, //                                   inc edx
      0x81,
      0xfa,
      ...le32(count), //             cmp edx, count
      0x72,
      { rel8: "dirty" }, //                jb dirty
      0x43, //                                   inc ebx
      0xb9,
      ...le32(delayLoops), //              mov ecx, delayLoops
      { label: "delay" },
      0xe2,
      { rel8: "delay" }, //                loop delay
      0xeb,
      { rel8: "sweep" }, //                jmp sweep
      { label: "ready" },
      ...[...`${SWEEP_GUEST_READY}\n`].map((c) => c.charCodeAt(0)),
      0,
    ]),
  );
}
