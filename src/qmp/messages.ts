// The shapes of QMP messages (QEMU 7.2): the greeting `{"QMP": {"version", "capabilities"}}`, replies
// `{"return": …, "id"}` or `{"error": {"class", "desc"}, "id"}` to `{"execute", "arguments", "id"}`, and
// asynchronous events `{"event", "data", "timestamp"}`; plus the replies of the commands vmstream uses.

export interface QmpTimestamp {
  seconds: number;
  microseconds: number;
}

/** An asynchronous event. */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: QmpTimestamp;
}

export interface QmpVersionTriple {
  major: number;
  minor: number;
  micro: number;
}

/** The reply of `query-version` (and the `version` member of the greeting). */
export interface QmpVersionInfo {
  qemu: QmpVersionTriple;
  package: string;
}

/** The greeting QEMU sends on connect. */
export interface QmpGreeting {
  QMP: { version: QmpVersionInfo; capabilities: string[] };
}

/** The reply of `query-status`. */
export interface QmpStatusInfo {
  status: string;
  running: boolean;
  singlestep?: boolean;
}

/** The `ram` member of `query-migrate` (the counters vmstream cares about; QEMU sends more). */
export interface QmpMigrationRamStats {
  transferred: number;
  remaining: number;
  total: number;
  duplicate: number;
  normal: number;
  "normal-bytes": number;
  "dirty-sync-count": number;
  mbps: number;
  [k: string]: unknown;
}

/** The reply of `query-migrate`. Empty (`{}`) before any migration; `status` then absent. */
export interface QmpMigrationInfo {
  status?: string;
  "total-time"?: number;
  "expected-downtime"?: number;
  downtime?: number;
  "setup-time"?: number;
  ram?: QmpMigrationRamStats;
  "xbzrle-cache"?: Record<string, unknown>;
  "error-desc"?: string;
  [k: string]: unknown;
}

/** Return types of the commands this library uses; any other command returns `unknown`. */
export interface QmpCommandReturns {
  qmp_capabilities: Record<string, never>;
  "query-status": QmpStatusInfo;
  "query-version": QmpVersionInfo;
  "query-migrate": QmpMigrationInfo;
  "query-commands": { name: string }[];
}

export type QmpReturn<C extends string> = C extends keyof QmpCommandReturns ? QmpCommandReturns[C] : unknown;
