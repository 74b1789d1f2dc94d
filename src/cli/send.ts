// `vmstream send FILE DEST [--bandwidth RATE] [--multifd-channels N [--multifd-compression C]] [--quiet]`: stream
// a migration file (plain or gzip, or - for stdin) to DEST (tcp:HOST:PORT, a file, or - for stdout) at up to RATE
// bytes/s, checking it as it goes: each piece is decoded before it is sent, so a broken input stops the transfer
// at the broken record (the destination sees the stream break off) and the exit code is 1. After the last byte
// of a complete stream the connection is ended cleanly (exit 0). With --multifd-channels the pages go over N
// more connections as QEMU's multifd source sends them (MultifdSplit).
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { analyzeDecoderOptions } from "../analyze/report.js";
import { MultifdJoin } from "../convert/multifd-join.js";
import { MultifdSplit } from "../convert/multifd-split.js";
import { nodeStreamCodecs } from "../io/codecs-node.js";
import { VmstreamError } from "../io/errors.js";
import { chunksOf, isGzip, nodeInflate, readHead } from "../io/node.js";
import { MultifdConnections } from "../migration/multifd-out.js";
import { type OutputOpen, openOutput, parseEndpoint } from "../migration/transport.js";
import type { DecoderEvent } from "../savevm/types.js";
import { incompleteError } from "../savevm/verdict.js";
import { readVmdescTrailer } from "../sections/node.js";
import type { MultifdCompression } from "../sections/ram/multifd.js";
import { StreamDecoder } from "../sections/stream.js";
import { userMessage } from "./messages.js";
import { ProgressBar, rateText } from "./transfer.js";

export interface SendOptions {
  /** Bytes per second (undefined: as fast as the destination takes them). */
  readonly bandwidth?: number;
  readonly quiet: boolean;
  /** Send as a multifd migration with this many channels (DEST must be tcp). */
  readonly multifdChannels?: number;
  readonly multifdCompression?: MultifdCompression;
}

const say = (line: string): void => {
  process.stderr.write(`vmstream: ${line}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((ok) => setTimeout(ok, ms));

export async function sendCommand(file: string, destination: string, o: SendOptions): Promise<number> {
  const dest = parseEndpoint(destination);
  // a summary on stdout would mix with the stream when the stream goes to stdout
  const report = dest.kind === "stdio" ? say : (line: string) => process.stdout.write(line + "\n");
  // the command's EPIPE handler exits with process.exitCode: a reader that goes away cuts the stream short
  if (dest.kind === "stdio") process.exitCode = 1;

  let total: number | undefined;
  let vmdesc: string | undefined;
  if (file !== "-" && isDirectory(file)) {
    if (dest.kind !== "tcp") {
      say(`replaying the connections in ${file} needs a tcp DEST, not ${destination}`);
      return 2;
    }
    if (o.multifdChannels !== undefined) say("--multifd-channels is ignored: the recorded channels are replayed as they are");
    return replayConnections(file, dest, destination, o, report);
  }
  if (file !== "-") {
    try {
      const st = statSync(file);
      // a plain regular file: its size for the progress bar, and its vmdesc first so device sections are
      // checked as they go by instead of being buffered to the end
      if (st.isFile() && !isGzip((await readHead(file, 2)).bytes)) {
        total = st.size;
        vmdesc = await readVmdescTrailer(file);
      }
    } catch (e) {
      say(userMessage(e));
      return 1;
    }
  }

  if (o.multifdChannels !== undefined) {
    if (dest.kind !== "tcp") {
      say(`--multifd-channels needs a tcp DEST, not ${destination}`);
      return 2;
    }
    return sendMultifd(file, dest, destination, o, { total, vmdesc, report });
  }

  let phase = "header";
  const decoder = new StreamDecoder({
    ...analyzeDecoderOptions,
    materialize: false,
    inflate: nodeInflate,
    ...(vmdesc !== undefined ? { vmdesc } : {}),
    onEvent: (e: DecoderEvent) => {
      if (e.type === "section") phase = `section ${e.section.idstr} (${e.section.type})`;
      else if (e.type === "eof") phase = "eof";
    },
  });
  const rate = o.bandwidth;
  // pieces small enough for a smooth cap (about 50 sleeps a second at most), large enough to be cheap
  const step = rate ? Math.max(4096, Math.min(1 << 20, Math.floor(rate / 50))) : 1 << 20;
  let output: OutputOpen;
  try {
    // the chunks come from fresh read buffers that nothing modifies: no copy needed; room for two pieces so
    // that the connection stays busy while the next piece is checked
    output = await openOutput(dest, { copy: false, highWaterMark: 2 * step });
  } catch (e) {
    decoder.dispose();
    say(userMessage(e));
    return 1;
  }

  const bar = new ProgressBar("sending", o.quiet, total);
  const started = performance.now();
  let sent = 0;
  try {
    for await (const chunk of chunksOf(file === "-" ? process.stdin : file)) {
      for (let at = 0; at < chunk.length; at += step) {
        const piece = chunk.subarray(at, Math.min(chunk.length, at + step));
        decoder.push(piece);
        await output.writer.write(piece);
        sent += piece.length;
        if (rate) {
          const ahead = (sent / rate) * 1000 - (performance.now() - started);
          if (ahead > 1) await sleep(ahead);
        }
        bar.update(sent, phase);
      }
    }
    const r = decoder.end();
    const incomplete = incompleteError(r);
    if (incomplete) throw incomplete;
    await output.commit();
    bar.done();
    const ms = performance.now() - started;
    r.dispose();
    if (!o.quiet) report(`sent: ${rateText(sent, ms)} to ${destination}, ${r.sectionCount} sections, ${r.devices.length} devices, complete`);
    return 0;
  } catch (e) {
    bar.done();
    decoder.dispose();
    const err = VmstreamError.wrap(e);
    const kept = await output.abort();
    say(`send failed: ${userMessage(err)}`);
    say(`the stream to ${destination} was cut off after ${sent} bytes${kept ? ` (kept in ${kept})` : ""}`);
    return 1;
  }
}

/**
 * The multifd path: the file's records replayed into a main stream and N channels (MultifdSplit), written to
 * their connections all at once; --bandwidth caps the bytes of all connections together.
 */
async function sendMultifd(
  file: string,
  dest: { host: string; port: number },
  destination: string,
  o: SendOptions,
  known: { total: number | undefined; vmdesc: string | undefined; report: (line: string) => void },
): Promise<number> {
  const channels = o.multifdChannels!;
  let split: MultifdSplit;
  let conns: MultifdConnections;
  try {
    split = new MultifdSplit({
      channels,
      compression: o.multifdCompression ?? "none",
      codecs: nodeStreamCodecs,
      decode: { ...analyzeDecoderOptions, inflate: nodeInflate, ...(known.vmdesc !== undefined ? { vmdesc: known.vmdesc } : {}) },
    });
    conns = await MultifdConnections.open(dest, channels, { highWaterMark: 1 << 20 });
  } catch (e) {
    say(userMessage(e));
    return 1;
  }
  const rate = o.bandwidth;
  const step = rate ? Math.max(4096, Math.min(1 << 20, Math.floor(rate / 50))) : 1 << 20;
  const bar = new ProgressBar("sending", o.quiet, known.total);
  const started = performance.now();
  let read = 0;
  try {
    for await (const chunk of chunksOf(file === "-" ? process.stdin : file)) {
      for (let at = 0; at < chunk.length; at += step) {
        const piece = chunk.subarray(at, Math.min(chunk.length, at + step));
        split.push(piece);
        read += piece.length;
        await conns.write(split.output());
        if (rate) {
          const ahead = (conns.bytes / rate) * 1000 - (performance.now() - started);
          if (ahead > 1) await sleep(ahead);
        }
        bar.update(read, "sending");
      }
    }
    const end = split.end();
    if (end.report.incomplete) throw end.report.incomplete;
    await conns.write({ main: end.chunks, channels: split.output().channels });
    await conns.end();
    bar.done();
    const ms = performance.now() - started;
    const r = end.report;
    if (!o.quiet) {
      known.report(`sent: ${rateText(conns.bytes, ms)} to ${destination}, ${r.sections} sections, ${r.devices} devices, complete`);
      known.report(
        `multifd: ${channels} channels${o.multifdCompression && o.multifdCompression !== "none" ? ` (${o.multifdCompression})` : ""}, ${r.channelPages} pages in ${r.packets} packets, ${r.syncPoints} sync points`,
      );
    }
    return 0;
  } catch (e) {
    bar.done();
    split.dispose();
    conns.abort();
    const err = VmstreamError.wrap(e);
    say(`send failed: ${userMessage(err)}`);
    say(`the migration to ${destination} was cut off after ${read} bytes of ${file}`);
    return 1;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * `send DIR DEST` for a folder `receive --raw` wrote: every connection replayed byte for byte (main.bin first,
 * then channel-N.bin), all at once, checked on the way by joining them (MultifdJoin) as a destination would.
 */
async function replayConnections(
  dir: string,
  dest: { host: string; port: number },
  destination: string,
  o: SendOptions,
  report: (line: string) => void,
): Promise<number> {
  let files: string[];
  try {
    const names = readdirSync(dir);
    if (!names.includes("main.bin")) throw new Error(`no main.bin in ${dir} (a folder written by receive --raw)`);
    const channels = names
      .map((n) => /^channel-(\d+)\.bin$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .sort((a, b) => Number(a[1]) - Number(b[1]))
      .map((m) => m[0]);
    files = ["main.bin", ...channels].map((n) => join(dir, n));
  } catch (e) {
    say(userMessage(e));
    return 1;
  }
  const join_ = new MultifdJoin({ codecs: nodeStreamCodecs, decode: { ...analyzeDecoderOptions, inflate: nodeInflate } });
  const inputs = files.slice(1).map(() => join_.channel());
  let conns: MultifdConnections;
  try {
    conns = await MultifdConnections.open(dest, files.length - 1, { highWaterMark: 1 << 20 });
  } catch (e) {
    join_.dispose();
    say(userMessage(e));
    return 1;
  }
  const total = files.reduce((n, f) => n + statSync(f).size, 0);
  const bar = new ProgressBar("replaying", o.quiet, total);
  const started = performance.now();
  const rate = o.bandwidth;
  try {
    const pump = async (i: number) => {
      const w = i === 0 ? conns.main : conns.channels[i - 1]!;
      for await (const chunk of chunksOf(files[i]!, { gunzip: false })) {
        if (i === 0) join_.pushMain(chunk);
        else inputs[i - 1]!.push(chunk);
        join_.output(); // only the check matters here
        await w.write(chunk);
        bar.update(conns.bytes, "replaying");
        if (rate) {
          const ahead = (conns.bytes / rate) * 1000 - (performance.now() - started);
          if (ahead > 1) await sleep(ahead);
        }
      }
      if (i > 0) inputs[i - 1]!.end();
    };
    await Promise.all(files.map((_, i) => pump(i)));
    const r = join_.end();
    if (r.report.incomplete) throw r.report.incomplete;
    await conns.end();
    bar.done();
    if (!o.quiet) {
      report(
        `replayed: ${rateText(conns.bytes, performance.now() - started)} to ${destination}, ${files.length} connections, ${r.report.sections} sections, ${r.report.devices} devices, complete`,
      );
      if (r.report.channels.length > 0)
        report(`multifd: ${r.report.channels.length} channels, ${r.report.channelPages} pages, ${r.report.syncPoints} sync points`);
    }
    return 0;
  } catch (e) {
    bar.done();
    join_.dispose();
    conns.abort();
    say(`send failed: ${userMessage(e)}`);
    say(`the replay to ${destination} was cut off after ${conns.bytes} bytes`);
    return 1;
  }
}
