// The complete 747-byte stream of `qemu-system-x86_64 -machine none` (QEMU 7.2), rebuilt byte by byte from
// the annotated dump in docs/wire-format.md §2.11. sha256 4d2a6366…5a59.
const enc = new TextEncoder();

const be32 = (v: number): number[] => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const be64 = (hi: number, lo: number): number[] => [...be32(hi), ...be32(lo)];
const str = (s: string): number[] => [...enc.encode(s)];
const cstr = (s: string): number[] => [s.length, ...str(s)];
const zeros = (n: number): number[] => new Array<number>(n).fill(0);

export const NONE_VMDESC =
  '{"page_size": 4096, "devices": [{"name": "timer", "instance_id": 0, "vmsd_name": "timer", "version": 2, ' +
  '"fields": [{"name": "cpu_ticks_offset", "type": "int64", "size": 8}, {"name": "unused", "type": "unused_buffer", ' +
  '"size": 8}, {"name": "cpu_clock_offset", "type": "int64", "size": 8}]}, {"name": "globalstate", "instance_id": 0, ' +
  '"vmsd_name": "globalstate", "version": 1, "fields": [{"name": "size", "type": "uint32", "size": 4}, {"name": ' +
  '"runstate", "type": "buffer", "size": 100}]}]}';

export const NONE_SHA256 = "4d2a63664d12a2b1c5b9aba69cdc28bb650ccd9d52211250e303a862ee0f5a59";

/** Offsets of interest (from the dump). */
export const NONE_OFFSETS = {
  configuration: 0x08,
  ramStart: 0x11,
  ramEnd: 0x37,
  timer: 0x49,
  globalstate: 0x79,
  eof: 0xff,
  vmdesc: 0x100,
  end: 0x2eb,
} as const;

export function noneStream(): Uint8Array {
  const runstate = [...str("prelaunch"), ...zeros(100 - 9)];
  const bytes = [
    ...str("QEVM"),
    ...be32(3), // 0000 magic, version
    0x07,
    ...be32(4),
    ...str("none"), // 0008 configuration
    0x01,
    ...be32(2),
    ...cstr("ram"),
    ...be32(0),
    ...be32(4), // 0011 START ram
    ...be64(0, 0x04), // 0022 total 0 | MEM_SIZE
    ...be64(0, 0x10), // 002a EOS
    0x7e,
    ...be32(2), // 0032 footer
    0x03,
    ...be32(2), // 0037 END ram
    ...be64(0, 0x10), // 003c EOS
    0x7e,
    ...be32(2), // 0044 footer
    0x04,
    ...be32(0),
    ...cstr("timer"),
    ...be32(0),
    ...be32(2), // 0049 FULL timer
    ...zeros(8),
    ...zeros(8),
    ...zeros(8), // 005c cpu_ticks_offset, unused, cpu_clock_offset
    0x7e,
    ...be32(0), // 0074 footer
    0x04,
    ...be32(4),
    ...cstr("globalstate"),
    ...be32(0),
    ...be32(1), // 0079 FULL globalstate
    ...be32(10),
    ...runstate, // 0092 size, runstate
    0x7e,
    ...be32(4), // 00fa footer
    0x00, // 00ff EOF
    0x06,
    ...be32(NONE_VMDESC.length),
    ...str(NONE_VMDESC), // 0100 vmdesc
  ];
  return new Uint8Array(bytes);
}
