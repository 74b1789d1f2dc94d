// `vmstream simulate`: a live migration of a simulated guest on a virtual clock, printed round by round.
import { simulate, type RoundProgress } from "../migration/index.js";

export interface SimulateCliOptions {
  readonly ramMiB: number;
  readonly dirtyRate: number;
  readonly workingSetMiB?: number;
  readonly locality: number;
  readonly bandwidthMiB: number;
  readonly downtimeMs: number;
  readonly maxRounds: number;
  readonly xbzrleCacheMiB?: number;
  readonly writeBytes: number;
  readonly seed: number;
  readonly csv: boolean;
}

const COLUMNS = ["round", "phase", "time_s", "bytes", "zero", "normal", "xbzrle", "unchanged", "dirty_pages", "dirty_rate", "expected_downtime_ms"];

function row(p: RoundProgress): string[] {
  return [
    String(p.round),
    p.phase,
    p.time.toFixed(3),
    String(p.bytes),
    String(p.pages.zero),
    String(p.pages.normal),
    String(p.pages.xbzrle),
    String(p.pages.unchanged),
    String(p.dirtyPages),
    p.dirtyRate.toFixed(0),
    (p.expectedDowntime * 1000).toFixed(1),
  ];
}

export async function simulateCommand(o: SimulateCliOptions): Promise<number> {
  const r = simulate({
    ramMiB: o.ramMiB,
    dirtyRate: o.dirtyRate,
    ...(o.workingSetMiB !== undefined ? { workingSetMiB: o.workingSetMiB } : {}),
    locality: o.locality,
    writeBytes: o.writeBytes,
    bandwidth: o.bandwidthMiB * 1048576,
    downtimeTarget: o.downtimeMs / 1000,
    maxRounds: o.maxRounds,
    ...(o.xbzrleCacheMiB ? { xbzrleCacheBytes: o.xbzrleCacheMiB * 1048576 } : {}),
    seed: o.seed,
    verify: true,
  });
  const rows = [...r.rounds, r.final].map(row);
  let out = "";
  if (o.csv) {
    out += COLUMNS.join(",") + "\n";
    for (const x of rows) out += x.join(",") + "\n";
  } else {
    const widths = COLUMNS.map((c, i) => Math.max(c.length, ...rows.map((x) => x[i]!.length)));
    const line = (x: string[]) => x.map((v, i) => (i === 1 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join("  ").trimEnd() + "\n";
    out += line(COLUMNS);
    for (const x of rows) out += line(x);
  }
  const how = r.converged ? "converged" : r.reason === "forced" ? "forced" : "forced (max rounds)";
  out +=
    `${o.csv ? "# " : ""}${how} after ${r.rounds.length} rounds: ${(r.totalBytes / 1e6).toFixed(2)} MB in ${r.totalTime.toFixed(3)} s; ` +
    `downtime expected ${(r.expectedDowntime * 1000).toFixed(1)} ms, actual ${(r.downtime * 1000).toFixed(1)} ms; ` +
    `destination RAM ${r.verified ? "verified" : "DIFFERS"}\n`;
  process.stdout.write(out);
  return r.verified ? 0 : 1;
}
