// `vmstream convert IN OUT [--to qemu|ber]`: decode a stream and write it again through the model. The input is
// a QEMU stream (gzip or not) or a BER stream (docs/vmstate.asn1, told by its first tag, [APPLICATION 16]).
// QEMU -> QEMU and QEMU -> BER -> QEMU are byte-identical for streams QEMU wrote. Diagnostics on stderr.
import { closeSync, constants as fsc, openSync, writeSync } from "node:fs";
import { chunksOf, nodeInflate } from "../io/node.js";
import { VmstreamError } from "../io/errors.js";
import { berToQemu, isBerStream, qemuToBer, qemuToBerBytes } from "../sections/encode/ber-stream.js";
import { reencodeStream } from "../sections/encode/convert.js";

async function readAll(path: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of chunksOf(path === "-" ? process.stdin : path)) {
    parts.push(c.slice());
    n += c.length;
  }
  const all = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return all;
}

function writeChunks(output: string, chunks: readonly Uint8Array[]): void {
  const fd = output === "-" ? 1 : openSync(output, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o644);
  try {
    for (const c of chunks) {
      let o = 0;
      while (o < c.length) o += writeSync(fd, c, o, c.length - o);
    }
  } finally {
    if (fd !== 1) closeSync(fd);
  }
}

export async function convertCommand(input: string, output: string, opts: { to: string }): Promise<number> {
  try {
    if (opts.to !== "qemu" && opts.to !== "ber") throw new VmstreamError("USAGE", `--to must be qemu or ber, not ${opts.to}`);
    const bytes = await readAll(input);
    const decode = { inflate: nodeInflate };
    if (isBerStream(bytes)) {
      // BER -> QEMU (and BER -> BER through QEMU: the canonical form)
      const q = berToQemu(bytes);
      if (opts.to === "qemu") writeChunks(output, q.chunks);
      else {
        const flat = new Uint8Array(q.bytes);
        let p = 0;
        for (const c of q.chunks) {
          flat.set(c, p);
          p += c.length;
        }
        writeChunks(output, [qemuToBerBytes(flat, { decode })]);
      }
      return 0;
    }
    if (opts.to === "ber") {
      const r = qemuToBer(bytes, { decode });
      writeChunks(output, r.chunks);
      if (r.report.opaqueSections.length > 0) process.stderr.write(`vmstream: note: sections carried as OpaqueState (payload bytes): ${r.report.opaqueSections.join(", ")}\n`);
      return 0;
    }
    const r = reencodeStream(bytes, { decode });
    writeChunks(output, r.chunks);
    const rep = r.report;
    if (rep.vmdescGenerated === false) {
      process.stderr.write(`vmstream: note: the vmdesc trailer is the stream's own text (the device walks differ for ${rep.vmdescDifferences.join(", ")})\n`);
    }
    if (rep.rawSections.length > 0) process.stderr.write(`vmstream: note: sections copied as bytes: ${rep.rawSections.join(", ")}\n`);
    return 0;
  } catch (e) {
    const err = e instanceof VmstreamError ? e : VmstreamError.wrap(e);
    process.stderr.write(`vmstream: ${err.message}\n`);
    return 1;
  }
}
