// Compression streams that live across many messages (a multifd channel's zlib or zstd stream), injected where
// needed so that the core stays browser-safe. Implementations for Node: codecs-node.ts.

/** One direction of one compression stream that lives across many messages. */
export interface StreamCompressor {
  /** Compress `parts` in order and flush: the result ends on a flush point; the stream goes on. */
  compress(parts: readonly Uint8Array[]): Uint8Array;
  dispose(): void;
}

export interface StreamDecompressor {
  /** Continue the stream with `data`, which must yield exactly `out.length` bytes (written into `out`) and be consumed whole. */
  decompress(data: Uint8Array, out: Uint8Array): void;
  dispose(): void;
}

export interface StreamCodec {
  compressor(level: number): StreamCompressor;
  decompressor(): StreamDecompressor;
}

export interface StreamCodecs {
  readonly zlib?: StreamCodec;
  readonly zstd?: StreamCodec;
}
