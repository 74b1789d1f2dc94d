// Node implementations of the multifd stream codecs (not browser-safe; exported from vmstream/node). zlib: node:zlib's
// documented one-shot calls, with the stream's last 32 KiB carried from packet to packet as a preset dictionary.
// zstd: libzstd's streaming calls through the optional dependency zstd-napi. Why these: docs/io.md, "Stream codecs".

import { createRequire } from "node:module";
import { constants, deflateRawSync, deflateSync, inflateRawSync, type ZlibOptions } from "node:zlib";
import { joinChunks } from "./chunks.js";
import { brokenStreamError, type StreamCodec, type StreamCodecs, type StreamCompressor, type StreamDecompressor, streamCodecError } from "./codec.js";
import { VmstreamError } from "./errors.js";

/** How far back a deflate match may reach: all a later packet can need of the earlier ones. */
const ZLIB_WINDOW = 32 * 1024;

/**
 * A last, empty block (BFINAL=1, fixed codes, end-of-block) appended to a packet's bytes. When the packet ends on a
 * flush point (a byte-aligned block boundary) inflate ends exactly after it; when it ends anywhere else the two
 * bytes are read as part of an unfinished block and inflate fails or yields more.
 */
const LAST_EMPTY_BLOCK = new Uint8Array([0x03, 0x00]);

function view(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** The last ZLIB_WINDOW bytes of the stream `before` followed by `next`, copied (the caller's buffers get reused). */
function slideWindow(before: Uint8Array | undefined, next: Uint8Array): Uint8Array {
  // new Uint8Array(view) copies, where Buffer's slice() would not.
  if (next.length >= ZLIB_WINDOW) return new Uint8Array(next.subarray(next.length - ZLIB_WINDOW));
  const keep = Math.min(before?.length ?? 0, ZLIB_WINDOW - next.length);
  const window = new Uint8Array(keep + next.length);
  if (before !== undefined && keep > 0) window.set(before.subarray(before.length - keep));
  window.set(next, keep);
  return window;
}

function checkLevel(codec: string, level: number, min: number, max: number): void {
  if (!Number.isInteger(level) || level < min || level > max) {
    throw new VmstreamError("RANGE", `${codec} compression level out of range`, { detail: `${level}, expected ${min}..${max}` });
  }
}

function joinParts(parts: readonly Uint8Array[]): Uint8Array {
  return parts.length === 1 ? parts[0]! : joinChunks(parts);
}

// zlib: a deflate stream continued packet by packet. Each packet is deflated on its own with the stream's last
// 32 KiB as a preset dictionary, which is all a continuous deflate could refer to; the first carries the RFC 1950
// header, none ever ends the stream, so a receiver keeping one inflate for the channel (QEMU) reads one stream.

class NodeZlibCompressor implements StreamCompressor {
  /** The stream's last bytes; undefined until the first packet, which starts with the zlib header. */
  private window: Uint8Array | undefined;
  private disposed = false;

  constructor(private readonly level: number) {
    checkLevel("zlib", level, 0, 9);
  }

  compress(parts: readonly Uint8Array[]): Uint8Array {
    if (this.disposed) throw brokenStreamError("zlib", "disposed");
    const input = joinParts(parts);
    if (input.length === 0) return new Uint8Array(0);
    const options: ZlibOptions = { level: this.level, finishFlush: constants.Z_SYNC_FLUSH };
    const out = this.window === undefined ? deflateSync(input, options) : deflateRawSync(input, { ...options, dictionary: this.window });
    this.window = slideWindow(this.window, input);
    return view(out);
  }

  dispose(): void {
    this.disposed = true;
    this.window = undefined;
  }
}

/** RFC 1950 header: deflate, a window of at most 32 KiB, the check bits right, no preset dictionary. */
function checkZlibHeader(data: Uint8Array): void {
  if (data.length < 2) throw streamCodecError("zlib", `the first packet has ${data.length} byte(s), shorter than the 2-byte zlib header`);
  const cmf = data[0]!;
  const flg = data[1]!;
  const hex = `${cmf.toString(16).padStart(2, "0")} ${flg.toString(16).padStart(2, "0")}`;
  if ((cmf & 0x0f) !== 8 || cmf >> 4 > 7) throw streamCodecError("zlib", `header ${hex}: not deflate with a window of at most 32 KiB`);
  if (((cmf << 8) | flg) % 31 !== 0) throw streamCodecError("zlib", `header ${hex}: check bits wrong`);
  if (flg & 0x20) throw streamCodecError("zlib", `header ${hex}: asks for a preset dictionary`);
}

/** node:zlib's error of a one-shot inflate, said as what is wrong with the packet. */
function inflateError(e: unknown, expected: number): VmstreamError {
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  if (code === "ERR_BUFFER_TOO_LARGE") return streamCodecError("zlib", `the packet yields more than ${expected} bytes`, e);
  if (code === "Z_BUF_ERROR") return streamCodecError("zlib", "the packet does not end on a flush point (truncated, or cut inside a block)", e);
  return streamCodecError("zlib", `invalid deflate data: ${message}`, e);
}

class NodeZlibDecompressor implements StreamDecompressor {
  /** The stream's last bytes; undefined until the first packet, which starts with the zlib header. */
  private window: Uint8Array | undefined;
  private broken: "failed" | "disposed" | undefined;

  decompress(data: Uint8Array, out: Uint8Array): void {
    if (this.broken !== undefined) throw brokenStreamError("zlib", this.broken);
    try {
      this.inflate(data, out);
    } catch (e) {
      this.broken = "failed";
      throw e;
    }
  }

  private inflate(data: Uint8Array, out: Uint8Array): void {
    if (out.length === 0) {
      if (data.length !== 0) throw streamCodecError("zlib", `${data.length} byte(s) for a packet with no output`);
      return;
    }
    let body = data;
    if (this.window === undefined) {
      checkZlibHeader(data);
      body = data.subarray(2);
    }
    const input = joinChunks([body, LAST_EMPTY_BLOCK]);
    const options: ZlibOptions = {
      info: true,
      maxOutputLength: out.length,
      chunkSize: Math.max(out.length, constants.Z_MIN_CHUNK),
      ...(this.window !== undefined ? { dictionary: this.window } : {}),
    };
    let result: { buffer: Buffer; engine: { bytesWritten: number } };
    try {
      // With `info: true` the one-shot call returns the engine too (node:zlib docs, "Convenience methods").
      result = inflateRawSync(input, options) as unknown as typeof result;
    } catch (e) {
      throw inflateError(e, out.length);
    }
    const used = result.engine.bytesWritten;
    if (used !== input.length) {
      throw streamCodecError("zlib", `the deflate stream ends after ${Math.min(used, body.length)} of ${body.length} bytes (a multifd one never ends)`);
    }
    if (result.buffer.length !== out.length) throw streamCodecError("zlib", `the packet yields ${result.buffer.length} bytes, expected ${out.length}`);
    out.set(result.buffer);
    this.window = slideWindow(this.window, out);
  }

  dispose(): void {
    this.broken = "disposed";
    this.window = undefined;
  }
}

/** zlib (RFC 1950) through node:zlib. */
export const nodeZlibCodec: StreamCodec = {
  compressor: (level) => new NodeZlibCompressor(level),
  decompressor: () => new NodeZlibDecompressor(),
};

// zstd: one ZSTD_CStream / ZSTD_DStream per channel, as in QEMU, through zstd-napi's thin binding. The binding is
// loaded on first use: it is an optional (native) dependency, and without it there is no zstd codec.

/** The part of `zstd-napi/binding` used here (declared here: the package may be absent). */
interface ZstdBinding {
  readonly CCtx: new () => ZstdCCtx;
  readonly DCtx: new () => ZstdDCtx;
  readonly CParameter: { readonly compressionLevel: number };
  readonly EndDirective: { readonly continue: number; readonly flush: number };
  minCLevel(): number;
  maxCLevel(): number;
}
/** [the call's return value, bytes written to dst, bytes read from src]. */
type ZstdStreamResult = [number, number, number];
interface ZstdCCtx {
  setParameter(param: number, value: number): void;
  compressStream2(dst: Uint8Array, src: Uint8Array, endOp: number): ZstdStreamResult;
}
interface ZstdDCtx {
  decompressStream(dst: Uint8Array, src: Uint8Array): ZstdStreamResult;
}

class ZstdCompressor implements StreamCompressor {
  private cctx: ZstdCCtx | undefined;
  /** Output space, reused across packets and grown as needed. */
  private buf = new Uint8Array(128 * 1024);

  constructor(
    private readonly zstd: ZstdBinding,
    level: number,
  ) {
    checkLevel("zstd", level, zstd.minCLevel(), zstd.maxCLevel());
    this.cctx = new zstd.CCtx();
    this.cctx.setParameter(zstd.CParameter.compressionLevel, level);
  }

  compress(parts: readonly Uint8Array[]): Uint8Array {
    const cctx = this.cctx;
    if (cctx === undefined) throw brokenStreamError("zstd", "disposed");
    if (parts.every((p) => p.length === 0)) return new Uint8Array(0);
    const { continue: more, flush } = this.zstd.EndDirective;
    let pos = 0;
    for (let i = 0; i < parts.length; i++) {
      const end = i === parts.length - 1 ? flush : more;
      let src = parts[i]!;
      for (;;) {
        // Room for a full block and its header keeps the calls few; any room would do.
        if (this.buf.length - pos < 136 * 1024) this.grow(pos);
        const [left, written, read] = cctx.compressStream2(this.buf.subarray(pos), src, end);
        pos += written;
        src = src.subarray(read);
        if (src.length === 0 && (end === more || left === 0)) break;
      }
    }
    return this.buf.slice(0, pos);
  }

  private grow(used: number): void {
    const bigger = new Uint8Array(this.buf.length * 2);
    bigger.set(this.buf.subarray(0, used));
    this.buf = bigger;
  }

  dispose(): void {
    this.cctx = undefined; // zstd-napi frees the context when it is collected
  }
}

/** ZSTD_blockHeaderSize: what the decoder waits for between two blocks. */
const ZSTD_BLOCK_HEADER_SIZE = 3;

class ZstdDecompressor implements StreamDecompressor {
  private dctx: ZstdDCtx | undefined;
  private broken: "failed" | "disposed" | undefined;
  /** One byte to ask whether the packet yields more than the caller's buffer holds. */
  private readonly probe = new Uint8Array(1);

  constructor(zstd: ZstdBinding) {
    this.dctx = new zstd.DCtx();
  }

  decompress(data: Uint8Array, out: Uint8Array): void {
    if (this.broken !== undefined || this.dctx === undefined) throw brokenStreamError("zstd", this.broken ?? "disposed");
    try {
      this.run(this.dctx, data, out);
    } catch (e) {
      this.broken = "failed";
      throw e instanceof VmstreamError ? e : streamCodecError("zstd", e instanceof Error ? e.message : String(e), e);
    }
  }

  private run(dctx: ZstdDCtx, data: Uint8Array, out: Uint8Array): void {
    if (out.length === 0) {
      if (data.length !== 0) throw streamCodecError("zstd", `${data.length} byte(s) for a packet with no output`);
      return;
    }
    let pos = 0;
    let src = data;
    while (pos < out.length) {
      const [, written, read] = dctx.decompressStream(out.subarray(pos), src);
      pos += written;
      src = src.subarray(read);
      if (written === 0 && read === 0) break; // it needs bytes the packet does not have
    }
    if (pos < out.length) {
      throw streamCodecError("zstd", `the packet yields ${pos} bytes, expected ${out.length} (truncated, or not cut at a flush point)`);
    }
    // `out` is full. The packet may yield nothing more, not even from the decoder's buffer...
    const [wants, more] = dctx.decompressStream(this.probe, src);
    if (more > 0) throw streamCodecError("zstd", `the packet yields more than ${out.length} bytes`);
    if (src.length > 0) throw streamCodecError("zstd", `${src.length} byte(s) of the packet left over after its ${out.length} bytes`);
    // ...and must end on a flush point. The decoder reads on past the last byte it writes, into the next header,
    // so bytes after a flushed block are taken in, not left over: what it wants next tells where it stands. It
    // returns how many bytes it still needs of what it is reading: a whole block header at a block boundary, 0
    // when the frame is complete (a sender may end frames; QEMU never does).
    if (wants !== ZSTD_BLOCK_HEADER_SIZE && wants !== 0) {
      throw streamCodecError("zstd", `the packet does not end on a flush point: the decoder wants ${wants} more byte(s) of a header`);
    }
  }

  dispose(): void {
    this.broken = "disposed";
    this.dctx = undefined;
  }
}

/** zstd-napi's binding, or the reason it cannot be had (loaded once, on first use). */
let zstdBinding: ZstdBinding | string | undefined;

function loadZstd(): ZstdBinding | string {
  if (zstdBinding === undefined) {
    try {
      zstdBinding = createRequire(import.meta.url)("zstd-napi/binding") as ZstdBinding;
    } catch (e) {
      zstdBinding = `zstd-napi cannot be loaded (an optional dependency; npm builds it at install): ${e instanceof Error ? e.message : String(e)}`;
    }
  }
  return zstdBinding;
}

/** Why there is no zstd codec here, or undefined when there is one. */
export function zstdUnavailable(): string | undefined {
  const zstd = loadZstd();
  return typeof zstd === "string" ? zstd : undefined;
}

function zstdCodec(): StreamCodec | undefined {
  const zstd = loadZstd();
  if (typeof zstd === "string") return undefined;
  return { compressor: (level) => new ZstdCompressor(zstd, level), decompressor: () => new ZstdDecompressor(zstd) };
}

/** The codecs available in this Node process: zlib always, zstd when zstd-napi is installed. */
export const nodeStreamCodecs: StreamCodecs = {
  zlib: nodeZlibCodec,
  get zstd(): StreamCodec | undefined {
    return zstdCodec();
  },
};
