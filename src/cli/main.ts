#!/usr/bin/env node
// The `vmstream` command. Data goes to stdout, diagnostics to stderr.
import { type ParseArgsConfig, parseArgs } from "node:util";
import { convertCommand } from "./convert.js";
import { runDemo } from "./demo.js";
import { receiveCommand } from "./receive.js";
import { sendCommand } from "./send.js";
import { simulateCommand } from "./simulate.js";
import { analyzeCommand, checkCommand, dumpCommand, extractCommand } from "./streams.js";
import { channelCount, compressionName, parseRate, parseSize } from "./transfer.js";

const HELP = `vmstream — QEMU 7.2 migration streams with WebAssembly kernels

usage: vmstream <command> [options]

FILE is a migration stream (plain or gzip-compressed: detected by its magic bytes), or - for stdin.

Every command that reads a stream gives check's verdict: exit 0 for a complete stream, 1 for a broken or
incomplete one (the same message, with the byte offset, in every command; nothing complete-looking is written
for it), 2 for a usage error. Names and strings from the stream are printed with control characters escaped.

commands:
  analyze FILE [--dump state|desc] [--memory [--max-memory SIZE]]
        The JSON QEMU's scripts/analyze-migration.py prints (same keys, "0x%0Nx" integers, "(-n)" for
        negatives, blobs as hex), and more where the script fails: block migration, XBZRLE, COMPRESS
        pages, configuration subsections, commands, streams without a vmdesc (registered x86
        descriptions), instance ids >= 2^31. --dump desc prints the stream's vmdesc instead.
        --memory adds RAM contents by page ("Filled with 0xNN" or the page's bytes in hex), from the
        RAM the stream leaves behind (XBZRLE applied, re-sent zero pages zeroed). --max-memory: see extract.
  dump FILE
        The pretty trace of every device section, each after "# <idstr> instance <n> version <v>",
        e.g. "i8259.last_irr = (uint8) 0x1", and one summary line per iterative section (ram, block,
        spapr/htab, dirty-bitmap).
  extract FILE DIR [--max-memory SIZE]
        RAM blocks as sparse files (DIR/ram/<block>.bin), block-migration disks as images
        (DIR/disk/<device>.img), DIR/desc.json (vmdesc) and DIR/state.json (analyze). Nothing is written
        outside DIR, whatever DIR contains: names are sanitised, every file is created new (an old one of
        the same name is replaced, not written over), and a symbolic or hard link found inside DIR at any
        level is refused with an error naming it. DIR itself may be a link.
        Sizes the stream declares cost nothing until data arrives: memory holds the RAM pages and
        disk chunks the stream wrote, at most SIZE bytes of them (default 8G; K, M, G, T binary
        units), else the command fails naming the offset, section and block (docs/memory.md).
  check FILE
        Validates the whole stream. Prints one line, "OK: ..." (exit 0) or "BROKEN: <what, where>"
        (exit 1): a truncated or broken migration is reported as broken, never as a success.
  convert IN OUT [--to qemu|ber]
        Decodes IN and writes it again through the model to OUT (- for stdout): the configuration from
        its fields, device sections by their descriptions (wire visitor), RAM/block/htab sections record
        by record, the vmdesc from the device walks (the stream's own text where the walks cannot
        reproduce it). --to ber writes the BER form (docs/vmstate.asn1: VMStream.Stream); a BER IN is
        recognised by its first tag and written back as QEMU bytes. QEMU -> QEMU and QEMU -> BER ->
        QEMU are byte-identical for streams QEMU wrote.
  demo [--ram-mib N] [--backend auto|wasm-simd|wasm-scalar|js|all]
        A guest RAM image sent through QEMU's RAM record format and back, in memory, on the kernels:
        zero pages and records in one call, then dirty pages found against a shadow copy and sent as
        XBZRLE deltas; checks that the destination equals the source (sha256).
  simulate [--ram-mib N] [--dirty-rate P] [--working-set-mib N] [--locality F] [--write-bytes N]
           [--bandwidth MiB/s] [--downtime-ms N] [--max-rounds N] [--xbzrle-cache-mib N] [--seed N] [--csv]
           [--disk-mib N [--disk-write-rate W] [--zero-blocks]]
        A precopy live migration of a simulated guest on a virtual clock (deterministic from the seed):
        the guest writes P pages/s (N bytes per write) in a working set, a fraction F of them in a hot
        set; each round sends dirty pages up to the bandwidth; the source switches over when the pending
        pages fit the downtime target or after the max rounds. Prints the rounds as a table (or CSV)
        and a summary; the stream is decoded and the destination RAM checked against the source's.
        --disk-mib adds an N MiB disk migrated by block migration (a bulk pass in 1 MiB chunks, then
        the chunks the guest wrote again: W writes of 4 KiB per second); --zero-blocks sends all-zero
        chunks as ZERO_BLOCK records. The table gains disk_chunks, disk_zero, disk_dirty columns and the
        destination disk is checked too.
  receive ENDPOINT [--out FILE] [--extract DIR [--max-memory SIZE]] [--forward tcp:HOST:PORT] [--raw DIR] [--multifd-channels N] [--require-vmdesc]
          [--idle-timeout SECONDS] [--quiet]
        The destination of one live migration. ENDPOINT tcp:HOST:PORT listens (HOST defaults to
        127.0.0.1; port 0 picks a free port) and accepts one connection; once bound it prints
        "vmstream: listening on tcp:127.0.0.1:<port>" on stderr. ENDPOINT may also be a file or - (stdin).
        Every record is decoded as it arrives. --out records the raw bytes (as FILE.partial, renamed to
        FILE only after a complete migration); --forward relays every byte to another destination (a QEMU
        started with -incoming tcp:..., or another receive): a byte-exact tap whose target's pace slows the
        reader, and whose return path goes back to the source; --extract writes RAM and disks as extract
        does (--max-memory as there), after a complete migration only. Exits 0 after one complete migration (EOF, and the vmdesc
        when one follows; --require-vmdesc insists on it) with a summary on stdout (bytes, sections, RAM
        pages by kind, duration, MB/s); exits 1 after a broken, truncated or interrupted one, with the byte
        offset and section on stderr. A progress line is shown when stderr is a terminal; --quiet shows
        neither it nor the summary.
        --idle-timeout SECONDS (default 60; 0: none): once a peer has connected, the migration fails
        (exit 1) when nothing arrives for that long on any of its connections: a peer that connects and
        sends nothing, a source or a channel that stalls half-way. It restarts with every byte, so a slow
        migration is never cut; waiting for the first peer is not limited (stdin: counted from the start).
        While a migration is active, another connection (a second main stream, or neither a migration nor
        a channel) is refused with a line on stderr naming its address; the migration goes on.
        multifd: a tcp ENDPOINT also takes the channels of a QEMU migrating with the multifd capability
        (connections told apart by their first bytes; anything else is refused). Their pages are joined
        with the main stream, sync point by sync point, into one ordinary stream: what --out records,
        --extract writes and the verdict is about; a channel that breaks fails the migration (channel and
        byte offset). --multifd-channels N insists on N channels (default: those that connect); --forward
        relays every connection (main first); --raw DIR keeps each connection's bytes as received
        (DIR/main.bin, DIR/channel-<id>.bin; DIR.partial after a failed migration).
  send FILE DEST [--bandwidth RATE] [--multifd-channels N [--multifd-compression none|zlib|zstd]] [--quiet]
        Streams FILE (plain or gzip, or - for stdin) to DEST: tcp:HOST:PORT (connects), a file (written as
        DEST.partial, renamed when complete) or - (stdout). RATE caps bytes per second: 100M, 1G, 512K
        (binary units), or a plain number. Each piece is checked before it goes out: a broken input stops
        the transfer (exit 1); a complete stream ends the connection cleanly after its last byte (exit 0).
        A progress line on a terminal and a summary as for receive (on stderr when DEST is -; --quiet:
        neither). Piped:  vmstream send guest.mig - | vmstream receive - --extract out/
        --multifd-channels N (DEST tcp:HOST:PORT, a QEMU with the multifd capability and the same
        multifd-channels): the pages go over N more connections in packets, as QEMU's multifd source sends
        them, zlib- or zstd-compressed with --multifd-compression; every other record stays on the main
        connection. RATE caps all connections together.
        FILE may be a folder receive --raw wrote: every connection is replayed byte for byte (main.bin
        first, then the channels), checked on the way by joining them.
  help  This text.
`;

type Handler = (args: string[]) => Promise<number>;

/** --idle-timeout SECONDS (fractions allowed, 0 for none) in milliseconds. */
function idleTimeout(text: string): number {
  const s = Number(text);
  if (text.trim() === "" || !Number.isFinite(s) || s < 0 || s > 86_400) throw new Error(`--idle-timeout must be 0..86400 seconds, not ${text}`);
  return Math.round(s * 1000);
}

/** `--max-memory SIZE`, the cap on what a command materialises (limits.materializedBytes), when given. */
function maxMemory(values: Record<string, string | boolean | undefined>): { maxMemory?: number } {
  const v = values["max-memory"];
  return typeof v === "string" ? { maxMemory: parseSize("--max-memory", v) } : {};
}

function positionals(args: string[], n: number, usage: string, options: NonNullable<ParseArgsConfig["options"]> = {}) {
  const parsed = parseArgs({ args, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals: true });
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) return undefined;
  if (parsed.positionals.length !== n) throw new Error(`usage: vmstream ${usage}`);
  return { positionals: parsed.positionals, values };
}

const commands: Record<string, Handler> = {
  async analyze(args) {
    const p = positionals(args, 1, "analyze FILE [--dump state|desc] [--memory [--max-memory SIZE]]", {
      dump: { type: "string", default: "state" },
      memory: { type: "boolean", default: false },
      "max-memory": { type: "string" },
    });
    if (!p) return help();
    const dump = p.values.dump as string;
    if (dump !== "state" && dump !== "desc") throw new Error(`--dump must be state or desc, not ${dump}`);
    return analyzeCommand(p.positionals[0]!, { dump, memory: p.values.memory === true, ...maxMemory(p.values) });
  },
  async dump(args) {
    const p = positionals(args, 1, "dump FILE");
    return p ? dumpCommand(p.positionals[0]!) : help();
  },
  async extract(args) {
    const p = positionals(args, 2, "extract FILE DIR [--max-memory SIZE]", { "max-memory": { type: "string" } });
    return p ? extractCommand(p.positionals[0]!, p.positionals[1]!, maxMemory(p.values)) : help();
  },
  async check(args) {
    const p = positionals(args, 1, "check FILE");
    return p ? checkCommand(p.positionals[0]!) : help();
  },
  async convert(args) {
    const p = positionals(args, 2, "convert IN OUT [--to qemu|ber]", { to: { type: "string", default: "qemu" } });
    return p ? convertCommand(p.positionals[0]!, p.positionals[1]!, { to: p.values.to as string }) : help();
  },
  async receive(args) {
    const p = positionals(
      args,
      1,
      "receive ENDPOINT [--out FILE] [--extract DIR [--max-memory SIZE]] [--forward tcp:HOST:PORT] [--raw DIR] [--multifd-channels N] [--require-vmdesc] [--idle-timeout SECONDS] [--quiet]",
      {
        out: { type: "string" },
        extract: { type: "string" },
        "max-memory": { type: "string" },
        forward: { type: "string" },
        raw: { type: "string" },
        "multifd-channels": { type: "string" },
        "require-vmdesc": { type: "boolean", default: false },
        "idle-timeout": { type: "string", default: "60" },
        quiet: { type: "boolean", short: "q", default: false },
      },
    );
    if (!p) return help();
    const v = p.values;
    return receiveCommand(p.positionals[0]!, {
      ...(typeof v.out === "string" ? { out: v.out } : {}),
      ...(typeof v.extract === "string" ? { extract: v.extract } : {}),
      ...maxMemory(v),
      ...(typeof v.forward === "string" ? { forward: v.forward } : {}),
      ...(typeof v.raw === "string" ? { raw: v.raw } : {}),
      ...(typeof v["multifd-channels"] === "string" ? { multifdChannels: channelCount(v["multifd-channels"]) } : {}),
      requireVmdesc: v["require-vmdesc"] === true,
      idleTimeoutMs: idleTimeout(v["idle-timeout"] as string),
      quiet: v.quiet === true,
    });
  },
  async send(args) {
    const p = positionals(args, 2, "send FILE DEST [--bandwidth RATE] [--multifd-channels N [--multifd-compression none|zlib|zstd]] [--quiet]", {
      bandwidth: { type: "string" },
      "multifd-channels": { type: "string" },
      "multifd-compression": { type: "string" },
      quiet: { type: "boolean", short: "q", default: false },
    });
    if (!p) return help();
    const bw = p.values.bandwidth;
    const mc = p.values["multifd-channels"];
    const comp = p.values["multifd-compression"];
    if (typeof comp === "string" && typeof mc !== "string") throw new Error("--multifd-compression needs --multifd-channels");
    return sendCommand(p.positionals[0]!, p.positionals[1]!, {
      ...(typeof bw === "string" ? { bandwidth: parseRate(bw) } : {}),
      ...(typeof mc === "string" ? { multifdChannels: channelCount(mc) } : {}),
      ...(typeof comp === "string" ? { multifdCompression: compressionName(comp) } : {}),
      quiet: p.values.quiet === true,
    });
  },
  async demo(args) {
    const { values } = parseArgs({
      args,
      options: {
        "ram-mib": { type: "string", default: "256" },
        backend: { type: "string", default: "all" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) return help();
    const mib = Number(values["ram-mib"]);
    if (!Number.isInteger(mib) || mib < 1 || mib > 2048) throw new Error(`--ram-mib must be 1..2048, not ${values["ram-mib"]}`);
    return runDemo({ ramMiB: mib, backend: values.backend! });
  },
  async simulate(args) {
    const { values } = parseArgs({
      args,
      options: {
        "ram-mib": { type: "string", default: "64" },
        "dirty-rate": { type: "string", default: "2000" },
        "working-set-mib": { type: "string" },
        locality: { type: "string", default: "0.9" },
        "write-bytes": { type: "string", default: "16" },
        bandwidth: { type: "string", default: "128" },
        "downtime-ms": { type: "string", default: "300" },
        "max-rounds": { type: "string", default: "30" },
        "xbzrle-cache-mib": { type: "string" },
        seed: { type: "string", default: "1" },
        csv: { type: "boolean", default: false },
        "disk-mib": { type: "string" },
        "disk-write-rate": { type: "string" },
        "zero-blocks": { type: "boolean", default: false },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) return help();
    const num = (name: string, v: string | undefined, min: number, max: number, int = false): number => {
      const n = Number(v);
      if (v === undefined || v === "" || !Number.isFinite(n) || n < min || n > max || (int && !Number.isInteger(n)))
        throw new Error(`--${name} must be ${min}..${max}, not ${v}`);
      return n;
    };
    const ram = num("ram-mib", values["ram-mib"], 1, 2048, true);
    if (values["disk-mib"] === undefined && (values["disk-write-rate"] !== undefined || values["zero-blocks"]))
      throw new Error("--disk-write-rate and --zero-blocks need --disk-mib");
    return simulateCommand({
      ramMiB: ram,
      dirtyRate: num("dirty-rate", values["dirty-rate"], 0, 1e9),
      ...(values["working-set-mib"] !== undefined ? { workingSetMiB: num("working-set-mib", values["working-set-mib"], 0, ram) } : {}),
      locality: num("locality", values.locality, 0, 1),
      writeBytes: num("write-bytes", values["write-bytes"], 4, 65536, true),
      bandwidthMiB: num("bandwidth", values.bandwidth, 0.001, 1e6),
      downtimeMs: num("downtime-ms", values["downtime-ms"], 0, 1e7),
      maxRounds: num("max-rounds", values["max-rounds"], 1, 100000, true),
      ...(values["xbzrle-cache-mib"] !== undefined ? { xbzrleCacheMiB: num("xbzrle-cache-mib", values["xbzrle-cache-mib"], 1, 4096) } : {}),
      seed: num("seed", values.seed, 0, 2 ** 32 - 1, true),
      csv: values.csv === true,
      ...(values["disk-mib"] !== undefined
        ? {
            diskMiB: num("disk-mib", values["disk-mib"], 1, 65536, true),
            diskWriteRate: num("disk-write-rate", values["disk-write-rate"] ?? "0", 0, 1e7),
            zeroBlocks: values["zero-blocks"] === true,
          }
        : {}),
    });
  },
};

async function help(): Promise<number> {
  process.stdout.write(HELP);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") return help();
  const handler = commands[cmd];
  if (!handler) {
    process.stderr.write(`vmstream: unknown command '${cmd}'\n\n${HELP}`);
    return 2;
  }
  return handler(rest);
}

// A reader that stops early (`| head`) is not an error of ours.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw e;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`vmstream: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);
