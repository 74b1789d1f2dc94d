// `npm run fuzz -- [--executions N] [--seconds S] [--target NAME]... [--seed N] [--timeout MS] [--memory MB] [--out DIR]`:
// fuzz the library's input paths (tests/fuzz/targets.ts) and print executions, rate and findings; exit 1 when
// something was found. Defaults: 1,000,000 executions over every target, seed 1, findings saved to
// tests/fuzz/regressions/. docs/fuzzing.md.
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { fuzz, REGRESSIONS, TARGET_NAMES } from "./fuzz.js";
import { buildSeeds } from "./seeds.js";

const { values } = parseArgs({
  options: {
    executions: { type: "string" },
    seconds: { type: "string" },
    target: { type: "string", multiple: true },
    seed: { type: "string", default: "1" },
    timeout: { type: "string", default: "5000" },
    memory: { type: "string", default: "1024" },
    out: { type: "string", default: fileURLToPath(REGRESSIONS) },
  },
});
const targets = values.target ?? [...TARGET_NAMES];
for (const t of targets) if (!(TARGET_NAMES as readonly string[]).includes(t)) throw new Error(`unknown target ${t} (targets: ${TARGET_NAMES.join(", ")})`);
const seconds = values.seconds !== undefined ? Number(values.seconds) : undefined;
const executions = values.executions !== undefined ? Number(values.executions) : seconds === undefined ? 1_000_000 : undefined;

const t0 = Date.now();
const seeds = buildSeeds();
const seedBytes = [...seeds.qemu, ...seeds.ber].reduce((n, s) => n + s.length, 0);
console.log(`seeds: ${seeds.qemu.length} QEMU, ${seeds.ber.length} BER (${seedBytes} bytes), built in ${Date.now() - t0} ms`);
console.log(
  `targets: ${targets.join(", ")}; ${executions !== undefined ? `${executions} executions` : ""}${seconds !== undefined ? ` at most ${seconds} s` : ""}; seed ${values.seed}`,
);
const report = await fuzz({
  targets,
  seed: Number(values.seed),
  ...(executions !== undefined ? { executions } : {}),
  ...(seconds !== undefined ? { seconds } : {}),
  timeoutMs: Number(values.timeout),
  memoryMb: Number(values.memory),
  out: values.out,
  seeds,
  log: (line) => console.log(line),
});
const rate = report.executions / report.seconds;
console.log(`\n${report.executions} executions in ${report.seconds.toFixed(1)} s (${rate.toFixed(0)}/s), ${report.restarts} worker restarts`);
for (const [t, n] of Object.entries(report.perTarget)) console.log(`  ${t}: ${n}`);
if (report.muted.length > 0) console.log(`muted generators: ${report.muted.join(", ")}`);
console.log(`${report.findings.length} distinct findings`);
for (const f of report.findings)
  console.log(`  ${f.target} ${f.kind} from ${f.origin} x${f.count}: ${f.message.split("\n")[0]}${f.file ? `\n    ${f.file}` : ""}`);
process.exitCode = report.findings.length > 0 ? 1 : 0;
