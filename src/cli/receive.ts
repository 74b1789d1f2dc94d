// `vmstream receive ENDPOINT [--out FILE] [--extract DIR] [--forward tcp:HOST:PORT] [--require-vmdesc] [--quiet]`:
// the destination of one live migration, decoding every byte as it arrives; --out records, --forward relays byte
// for byte (with backpressure), --extract writes RAM and disks. Exit 0 only after one complete migration; after a
// failed one nothing looks complete. Behaviour for users: README.md, "Live migration".
import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, rmSync } from "node:fs";
import { analyzeDecoderOptions } from "../analyze/report.js";
import { VmstreamError } from "../io/errors.js";
import { nodeInflate } from "../io/node.js";
import { type DestinationResult, MigrationDestination } from "../migration/destination.js";
import { formatEndpoint, type InputOpen, type OutputOpen, openInput, openOutput, parseEndpoint } from "../migration/transport.js";
import { writeExtraction } from "./streams.js";
import { ProgressBar, pagesText, rateText } from "./transfer.js";

export interface ReceiveOptions {
  readonly out?: string;
  readonly extract?: string;
  readonly forward?: string;
  readonly quiet: boolean;
  readonly requireVmdesc?: boolean;
}

const say = (line: string): void => {
  process.stderr.write(`vmstream: ${line}\n`);
};

function out(text: string): Promise<void> {
  return new Promise((ok, fail) => process.stdout.write(text, (e) => (e ? fail(e) : ok())));
}

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export async function receiveCommand(endpoint: string, o: ReceiveOptions): Promise<number> {
  // Everything that can be checked before a peer connects is checked first (usage errors: exit 2).
  const source = parseEndpoint(endpoint);
  const fwd = o.forward !== undefined ? parseEndpoint(o.forward) : undefined;
  if (fwd && fwd.kind !== "tcp") throw new Error(`--forward needs tcp:HOST:PORT, not ${o.forward}`);
  if (o.out === "-" || o.out === "") throw new Error("--out needs a file name");
  if (o.extract !== undefined) {
    if (existsSync(o.extract) && readdirSync(o.extract).length > 0) throw new Error(`--extract: ${o.extract} exists and is not empty`);
    if (existsSync(o.extract + ".partial")) throw new Error(`--extract: ${o.extract}.partial exists (left by another run?): remove it first`);
  }

  let record: OutputOpen | undefined;
  let input: InputOpen | undefined;
  let forward: OutputOpen | undefined;
  try {
    if (o.out !== undefined) record = await openOutput({ kind: "file", path: o.out }, { copy: false });
    input = await openInput(source, { onListening: (address) => say(`listening on ${address}`) });
    if (fwd) {
      // chunks read from a socket are fresh buffers that nothing modifies: no copy needed
      forward = await openOutput(fwd, { copy: false });
      relayReturnPath(forward, input);
    }
  } catch (e) {
    input?.close();
    await record?.abort({ remove: true });
    say(messageOf(e));
    return 1;
  }

  // the clock starts with the connection
  const bar = new ProgressBar("receiving", o.quiet);
  const dest = new MigrationDestination({
    ...analyzeDecoderOptions,
    inflate: nodeInflate,
    materialize: o.extract !== undefined ? { ram: true, block: true } : false,
    ...(o.requireVmdesc ? { requireVmdesc: true } : {}),
    onProgress: (p) => bar.update(p.bytes, p.phase),
  });
  const started = performance.now();
  let sourceError: unknown;
  let sinkError: VmstreamError | undefined;
  try {
    for await (const chunk of input.source) {
      // relay first, decode while the relayed bytes are on their way, then wait for the sinks to take them
      const waits: Promise<void>[] = [];
      if (forward) waits.push(forward.writer.write(chunk));
      if (record) waits.push(record.writer.write(chunk));
      dest.push(chunk);
      bar.update(dest.bytes, dest.status === "failed" ? "failed" : dest.phase);
      try {
        await Promise.all(waits);
      } catch (e) {
        sinkError = VmstreamError.wrap(e, {}, "IO");
        break;
      }
      // a plain destination stops reading at the first error (the source then sees the connection go); a
      // tap keeps relaying, so the destination behind it decides for itself
      if (dest.status === "failed" && !forward) break;
    }
  } catch (e) {
    sourceError = e;
  }
  const ms = performance.now() - started;
  const result: DestinationResult = sourceError !== undefined ? dest.abort(sourceError) : dest.end();
  bar.done();
  input.close();

  let ok = result.status === "complete" && !sinkError;
  const lines: string[] = [];
  // the forward target gets a clean end after the last byte unless the source broke off or a sink failed
  if (forward) {
    if (sourceError === undefined && !sinkError) {
      try {
        await forward.commit();
        lines.push(`forward: ${forward.writer.bytes} bytes to ${formatEndpoint(fwd!)}`);
      } catch (e) {
        sinkError = VmstreamError.wrap(e, {}, "IO");
        ok = false;
      }
    } else await forward.abort();
  }
  if (record) {
    if (ok) {
      try {
        await record.commit();
        lines.push(`out: ${record.writer.bytes} bytes in ${o.out}`);
      } catch (e) {
        sinkError = VmstreamError.wrap(e, {}, "IO");
        ok = false;
      }
    }
    if (!ok) {
      const kept = await record.abort();
      if (kept) say(`the ${record.writer.bytes} bytes received are in ${kept} (an incomplete migration)`);
    }
  }
  if (ok && o.extract !== undefined && result.decoded) {
    // written beside DIR and renamed at the end: a failed extraction leaves no complete-looking DIR
    const partial = o.extract + ".partial";
    try {
      mkdirSync(partial, { recursive: true });
      const files = writeExtraction(result.decoded, dest.kernels, partial);
      if (existsSync(o.extract)) rmdirSync(o.extract); // checked empty at the start; fails if no longer
      renameSync(partial, o.extract);
      for (const f of files) lines.push(`extract: ${o.extract}/${f}`);
    } catch (e) {
      rmSync(partial, { recursive: true, force: true });
      sinkError = VmstreamError.wrap(e, {}, "IO");
      ok = false;
    }
  }

  const s = result.summary;
  const what = `${rateText(result.bytes, ms)}, ${s.sections} sections, ${s.devices} devices, ${pagesText(result.progress.pages)}, ${s.vmdesc ? "vmdesc" : "no vmdesc"}`;
  result.dispose();
  if (!ok) {
    const e = sinkError ?? result.error;
    say(`migration failed: ${e ? e.message : "incomplete"}`);
    say(`received ${what}`);
    return 1;
  }
  if (!o.quiet) await out([`complete: ${what}`, ...lines].join("\n") + "\n");
  return 0;
}

/**
 * Bytes the forward target sends back (QEMU's return path, used by postcopy and the return-path capability)
 * go to the source unchanged; best effort, the forward direction decides the verdict.
 */
function relayReturnPath(forward: OutputOpen, input: InputOpen): void {
  const back = forward.socket;
  const to = input.socket;
  if (!back) return;
  back.on("data", (d: Buffer) => {
    if (to && !to.destroyed && to.writable) to.write(d);
  });
  back.on("error", () => {
    /* reported by the forward writer */
  });
  to?.on("error", () => {
    /* reported by the input side */
  });
}
