// `vmstream receive ENDPOINT [--out FILE] [--extract DIR] [--forward tcp:HOST:PORT] [--require-vmdesc] [--quiet]`:
// the destination of one live migration, decoding every byte as it arrives; --out records, --forward relays byte
// for byte (with backpressure), --extract writes RAM and disks. Exit 0 only after one complete migration; after a
// failed one nothing looks complete. Behaviour for users: README.md, "Live migration".
import { createWriteStream, existsSync, lstatSync, readdirSync, renameSync, rmdirSync, rmSync } from "node:fs";
import { analyzeDecoderOptions } from "../analyze/report.js";
import { nodeStreamCodecs } from "../io/codecs-node.js";
import { VmstreamError } from "../io/errors.js";
import { chunksOf, nodeInflate } from "../io/node.js";
import { OutputDir } from "../io/output-files.js";
import { ByteWriter } from "../io/writer.js";
import { type DestinationResult, MigrationDestination } from "../migration/destination.js";
import { IncomingMigration } from "../migration/incoming.js";
import { formatEndpoint, type InputOpen, type OutputOpen, openInput, openOutput, parseEndpoint, StreamWriter } from "../migration/transport.js";
import type { MultifdCompression } from "../sections/ram/multifd.js";
import { userMessage } from "./messages.js";
import { materializedLimit, writeExtraction } from "./streams.js";
import { ProgressBar, pagesText, rateText } from "./transfer.js";

export interface ReceiveOptions {
  readonly out?: string;
  readonly extract?: string;
  /** --max-memory: the cap on what --extract materialises (limits.materializedBytes). */
  readonly maxMemory?: number;
  readonly forward?: string;
  readonly quiet: boolean;
  readonly requireVmdesc?: boolean;
  /** Keep every connection's bytes as received in DIR (main.bin, channel-N.bin). */
  readonly raw?: string;
  /** The multifd channels to expect (default: those that connect). */
  readonly multifdChannels?: number;
  readonly multifdCompression?: MultifdCompression;
  /** Fail when nothing arrives for this long once a peer connected (stdin: from the start); 0: no limit. */
  readonly idleTimeoutMs: number;
}

const say = (line: string): void => {
  process.stderr.write(`vmstream: ${line}\n`);
};

function out(text: string): Promise<void> {
  return new Promise((ok, fail) => process.stdout.write(text, (e) => (e ? fail(e) : ok())));
}

/** Something is at `path`, a dangling link included. */
function taken(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

export async function receiveCommand(endpoint: string, o: ReceiveOptions): Promise<number> {
  // Everything that can be checked before a peer connects is checked first (usage errors: exit 2).
  const source = parseEndpoint(endpoint);
  const fwd = o.forward !== undefined ? parseEndpoint(o.forward) : undefined;
  if (fwd && fwd.kind !== "tcp") throw new Error(`--forward needs tcp:HOST:PORT, not ${o.forward}`);
  if (o.out === "-" || o.out === "") throw new Error("--out needs a file name");
  for (const [flag, dir] of [
    ["--extract", o.extract],
    ["--raw", o.raw],
  ] as const) {
    if (dir === undefined) continue;
    if (existsSync(dir) && readdirSync(dir).length > 0) throw new Error(`${flag}: ${dir} exists and is not empty`);
    if (taken(dir + ".partial")) throw new Error(`${flag}: ${dir}.partial exists (left by another run?): remove it first`);
  }
  if ((o.raw !== undefined || o.multifdChannels !== undefined) && source.kind !== "tcp") throw new Error("--raw and --multifd-channels need a tcp ENDPOINT");

  let record: OutputOpen | undefined;
  let input: InputOpen | undefined;
  let forward: OutputOpen | undefined;
  let incoming: IncomingMigration | undefined;
  let raw: RawCapture | undefined;
  try {
    if (o.raw !== undefined) raw = new RawCapture(o.raw);
    if (o.out !== undefined) record = await openOutput({ kind: "file", path: o.out }, { copy: false });
    if (source.kind === "tcp") {
      // one listener for the main stream and any multifd channels; --forward relays each connection
      const inc = await IncomingMigration.listen(source, {
        decode: { inflate: nodeInflate },
        codecs: nodeStreamCodecs,
        ...(fwd?.kind === "tcp" ? { forward: fwd } : {}),
        ...(raw ? { raw: raw.open.bind(raw) } : {}),
        ...(o.multifdChannels !== undefined ? { channels: o.multifdChannels } : {}),
        ...(o.multifdCompression !== undefined ? { compression: o.multifdCompression } : {}),
        idleTimeoutMs: o.idleTimeoutMs,
        say,
      });
      incoming = inc;
      say(`listening on ${inc.address}`);
      input = { source: inc.source, close: () => inc.close() };
    } else {
      // a file or stdin is read as the other commands read it (gunzipped when it starts with the gzip magic)
      const opened = await openInput(source, { onListening: (address) => say(`listening on ${address}`), idleTimeoutMs: o.idleTimeoutMs });
      input = { ...opened, source: chunksOf(opened.source) };
    }
    if (fwd && !incoming) {
      // chunks read from a socket are fresh buffers that nothing modifies: no copy needed
      forward = await openOutput(fwd, { copy: false });
      relayReturnPath(forward, input);
    }
  } catch (e) {
    input?.close();
    await record?.abort({ remove: true });
    raw?.abort(false);
    say(userMessage(e));
    return 1;
  }

  // the clock starts with the connection
  const bar = new ProgressBar("receiving", o.quiet);
  const dest = new MigrationDestination({
    ...analyzeDecoderOptions,
    inflate: nodeInflate,
    materialize: o.extract !== undefined ? { ram: true, block: true } : false,
    ...materializedLimit(o.maxMemory),
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
      // a joined multifd stream's chunks are the join's buffers: given back once used, so they are reused warm
      if (record) waits.push(record.writer.write(chunk, () => ByteWriter.release(chunk)));
      dest.push(chunk);
      if (!record) ByteWriter.release(chunk);
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
  // an incoming migration's sinks (raw files, forward connections) finish first: close() would cut them off
  if (!incoming) input.close();

  let ok = result.status === "complete" && !sinkError;
  const lines: string[] = [];
  // the forward target gets a clean end after the last byte unless the source broke off or a sink failed
  if (incoming && (fwd || raw) && sourceError === undefined && !sinkError) {
    try {
      await incoming.finishSinks();
      if (fwd) lines.push(`forward: ${incoming.forwardBytes} bytes to ${formatEndpoint(fwd)}`);
    } catch (e) {
      sinkError = VmstreamError.wrap(e, {}, "IO");
      ok = false;
    }
  }
  incoming?.close();
  const mf = incoming?.multifd;
  if (mf && mf.channels.length > 0) {
    const per = mf.channels.map((c) => `${c.channel}: ${c.pages} pages`).join(", ");
    lines.push(`multifd: ${mf.channels.length} channels, ${mf.channelPages} pages (${per}), ${mf.syncPoints} sync points`);
  }
  if (raw) {
    try {
      const kept = await raw.finish(ok);
      if (ok) lines.push(`raw: ${kept}`);
      else if (kept) say(`the connections' bytes are in ${kept} (an incomplete migration)`);
    } catch (e) {
      sinkError = VmstreamError.wrap(e, {}, "IO");
      ok = false;
    }
  }
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
    let folder: OutputDir | undefined;
    try {
      folder = OutputDir.open(partial, { fresh: true });
      const files = writeExtraction(result.decoded, dest.kernels, folder);
      folder.close();
      folder = undefined;
      if (existsSync(o.extract)) rmdirSync(o.extract); // checked empty at the start; fails if no longer
      renameSync(partial, o.extract);
      for (const f of files) lines.push(`extract: ${o.extract}/${f}`);
    } catch (e) {
      const made = folder !== undefined;
      folder?.close();
      // only the folder this run made is removed (a name taken by something else is left alone)
      if (made) rmSync(partial, { recursive: true, force: true });
      sinkError = VmstreamError.wrap(e, {}, "IO");
      ok = false;
    }
  }

  const s = result.summary;
  const what = `${rateText(result.bytes, ms)}, ${s.sections} sections, ${s.devices} devices, ${pagesText(result.progress.pages)}, ${s.vmdesc ? "vmdesc" : "no vmdesc"}`;
  result.dispose();
  if (!ok) {
    // a source that fails on its own bytes (a corrupt gzip file) gives that verdict, as the other commands do
    const inputError = sourceError instanceof VmstreamError && sourceError.code !== "IO" ? sourceError : undefined;
    const e = sinkError ?? inputError ?? result.error;
    say(`migration failed: ${e ? userMessage(e) : "incomplete"}`);
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

/** --raw DIR: each connection's bytes as received, in DIR.partial until the migration completed. */
class RawCapture {
  private readonly partial: string;
  private readonly folder: OutputDir;
  private readonly writers: StreamWriter[] = [];

  constructor(private readonly dir: string) {
    this.partial = dir + ".partial";
    this.folder = OutputDir.open(this.partial, { fresh: true });
  }

  open(name: string): StreamWriter {
    // names are "main" or "channel-N"
    const fd = this.folder.create(`${name}.bin`);
    const w = new StreamWriter(createWriteStream("", { fd }), { copy: false, name: `${this.dir}/${name}.bin` });
    this.writers.push(w);
    return w;
  }

  /** Close the files; rename DIR.partial to DIR after a complete migration. Returns where the bytes are. */
  async finish(complete: boolean): Promise<string> {
    for (const w of this.writers) await w.end().catch(() => undefined);
    this.folder.close();
    if (!complete) return this.partial;
    for (const w of this.writers) if (w.error) throw w.error;
    if (existsSync(this.dir)) rmdirSync(this.dir);
    renameSync(this.partial, this.dir);
    return this.dir;
  }

  abort(keep: boolean): void {
    this.folder.close();
    if (!keep) rmSync(this.partial, { recursive: true, force: true });
  }
}
