// The guest vmstream builds itself for the v86 embedding: a hand-encoded 512-byte x86 boot sector that prints a
// banner on COM1 once, then loops forever changing RAM (a counter and a 512 KiB window) and printing the counter
// now and then. What it writes where, and why its code sits alone on a page: docs/v86.md, "The test guest".

export const GUEST = {
  /** u32 counter, incremented once per loop iteration. */
  counter: 0x500,
  /** Mailbox byte: the host writes a printable byte, the guest echoes it as ` MB=x` on its next status line. */
  mailbox: 0x510,
  windowStart: 0x10000,
  windowEnd: 0x90000,
  /** Iterations between status lines (a power of two). */
  printEvery: 1 << 22,
  banner: "VMSTREAM GUEST BOOT",
} as const;

/** One status line the guest printed. */
export interface GuestStatus {
  readonly counter: number;
  readonly ticks: number;
  readonly mailbox?: string;
}

/** Parse the status lines of the guest's serial output (the banner and partial lines are ignored). */
export function parseGuestLines(text: string): GuestStatus[] {
  const out: GuestStatus[] = [];
  for (const m of text.matchAll(/C=([0-9A-F]{8}) T=([0-9A-F]{8})(?: MB=(.))?\r\n/g)) {
    out.push({ counter: parseInt(m[1]!, 16), ticks: parseInt(m[2]!, 16), ...(m[3] !== undefined ? { mailbox: m[3] } : {}) });
  }
  return out;
}

/**
 * A minimal 16-bit x86 emitter: bytes plus labels, with rel8/rel16 fixups resolved at the end. Only what the boot
 * sector needs; each instruction is written as its encoding with the mnemonic beside it.
 */
class Emitter {
  readonly bytes: number[] = [];
  private readonly labels = new Map<string, number>();
  private readonly fixups: { at: number; label: string; kind: "rel8" | "rel16" | "abs16" }[] = [];
  constructor(private readonly origin: number) {}

  get here(): number {
    return this.origin + this.bytes.length;
  }
  op(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  imm16(v: number): number[] {
    return [v & 0xff, (v >> 8) & 0xff];
  }
  imm32(v: number): number[] {
    return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
  }
  label(name: string): this {
    if (this.labels.has(name)) throw new Error(`guest: label ${name} defined twice`);
    this.labels.set(name, this.here);
    return this;
  }
  /** An opcode followed by a relative displacement to `label` (measured from the end of the instruction). */
  rel(opcode: number[], label: string, size: 1 | 2): this {
    this.op(...opcode);
    this.fixups.push({ at: this.bytes.length, label, kind: size === 1 ? "rel8" : "rel16" });
    this.op(...new Array<number>(size).fill(0));
    return this;
  }
  /** The 16-bit absolute address of a label (for `mov si, imm16`), resolved at the end. */
  abs16(opcode: number[], label: string): this {
    this.op(...opcode);
    this.fixups.push({ at: this.bytes.length, label, kind: "abs16" });
    this.op(0, 0);
    return this;
  }
  ascii(s: string): this {
    for (const c of s) this.op(c.charCodeAt(0));
    return this;
  }
  finish(): Uint8Array {
    for (const f of this.fixups) {
      const target = this.labels.get(f.label);
      if (target === undefined) throw new Error(`guest: undefined label ${f.label}`);
      if (f.kind === "abs16") {
        this.bytes[f.at] = target & 0xff;
        this.bytes[f.at + 1] = (target >> 8) & 0xff;
        continue;
      }
      const d = target - (this.origin + f.at + (f.kind === "rel8" ? 1 : 2));
      if (f.kind === "rel8") {
        if (d < -128 || d > 127) throw new Error(`guest: rel8 to ${f.label} out of range (${d})`);
        this.bytes[f.at] = d & 0xff;
      } else {
        this.bytes[f.at] = d & 0xff;
        this.bytes[f.at + 1] = (d >> 8) & 0xff;
      }
    }
    return Uint8Array.from(this.bytes);
  }
}

/** The 512-byte boot sector (ends with the 0x55 0xAA signature). */
export function guestBootSector(): Uint8Array {
  const a = new Emitter(0x7c00);
  const w16 = (v: number) => a.imm16(v);
  const w32 = (v: number) => a.imm32(v);
  a.op(0xfa) //                                   cli
    .op(0x31, 0xc0) //                           xor ax, ax
    .op(0x8e, 0xd8) //                           mov ds, ax
    .op(0x8e, 0xc0) //                           mov es, ax
    .op(0x8e, 0xd0) //                           mov ss, ax
    .op(0xbc, ...w16(0x6000)) //                 mov sp, 0x6000
    .op(0xfc) //                                 cld
    // COM1: 8 data bits, no parity, one stop bit (the divisor is irrelevant to an emulated UART)
    .op(0xba, ...w16(0x3fb)) //                  mov dx, 0x3FB (line control)
    .op(0xb0, 0x03) //                           mov al, 3
    .op(0xee) //                                 out dx, al
    .op(0x66, 0x31, 0xc0) //                     xor eax, eax
    .op(0x66, 0xa3, ...w16(GUEST.counter)) //    mov [counter], eax
    .op(0xa2, ...w16(GUEST.mailbox)) //          mov [mailbox], al
    .abs16([0xbe], "banner") //                  mov si, banner
    .rel([0xe8], "puts", 2) //                   call puts
    .op(0xfb) //                                 sti (the BIOS timer keeps ticking: its count is printed)
    .label("loop")
    .op(0x66, 0xff, 0x06, ...w16(GUEST.counter)) // inc dword [counter]
    .op(0x66, 0xa1, ...w16(GUEST.counter)) //    mov eax, [counter]
    // window byte at 0x10000 + (counter & 0x7FFFF): segment 0x1000 + ((counter >> 16) & 7) * 0x1000, offset ax
    .op(0x66, 0x89, 0xc3) //                     mov ebx, eax
    .op(0x66, 0xc1, 0xeb, 16) //                 shr ebx, 16
    .op(0x83, 0xe3, 0x07) //                     and bx, 7
    .op(0xc1, 0xe3, 12) //                       shl bx, 12
    .op(0x81, 0xc3, ...w16(GUEST.windowStart >> 4)) // add bx, 0x1000
    .op(0x8e, 0xc3) //                           mov es, bx
    .op(0x89, 0xc7) //                           mov di, ax
    .op(0x66, 0x89, 0xc2) //                     mov edx, eax
    .op(0x66, 0xc1, 0xea, 19) //                 shr edx, 19
    .op(0x26, 0x88, 0x15) //                     mov [es:di], dl
    .op(0x66, 0xa9, ...w32(GUEST.printEvery - 1)) // test eax, printEvery-1
    .rel([0x75], "loop", 1) //                   jnz loop
    .rel([0xe8], "status", 2) //                 call status
    .rel([0xeb], "loop", 1) //                   jmp loop

    // status: "C=xxxxxxxx T=xxxxxxxx[ MB=m]\r\n"
    .label("status")
    .op(0xb0, 0x43) //                           mov al, 'C'
    .rel([0xe8], "putc", 2) //                   call putc
    .op(0xb0, 0x3d) //                           mov al, '='
    .rel([0xe8], "putc", 2) //                   call putc
    .op(0x66, 0xa1, ...w16(GUEST.counter)) //    mov eax, [counter]
    .rel([0xe8], "hex32", 2) //                  call hex32
    .abs16([0xbe], "tick") //                    mov si, " T="
    .rel([0xe8], "puts", 2) //                   call puts
    .op(0x66, 0xa1, ...w16(0x46c)) //            mov eax, [0x46C] (BIOS tick count)
    .rel([0xe8], "hex32", 2) //                  call hex32
    .op(0xa0, ...w16(GUEST.mailbox)) //          mov al, [mailbox]
    .op(0x84, 0xc0) //                           test al, al
    .rel([0x74], "eol", 1) //                    jz eol
    .abs16([0xbe], "mb") //                      mov si, " MB="
    .rel([0xe8], "puts", 2) //                   call puts
    .op(0xa0, ...w16(GUEST.mailbox)) //          mov al, [mailbox]
    .rel([0xe8], "putc", 2) //                   call putc
    .op(0xc6, 0x06, ...w16(GUEST.mailbox), 0) // mov byte [mailbox], 0
    .label("eol")
    .abs16([0xbe], "crlf") //                    mov si, "\r\n"
    .rel([0xe8], "puts", 2) //                   call puts
    .op(0xc3) //                                 ret

    // hex32: eax as 8 upper-case hex digits
    .label("hex32")
    .op(0xb9, ...w16(8)) //                      mov cx, 8
    .label("hex_digit")
    .op(0x66, 0xc1, 0xc0, 4) //                  rol eax, 4
    .op(0x66, 0x50) //                           push eax
    .op(0x24, 0x0f) //                           and al, 0x0F
    .op(0x04, 0x30) //                           add al, '0'
    .op(0x3c, 0x39) //                           cmp al, '9'
    .rel([0x76], "hex_out", 1) //                jbe hex_out
    .op(0x04, 0x07) //                           add al, 'A'-'9'-1
    .label("hex_out")
    .rel([0xe8], "putc", 2) //                   call putc
    .op(0x66, 0x58) //                           pop eax
    .rel([0xe2], "hex_digit", 1) //              loop hex_digit
    .op(0xc3) //                                 ret

    // puts: the NUL-terminated string at ds:si
    .label("puts")
    .op(0xac) //                                 lodsb
    .op(0x84, 0xc0) //                           test al, al
    .rel([0x74], "puts_end", 1) //               jz puts_end
    .rel([0xe8], "putc", 2) //                   call putc
    .rel([0xeb], "puts", 1) //                   jmp puts
    .label("puts_end")
    .op(0xc3) //                                 ret

    // putc: al to COM1 once the transmitter holding register is empty
    .label("putc")
    .op(0x50) //                                 push ax
    .op(0xba, ...w16(0x3fd)) //                  mov dx, 0x3FD (line status)
    .label("putc_wait")
    .op(0xec) //                                 in al, dx
    .op(0xa8, 0x20) //                           test al, 0x20
    .rel([0x74], "putc_wait", 1) //              jz putc_wait
    .op(0x58) //                                 pop ax
    .op(0xba, ...w16(0x3f8)) //                  mov dx, 0x3F8
    .op(0xee) //                                 out dx, al
    .op(0xc3) //                                 ret

    .label("banner")
    .ascii(GUEST.banner + "\r\n")
    .op(0)
    .label("tick")
    .ascii(" T=")
    .op(0)
    .label("mb")
    .ascii(" MB=")
    .op(0)
    .label("crlf")
    .ascii("\r\n")
    .op(0);
  const code = a.finish();
  if (code.length > 510) throw new Error(`guest: boot sector code is ${code.length} bytes (max 510)`);
  const sector = new Uint8Array(512);
  sector.set(code);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/**
 * The boot sector as a disk image: `hda` (a small hard disk, default 64 KiB) or `fda` (a 1.44 MB floppy). Both
 * travel inside v86's state (it keeps buffer-backed disks whole), so the hard disk is kept small.
 */
export function guestDiskImage(kind: "hda" | "fda" = "hda", bytes = kind === "fda" ? 1_474_560 : 64 * 1024): Uint8Array {
  if (bytes < 512 || bytes % 512 !== 0) throw new RangeError(`guest disk size ${bytes} is not a positive multiple of 512`);
  const img = new Uint8Array(bytes);
  img.set(guestBootSector());
  return img;
}
