// `vmstream convert IN OUT [--to qemu|ber]`: decode a stream and write it again through the model. A QEMU input
// (gzip or not) is streamed (StreamConverter, StreamBerConverter; for a plain file the vmdesc is read from its end
// first); a BER input (docs/vmstate.asn1, told by its first tag) is held in memory. OUT is written as OUT.partial,
// renamed when complete, removed on failure. Behaviour for users: README.md, "The command".
import { statSync } from "node:fs";
import { isBerStream } from "../convert/ber-items.js";
import { berToQemu } from "../convert/from-ber.js";
import { type ReencodeReport, StreamConverter } from "../convert/qemu.js";
import { qemuToBerBytes, StreamBerConverter } from "../convert/to-ber.js";
import { joinChunks } from "../io/chunks.js";
import { VmstreamError } from "../io/errors.js";
import { chunksOf, isGzip, nodeInflate, readHead } from "../io/node.js";
import { ByteWriter } from "../io/writer.js";
import { type OutputOpen, openOutput } from "../migration/transport.js";
import { readVmdescTrailer } from "../sections/node.js";
import { userMessage } from "./messages.js";

/** The vmdesc at the end of IN when it is a plain (not gzip) regular file, else undefined (read as it comes). */
async function vmdescFirst(input: string): Promise<string | undefined> {
  if (input === "-") return undefined;
  try {
    if (!statSync(input).isFile() || isGzip((await readHead(input, 2)).bytes)) return undefined;
  } catch {
    return undefined; // the read below reports it
  }
  return readVmdescTrailer(input);
}

async function readRest(it: AsyncIterator<Uint8Array>, head: Uint8Array): Promise<Uint8Array> {
  const parts = [head.slice()];
  for (let r = await it.next(); !r.done; r = await it.next()) parts.push(r.value.slice());
  return joinChunks(parts);
}

function notes(rep: ReencodeReport): void {
  if (rep.vmdescGenerated === false) {
    process.stderr.write(`vmstream: note: the vmdesc trailer is the stream's own text (the device walks differ for ${rep.vmdescDifferences.join(", ")})\n`);
  }
  if (rep.rawSections.length > 0) process.stderr.write(`vmstream: note: sections copied as bytes: ${rep.rawSections.join(", ")}\n`);
}

export async function convertCommand(input: string, output: string, opts: { to: string }): Promise<number> {
  let out: OutputOpen | undefined;
  let conv: StreamConverter | StreamBerConverter | undefined;
  try {
    if (opts.to !== "qemu" && opts.to !== "ber") throw new VmstreamError("USAGE", `--to must be qemu or ber, not ${opts.to}`);
    const it = chunksOf(input === "-" ? process.stdin : input)[Symbol.asyncIterator]();
    const first = await it.next();
    const head = first.done ? new Uint8Array(0) : first.value;
    const decode = { inflate: nodeInflate };
    out = await openOutput(output === "-" ? { kind: "stdio" } : { kind: "file", path: output }, { copy: false });
    const w = out.writer;
    // chunks from the converter are ours: once written, their buffers go back to it
    const write = async (chunks: readonly Uint8Array[]): Promise<void> => {
      for (const c of chunks) await w.write(c, () => ByteWriter.release(c));
    };
    if (isBerStream(head)) {
      // BER -> QEMU (and BER -> BER through QEMU: the canonical form)
      const q = berToQemu(await readRest(it, head));
      if (opts.to === "qemu") await write(q.chunks);
      else await write([qemuToBerBytes(joinChunks(q.chunks, q.bytes), { decode })]);
    } else {
      const vmdesc = await vmdescFirst(input);
      const o = { decode: { ...decode, ...(vmdesc !== undefined ? { vmdesc } : {}) } };
      const c = (conv = opts.to === "ber" ? new StreamBerConverter(o) : new StreamConverter(o));
      await write(c.push(head));
      for (let r = await it.next(); !r.done; r = await it.next()) await write(c.push(r.value));
      const end = c.end();
      // an incomplete input gives no complete-looking OUT: the .partial file is removed below
      if (end.report.incomplete) throw end.report.incomplete;
      await write(end.chunks);
      if ("opaqueSections" in end.report) {
        const opaque = end.report.opaqueSections;
        if (opaque.length > 0) process.stderr.write(`vmstream: note: sections carried as OpaqueState (payload bytes): ${opaque.join(", ")}\n`);
      } else notes(end.report);
    }
    await out.commit();
    return 0;
  } catch (e) {
    conv?.dispose();
    await out?.abort({ remove: true });
    process.stderr.write(`vmstream: ${userMessage(e)}\n`);
    return 1;
  }
}
