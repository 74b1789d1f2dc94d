// Gathered output (a list of chunks) as one buffer. Browser-safe.

/** Concatenate `chunks` (`total`: their byte count, when known). */
export function joinChunks(chunks: readonly Uint8Array[], total?: number): Uint8Array {
  const n = total ?? chunks.reduce((a, c) => a + c.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}
