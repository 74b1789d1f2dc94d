// QEMU_VM_COMMAND (wire-format §2.6): the data layout of each command, read by the decoder with QEMU's
// postcopy state machine, and written again from a decoded record (commandData). PACKAGED bodies and their
// limits are the decoder's business. Browser-safe.

import { VmstreamError } from "../io/errors.js";
import type { ByteReader } from "../io/reader.js";
import { ByteWriter } from "../io/writer.js";
import { CMD, CMD_NAMES, type DecoderLimits } from "./constants.js";
import type { AtHand } from "./input-window.js";
import type { CommandRecord } from "./types.js";

/** Data lengths of the fixed-size commands. */
const FIXED_LENGTH: Readonly<Record<number, number>> = {
  [CMD.OPEN_RETURN_PATH]: 0,
  [CMD.PING]: 4,
  [CMD.POSTCOPY_LISTEN]: 0,
  [CMD.POSTCOPY_RUN]: 0,
  [CMD.PACKAGED]: 4,
  [CMD.ENABLE_COLO]: 0,
  [CMD.POSTCOPY_RESUME]: 0,
};

type PostcopyState = "none" | "advise" | "discard" | "listen" | "running";

export interface DiscardRange {
  readonly start: bigint;
  readonly length: bigint;
}

/** Reads commands in stream order and keeps QEMU's destination-side state: return path, postcopy phase. */
export class CommandReader {
  private postcopy: PostcopyState = "none";
  private returnPath = false;

  /** `ramBlock`: a RAM block's length by name, to check POSTCOPY_RAM_DISCARD ranges. */
  constructor(private readonly ramBlock: (name: string) => { readonly length: bigint } | undefined) {}

  /**
   * The command at the start of `input` (its 0x08 at byte 0), inside the PACKAGED bodies ending at `packages`
   * (innermost last): its record and its size (a PACKAGED command's body follows it: `packageEnd`), or how
   * many bytes to wait for.
   */
  read(
    input: AtHand,
    packages: readonly number[],
    limits: Pick<DecoderLimits, "packagedBytes" | "packageDepth">,
  ): { need: number } | { record: CommandRecord; size: number; packageEnd?: number } {
    const { n, offset: at } = input;
    if (n < 3) return { need: 3 };
    const cmd = (input.byteAt(1) << 8) | input.byteAt(2);
    const name = this.name(cmd, at);
    if (n < 5) return { need: 5 };
    const len = (input.byteAt(3) << 8) | input.byteAt(4);
    this.checkLength(cmd, len, at);
    if (n < 5 + len) return { need: 5 + len };
    const depth = packages.length;
    const fields = this.data(cmd, len, input.reader(5, 5 + len), at);
    const record: CommandRecord = { cmd, name, offset: at, length: len, depth, fields };
    if (cmd !== CMD.PACKAGED) return { record, size: 5 + len };
    const size = fields.size as number;
    if (size > limits.packagedBytes)
      throw new VmstreamError("LIMIT", "PACKAGED command too large", { offset: at, detail: `${size} > ${limits.packagedBytes} (limits.packagedBytes)` });
    if (depth >= limits.packageDepth)
      throw new VmstreamError("LIMIT", "PACKAGED commands nested too deeply", { offset: at, detail: `depth ${depth + 1} > ${limits.packageDepth}` });
    const packageEnd = at + 9 + size;
    const outer = packages[depth - 1];
    if (outer !== undefined && packageEnd > outer) throw badCommand(name, at)("the package is longer than the package that contains it");
    return { record, size: 9, packageEnd };
  }

  /** The command's name (an unknown id is an error). */
  name(cmd: number, at: number): string {
    if (cmd === CMD.INVALID || cmd >= CMD_NAMES.length) throw new VmstreamError("BAD_VALUE", "unknown command", { offset: at, detail: `command ${cmd}` });
    return CMD_NAMES[cmd]!;
  }

  /** Check the data length of a known command before its data arrived. */
  checkLength(cmd: number, len: number, at: number): void {
    const bad = badCommand(CMD_NAMES[cmd]!, at);
    const fixed = FIXED_LENGTH[cmd];
    if (fixed !== undefined && len !== fixed) throw bad(`length ${len}, expected ${fixed}`);
    if (cmd === CMD.POSTCOPY_ADVISE && len !== 0 && len !== 16) throw bad(`length ${len}, expected 0 or 16`);
    if (cmd === CMD.POSTCOPY_RAM_DISCARD && len < 20) throw bad(`length ${len} < 20`);
  }

  /** The fields of a command whose `len` data bytes `r` holds; advances the postcopy state. */
  data(cmd: number, len: number, r: ByteReader, at: number): Record<string, unknown> {
    const bad = badCommand(CMD_NAMES[cmd]!, at);
    const inState = (...ok: PostcopyState[]): void => {
      if (!ok.includes(this.postcopy)) throw bad(`in postcopy state "${this.postcopy}"`);
    };
    const fields: Record<string, unknown> = {};
    switch (cmd) {
      case CMD.OPEN_RETURN_PATH:
        this.returnPath = true;
        break;
      case CMD.PING:
        fields.value = r.be32();
        if (!this.returnPath) throw bad("PING without a return path (no OPEN_RETURN_PATH before it)");
        break;
      case CMD.POSTCOPY_ADVISE:
        inState("none");
        if (len === 16) {
          fields.pageSizeSummary = r.be64();
          fields.targetPageSize = r.be64();
        }
        this.postcopy = "advise";
        break;
      case CMD.POSTCOPY_LISTEN:
        inState("advise", "discard");
        this.postcopy = "listen";
        break;
      case CMD.POSTCOPY_RUN:
        inState("listen");
        this.postcopy = "running";
        break;
      case CMD.POSTCOPY_RAM_DISCARD: {
        inState("advise", "discard");
        const ver = r.u8();
        if (ver !== 0) throw bad(`version ${ver}, expected 0`);
        const nameLen = r.peekU8();
        if (nameLen + 3 > len) throw bad("the block name is longer than the command");
        const block = r.cstr();
        if (r.u8() !== 0) throw bad("missing NUL after the block name");
        const rest = len - 3 - nameLen;
        if (rest % 16 !== 0) throw bad(`${rest} bytes of ranges, not a multiple of 16`);
        const ram = this.ramBlock(block);
        if (!ram) throw bad(`unknown RAM block "${block}"`);
        const ranges: DiscardRange[] = [];
        for (let i = 0; i < rest / 16; i++) {
          const start = r.be64();
          const length = r.be64();
          if (start + length > ram.length) throw bad(`range 0x${start.toString(16)}+0x${length.toString(16)} is outside block "${block}"`);
          ranges.push({ start, length });
        }
        fields.block = block;
        fields.ranges = ranges;
        this.postcopy = "discard";
        break;
      }
      case CMD.PACKAGED:
        fields.size = r.be32();
        break;
      case CMD.ENABLE_COLO:
        break;
      case CMD.POSTCOPY_RESUME:
        throw bad("POSTCOPY_RESUME outside a postcopy recovery");
      case CMD.RECV_BITMAP: {
        const nameLen = r.peekU8();
        if (len !== nameLen + 1) throw bad(`length ${len} for a ${nameLen}-byte block name`);
        fields.block = r.cstr();
        throw bad("RECV_BITMAP outside a postcopy recovery");
      }
    }
    return fields;
  }
}

function badCommand(name: string, at: number): (why: string) => VmstreamError {
  return (why) => new VmstreamError("BAD_VALUE", `bad ${name} command`, { offset: at, detail: why });
}

/** The data bytes of a decoded command, as they were sent. */
export function commandData(c: CommandRecord): Uint8Array {
  const w = new ByteWriter();
  const f = c.fields;
  switch (c.cmd) {
    case CMD.OPEN_RETURN_PATH:
    case CMD.POSTCOPY_LISTEN:
    case CMD.POSTCOPY_RUN:
    case CMD.ENABLE_COLO:
    case CMD.POSTCOPY_RESUME:
      break;
    case CMD.PING:
      w.be32(f.value as number);
      break;
    case CMD.POSTCOPY_ADVISE:
      if (c.length === 16) {
        w.be64(f.pageSizeSummary as bigint);
        w.be64(f.targetPageSize as bigint);
      }
      break;
    case CMD.POSTCOPY_RAM_DISCARD:
      w.u8(0);
      w.cstr(f.block as string);
      w.u8(0);
      for (const r of f.ranges as DiscardRange[]) {
        w.be64(r.start);
        w.be64(r.length);
      }
      break;
    default:
      throw new VmstreamError("UNSUPPORTED", `re-encoding the ${c.name} command is not supported`, { offset: c.offset });
  }
  return w.concat();
}
