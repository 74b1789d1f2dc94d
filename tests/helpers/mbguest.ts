// A tiny bare-metal guest for `qemu-system-x86_64 -M pc -kernel FILE` (tests only), written as bytes: a Multiboot
// v1 image with the a.out kludge (load address in the header, so no ELF and no toolchain), entered by QEMU's
// multiboot loader in 32-bit protected mode, paging off. It loops forever incrementing the first dword of every
// page of [0x400000, 0x800000) (1024 pages, 4 MiB): a guest that keeps re-dirtying pages with small deltas, as
// XBZRLE wants.
import { writeFileSync } from "node:fs";

export const MBGUEST_DIRTY = { start: 0x400000, end: 0x800000 } as const;

export function mbguestImage(): Uint8Array {
  const LOAD = 0x100000;
  const MAGIC = 0x1badb002;
  const FLAGS = 0x00010000; // bit 16: a.out kludge (addresses below are valid)
  const img = new Uint8Array(4096);
  const dv = new DataView(img.buffer);
  const hdr = [MAGIC, FLAGS, (-(MAGIC + FLAGS)) >>> 0, LOAD /* header_addr */, LOAD /* load_addr */, 0 /* load_end: whole file */, 0 /* bss_end */, LOAD + 32 /* entry */];
  hdr.forEach((v, i) => dv.setUint32(4 * i, v >>> 0, true));
  // prettier-ignore
  const code = [
    0xbb, 0x00, 0x00, 0x40, 0x00, //  0: mov ebx, 0x400000
    0x89, 0xd8, //                     5: outer: mov eax, ebx
    0xff, 0x00, //                     7: inner: inc dword [eax]
    0x05, 0x00, 0x10, 0x00, 0x00, //   9: add eax, 0x1000
    0x3d, 0x00, 0x00, 0x80, 0x00, //  14: cmp eax, 0x800000
    0x72, 0xf2, //                    19: jb inner
    0xeb, 0xee, //                    21: jmp outer
  ];
  img.set(code, 32);
  return img;
}

export function writeMbguest(file: string): void {
  writeFileSync(file, mbguestImage());
}
