// `vmstream simulate`: a live migration of a simulated guest on a virtual clock, printed round by round.
import { simulate } from "../migration/simulate.js";
import type { RoundProgress } from "../migration/source.js";

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
  /** A disk migrated by the block section. */
  readonly diskMiB?: number;
  readonly diskWriteRate?: number;
  readonly zeroBlocks?: boolean;
}

const COLUMNS = ["round", "phase", "time_s", "bytes", "zero", "normal", "xbzrle", "unchanged", "dirty_pages", "dirty_rate", "expected_downtime_ms"];
/** With a disk: data chunks and ZERO_BLOCK chunks sent in the round, dirty chunks pending after it. */
const DISK_COLUMNS = ["disk_chunks", "disk_zero", "disk_dirty"];

function diskCells(p: RoundProgress): string[] {
  const b = p.sections.find((s) => s.kind === "block");
  return b?.kind === "block" ? [String(b.chunks), String(b.zeroChunks), String(b.dirtyUnits)] : ["", "", ""];
}

function row(p: RoundProgress, disk: boolean): string[] {
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
    ...(disk ? diskCells(p) : []),
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
    ...(o.diskMiB ? { diskMiB: o.diskMiB, diskWriteRate: o.diskWriteRate ?? 0, zeroBlocks: o.zeroBlocks === true } : {}),
  });
  const disk = r.disk !== undefined;
  const columns = disk ? [...COLUMNS, ...DISK_COLUMNS] : COLUMNS;
  const rows = [...r.rounds, r.final].map((p) => row(p, disk));
  let out = "";
  if (o.csv) {
    out += columns.join(",") + "\n";
    for (const x of rows) out += x.join(",") + "\n";
  } else {
    const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((x) => x[i]!.length)));
    const line = (x: string[]) =>
      x
        .map((v, i) => (i === 1 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!)))
        .join("  ")
        .trimEnd() + "\n";
    out += line(columns);
    for (const x of rows) out += line(x);
  }
  const how = r.converged ? "converged" : r.reason === "forced" ? "forced" : "forced (max rounds)";
  out +=
    `${o.csv ? "# " : ""}${how} after ${r.rounds.length} rounds: ${(r.totalBytes / 1e6).toFixed(2)} MB in ${r.totalTime.toFixed(3)} s; ` +
    `downtime expected ${(r.expectedDowntime * 1000).toFixed(1)} ms, actual ${(r.downtime * 1000).toFixed(1)} ms; ` +
    `destination RAM${disk ? " and disk" : ""} ${r.verified ? "verified" : "DIFFERS"}\n`;
  process.stdout.write(out);
  return r.verified ? 0 : 1;
}
