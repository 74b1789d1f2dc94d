#!/usr/bin/env node
// The `vmstream` command. Data goes to stdout, diagnostics to stderr.
import { parseArgs } from "node:util";
import { runDemo } from "./demo.js";

const HELP = `vmstream — QEMU 7.2 migration streams with WebAssembly kernels

usage: vmstream <command> [options]

commands:
  demo [--ram-mib N] [--backend auto|wasm-simd|wasm-scalar|js|all]
        Built-in demo: a guest RAM image (half zero pages, some nearly zero, some random) is sent
        through QEMU's RAM record format and back, in memory: zero-page detection and records in
        one kernel call, decode into a fresh block, then a second "round" finds the dirtied pages
        by comparing against a shadow copy and sends them as XBZRLE deltas. Checks that the
        destination equals the source (sha256) and prints pages by kind, bytes and speed.
  help  This text.

Streams from real QEMU (analyze, dump, extract, check, convert), live migration (send,
receive, simulate) are coming; see the README.
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(HELP);
      return 0;
    case "demo": {
      const { values } = parseArgs({
        args: rest,
        options: {
          "ram-mib": { type: "string", default: "256" },
          backend: { type: "string", default: "all" },
          help: { type: "boolean", short: "h" },
        },
      });
      if (values.help) {
        process.stdout.write(HELP);
        return 0;
      }
      const mib = Number(values["ram-mib"]);
      if (!Number.isInteger(mib) || mib < 1 || mib > 2048) throw new Error(`--ram-mib must be 1..2048, not ${values["ram-mib"]}`);
      return runDemo({ ramMiB: mib, backend: values.backend! });
    }
    default:
      process.stderr.write(`vmstream: unknown command '${cmd}'\n\n${HELP}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`vmstream: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
