// The compression streams of QEMU's multifd channels (zlib, zstd), as an injected interface: the browser-safe core
// only sees these types; implementations live where their library can run (Node: codecs-node.ts). docs/io.md,
// "Stream codecs".

import { VmstreamError } from "./errors.js";

/** One direction of one compression stream that lives across many messages (a multifd channel's). */
export interface StreamCompressor {
  /**
   * Compress `parts` in order and flush: the result (a new array the caller owns) ends on a flush point, so the
   * peer can decode all of it now; the stream goes on, and later results may refer back to these bytes. An empty
   * `parts` (or only empty parts) returns an empty array and leaves the stream as it was.
   */
  compress(parts: readonly Uint8Array[]): Uint8Array;
  /** Release what the stream holds; the compressor is unusable afterwards. */
  dispose(): void;
}

export interface StreamDecompressor {
  /**
   * Continue the stream with `data`, which must yield exactly `out.length` bytes (written into `out`) and be
   * consumed whole; else throw a {@link VmstreamError} (code `BAD_VALUE`) saying which. Never writes past
   * `out.length`. After a throw the stream is broken and every later call throws.
   */
  decompress(data: Uint8Array, out: Uint8Array): void;
  /** Release what the stream holds; the decompressor is unusable afterwards. */
  dispose(): void;
}

export interface StreamCodec {
  /**
   * A new stream at compression `level`: zlib 0-9; zstd libzstd's range, 0 meaning its default. QEMU takes 0-9 and
   * 0-20 (`multifd-zlib-level`, `multifd-zstd-level`), 1 by default.
   */
  compressor(level: number): StreamCompressor;
  decompressor(): StreamDecompressor;
}

/** The codecs a host provides; a missing one means that compression method is not available. */
export interface StreamCodecs {
  readonly zlib?: StreamCodec;
  readonly zstd?: StreamCodec;
}

/** The error of a decompressor whose input is bad: `<codec> stream: <detail>`. */
export function streamCodecError(codec: string, detail: string, cause?: unknown): VmstreamError {
  return new VmstreamError("BAD_VALUE", `bad ${codec} stream data`, { detail, cause });
}

/** The error of a stream used after an earlier error or after dispose(). */
export function brokenStreamError(codec: string, why: "failed" | "disposed"): VmstreamError {
  return new VmstreamError("BAD_VALUE", `${codec} stream unusable`, {
    detail: why === "failed" ? "an earlier call failed, so its state is unknown" : "it was disposed",
  });
}
