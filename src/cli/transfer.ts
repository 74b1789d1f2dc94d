// Shared by `send` and `receive`: the progress bar (stderr, only on a terminal), rates, summaries.
import type { DestinationPages } from "../migration/destination.js";

/** A one-line progress display on stderr, redrawn at most every 100 ms; silent when stderr is not a TTY. */
export class ProgressBar {
  private readonly on: boolean;
  private readonly started = performance.now();
  private last = 0;
  private shown = false;

  constructor(
    private readonly label: string,
    quiet: boolean,
    private readonly total?: number,
  ) {
    this.on = !quiet && process.stderr.isTTY === true;
  }

  update(bytes: number, phase: string, force = false): void {
    if (!this.on) return;
    const now = performance.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    this.shown = true;
    const secs = (now - this.started) / 1000;
    const rate = secs > 0 ? bytes / secs : 0;
    let bar = "";
    if (this.total && this.total > 0) {
      const f = Math.min(1, bytes / this.total);
      const w = 24;
      const n = Math.round(f * w);
      bar = ` [${"#".repeat(n)}${"-".repeat(w - n)}] ${Math.floor(f * 100)}%`;
    }
    process.stderr.write(`\r\x1b[Kvmstream: ${this.label}${bar} ${mb(bytes)} MB, ${mb(rate)} MB/s, ${phase}`);
  }

  /** Erase the line (before a final message). */
  done(): void {
    if (this.shown) process.stderr.write("\r\x1b[K");
    this.shown = false;
  }
}

const mb = (n: number): string => (n / 1e6).toFixed(1);

/** "12.3 MB in 0.45 s (27.3 MB/s)". */
export function rateText(bytes: number, ms: number): string {
  const s = ms / 1000;
  return `${bytes} bytes in ${s.toFixed(2)} s (${s > 0 ? mb(bytes / s) : "-"} MB/s)`;
}

export function pagesText(p: DestinationPages): string {
  return `RAM pages: ${p.zero} zero, ${p.normal} normal, ${p.xbzrle} xbzrle, ${p.compressed} compressed`;
}

/**
 * A byte rate: a number with an optional binary suffix K, M, G or T (KiB = 1024 ...), optionally followed
 * by "B", "iB" and "/s": `100M`, `1G`, `512KiB/s`, `250000`.
 */
export function parseRate(text: string): number {
  const v = amount(text, true);
  if (v === undefined) throw new Error(`--bandwidth: not a rate: ${JSON.stringify(text)} (e.g. 100M, 1G, 512K, 250000 bytes/s)`);
  if (!(v >= 1) || !Number.isFinite(v)) throw new Error(`--bandwidth must be at least 1 byte/s, not ${text}`);
  return v;
}

/** `--max-memory SIZE`: bytes, with an optional binary suffix (K, M, G, T; "B" / "iB" may follow). */
export function parseSize(option: string, text: string): number {
  const v = amount(text, false);
  if (v === undefined) throw new Error(`${option}: not a size: ${JSON.stringify(text)} (e.g. 512M, 16G, 1048576)`);
  if (!(v >= 1) || !Number.isFinite(v)) throw new Error(`${option} must be at least 1 byte, not ${text}`);
  return Math.floor(v);
}

/** A number with an optional K/M/G/T (powers of 1024) suffix, "B" or "iB", and "/s" when `rate`. */
function amount(text: string, rate: boolean): number | undefined {
  const m = (rate ? /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?B)?(?:\/s)?$/ : /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?B)?$/).exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g" | "t"];
}

/** `--multifd-channels N`: 1..255, as QEMU's multifd-channels. */
export function channelCount(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < 1 || n > 255) throw new Error(`--multifd-channels must be 1..255, not ${JSON.stringify(text)}`);
  return n;
}

/** `--multifd-compression C`: none, zlib or zstd. */
export function compressionName(text: string): "none" | "zlib" | "zstd" {
  if (text === "none" || text === "zlib" || text === "zstd") return text;
  throw new Error(`--multifd-compression must be none, zlib or zstd, not ${JSON.stringify(text)}`);
}
