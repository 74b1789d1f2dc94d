#!/usr/bin/env node
// v86 live migration vs v86's own stop-and-copy, measured in the same run (npm run bench:v86 [-- --runs N --json]).
// Each run boots a fresh source guest (vmstream's boot sector under SeaBIOS) with 90 % of RAM above 1 MiB filled
// with random bytes from the host, migrates it live to a destination process over TCP on 127.0.0.1, then does
// the same with save_state -> socket -> restore_state (examples/v86-demo.mjs does the work). Downtime: from the
// source's stop() to the destination reporting its guest running. Medians of the runs; min..max beside them.
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { median, root } from "./common.mjs";

const args = process.argv.slice(2);
const RUNS = Number(args[args.indexOf("--runs") + 1] || 3) || 3;
const JSON_OUT = args.includes("--json");
const SIZES = args.includes("--scan-only") ? [] : [32, 256];
const FILL = 0.9;

const results = [];
for (const mem of SIZES) {
  const runs = [];
  for (let i = 0; i < RUNS; i++) {
    const r = spawnSync(process.execPath, [join(root, "examples/v86-demo.mjs"), "--mem", String(mem), "--fill", String(FILL), "--json"], {
      encoding: "utf8",
      maxBuffer: 16 << 20,
    });
    if (r.status !== 0) {
      console.error(r.stderr || r.stdout);
      process.exit(r.status ?? 1);
    }
    const line = r.stdout.trim().split("\n").at(-1);
    const x = JSON.parse(line);
    if (x.live.rebooted || x.stopAndCopy.rebooted || !(x.live.destinationFirstCounter > x.live.sourceLastCounter)) {
      console.error(`run ${i} of ${mem} MiB: the destination did not continue the guest: ${line}`);
      process.exit(1);
    }
    runs.push(x);
    if (!JSON_OUT)
      process.stderr.write(
        `${mem} MiB run ${i + 1}/${RUNS}: live ${x.live.downtimeMs.toFixed(1)} ms, stop-and-copy ${x.stopAndCopy.downtimeMs.toFixed(1)} ms\n`,
      );
  }
  const pick = (f) => {
    const v = runs.map(f);
    return { median: median(v), min: Math.min(...v), max: Math.max(...v) };
  };
  results.push({
    memMiB: mem,
    fill: FILL,
    runs: RUNS,
    live: {
      downtimeMs: pick((x) => x.live.downtimeMs),
      totalMs: pick((x) => x.live.totalMs),
      rounds: pick((x) => x.live.rounds),
      bytes: pick((x) => x.live.bytes),
      destinationRestoreMs: pick((x) => x.live.destinationRestoreMs),
      stateBytes: pick((x) => x.live.stateBytes),
    },
    stopAndCopy: {
      downtimeMs: pick((x) => x.stopAndCopy.downtimeMs),
      saveMs: pick((x) => x.stopAndCopy.saveMs),
      destinationRestoreMs: pick((x) => x.stopAndCopy.destinationRestoreMs),
      bytes: pick((x) => x.stopAndCopy.bytes),
    },
    downtimeRatio: median(runs.map((x) => x.stopAndCopy.downtimeMs / x.live.downtimeMs)),
  });
}

// The adapter's choice, measured: one dirty-scan pass over a 256 MiB guest's RAM with the kernels on v86's own
// memory (the import-memory build: RAM and shadow compared in place) against a copy window (RAM copied in 4 MiB
// windows into the kernels' own memory, then compared with a shadow there), the guest stopped; medians of 7.
async function scanChoice(memMiB) {
  const { V86Machine } = await import(join(root, "dist/v86/index.js"));
  const { createKernels } = await import(join(root, "dist/index.js"));
  const m = await V86Machine.create({ memorySize: memMiB << 20 });
  try {
    await m.pause();
    const len = memMiB << 20;
    const pages = len / 4096;
    const k1 = m.kernels();
    const ram = m.ramBlock();
    const shadow1 = k1.alloc(len, 4096);
    const bits1 = k1.alloc(pages / 8 + 8, 8);
    k1.u8.copyWithin(shadow1, ram.ptr, ram.ptr + len);
    const k2 = createKernels();
    const WIN = 4 << 20;
    const win = k2.alloc(WIN, 4096);
    const shadow2 = k2.alloc(len, 4096);
    const bits2 = k2.alloc(pages / 8 + 8, 8);
    k2.u8.set(m.ramView(), shadow2);
    const time = (f) => {
      const v = [];
      for (let i = 0; i < 7; i++) {
        const t = performance.now();
        f();
        v.push(performance.now() - t);
      }
      return median(v);
    };
    const inPlace = time(() => k1.changedPages(ram.ptr, shadow1, pages, bits1, true, 4096));
    const copyWindow = time(() => {
      const view = m.ramView(); // rebuilt every pass: v86 may grow its memory
      for (let o = 0; o < len; o += WIN) {
        k2.u8.set(view.subarray(o, o + WIN), win);
        k2.changedPages(win, shadow2 + o, WIN / 4096, bits2 + o / 4096 / 8, true, 4096);
      }
    });
    return { memMiB, importMemoryMs: inPlace, copyWindowMs: copyWindow, ratio: copyWindow / inPlace };
  } finally {
    await m.destroy();
  }
}
const scan = await scanChoice(256);
if (!JSON_OUT)
  process.stderr.write(`scan pass over 256 MiB: import-memory ${scan.importMemoryMs.toFixed(1)} ms, copy window ${scan.copyWindowMs.toFixed(1)} ms\n`);

const out = { date: new Date().toISOString(), machine: { cpu: cpus()[0]?.model, cores: cpus().length, node: process.version }, results, scan };
mkdirSync(join(root, "bench/results"), { recursive: true });
if (SIZES.length > 0) writeFileSync(join(root, `bench/results/v86-${out.date.slice(0, 10)}.json`), JSON.stringify(out, null, 2) + "\n");
if (JSON_OUT) console.log(JSON.stringify(out));
else {
  const f = (s) => `${s.median.toFixed(1)} (${s.min.toFixed(1)}..${s.max.toFixed(1)})`;
  console.log("| guest | live downtime ms | live total ms | rounds | stop-and-copy downtime ms | save ms | restore ms | ratio |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of results) {
    console.log(
      `| ${r.memMiB} MiB, ${r.fill * 100}% used | ${f(r.live.downtimeMs)} | ${f(r.live.totalMs)} | ${r.live.rounds.median} | ${f(r.stopAndCopy.downtimeMs)} | ${f(r.stopAndCopy.saveMs)} | ${f(r.stopAndCopy.destinationRestoreMs)} | ${r.downtimeRatio.toFixed(1)}x |`,
    );
  }
  console.log(
    `\nOne dirty-scan pass over ${scan.memMiB} MiB: kernels on v86's memory ${scan.importMemoryMs.toFixed(1)} ms, copy window ${scan.copyWindowMs.toFixed(1)} ms (${scan.ratio.toFixed(2)}x)`,
  );
}
