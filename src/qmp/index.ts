// vmstream/qmp: a QMP client for driving QEMU (Node-only: uses node:net; not part of the browser-safe core).
export { QmpClient, type QmpConnectOptions, type QmpExecuteOptions } from "./client.js";
export { QmpClientError, type QmpClientErrorCode, QmpError } from "./errors.js";
export { QmpMessageFramer } from "./framer.js";
export type {
  QmpCommandReturns,
  QmpEvent,
  QmpGreeting,
  QmpMigrationInfo,
  QmpMigrationRamStats,
  QmpReturn,
  QmpStatusInfo,
  QmpTimestamp,
  QmpVersionInfo,
  QmpVersionTriple,
} from "./messages.js";
