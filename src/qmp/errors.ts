// The two ways a QMP call fails: QEMU's error reply (QmpError) and a failure of the client or the
// connection (QmpClientError with a code).

/** An error reply from QEMU: `{"error": {"class": …, "desc": …}}`. */
export class QmpError extends Error {
  /** QMP error class, e.g. `CommandNotFound`, `GenericError`, `DeviceNotFound`. */
  readonly class: string;
  /** QEMU's human-readable description. */
  readonly desc: string;
  /** The command that failed (undefined for replies QEMU sent without an id, e.g. to unparsable input). */
  readonly command: string | undefined;
  /** The id the command was sent with. */
  readonly id: number | undefined;

  constructor(errorClass: string, desc: string, command: string | undefined, id?: number) {
    super(`QMP command ${command === undefined ? "(unknown)" : `'${command}'`} failed: ${errorClass}: ${desc}`);
    this.name = "QmpError";
    this.class = errorClass;
    this.desc = desc;
    this.command = command;
    this.id = id;
  }
}

/**
 * Failure of the client side or of the connection (not a QEMU error reply).
 *
 * - `CONNECT`: could not connect to the socket within the deadline, or connecting was aborted.
 * - `GREETING`: the server did not send a valid QMP greeting, or `qmp_capabilities` failed.
 * - `CLOSED`: the connection closed (QEMU exited or `close()` was called) while a command or wait was pending,
 *   or a command was issued on a closed client.
 * - `TIMEOUT`: a command reply or an awaited event did not arrive in time.
 * - `PROTOCOL`: the server sent something that is not a JSON object, or a message above the size limit.
 */
export type QmpClientErrorCode = "CONNECT" | "GREETING" | "CLOSED" | "TIMEOUT" | "PROTOCOL";

export class QmpClientError extends Error {
  readonly code: QmpClientErrorCode;
  /** The command concerned, when there is one. */
  readonly command: string | undefined;

  constructor(code: QmpClientErrorCode, message: string, options?: { command?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "QmpClientError";
    this.code = code;
    this.command = options?.command;
  }
}
