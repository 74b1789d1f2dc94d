// What a user sees of an error: a VmstreamError's own message (offset, section, field; printable), a file
// that cannot be read or written said as such, and anything else as an internal error, never a bare exception text.
import { printable, VmstreamError } from "../io/errors.js";

/** A Node system error (ENOENT, EACCES, ELOOP...): its description without the code and path Node puts around it. */
function systemError(e: unknown): (Error & { code: string; syscall?: string; path?: string }) | undefined {
  if (!(e instanceof Error)) return undefined;
  const code = (e as { code?: unknown }).code;
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code) ? (e as Error & { code: string }) : undefined;
}

/** One line for stderr (without the "vmstream: " prefix). */
export function userMessage(err: unknown): string {
  const e = VmstreamError.wrap(err);
  const sys = systemError(e.cause) ?? systemError(err);
  if (sys && e.summary === sys.message) {
    // a system error passed on as it was: "ENOENT: no such file or directory, open 'x'" -> "x: no such file or
    // directory (ENOENT, open)"; it is about a file or a connection, not a place in the stream
    const what = sys.message.replace(/^E[A-Z0-9]+: /, "").replace(/, \w+ '.*'$/s, "");
    const where = e.offset !== undefined ? ` at byte ${e.offset}` : "";
    return printable(`${sys.path !== undefined ? `${sys.path}: ` : ""}${what} (${sys.code}${sys.syscall ? `, ${sys.syscall}` : ""})${where}`);
  }
  // a VmstreamError, or a plain Error with vmstream's own text (usage, files); what the engine throws by mistake
  // (TypeError, RangeError...) is a bug
  const cause = e.code === "INTERNAL" ? (e.cause ?? err) : undefined;
  if (cause === undefined || (cause instanceof Error && cause.constructor === Error)) return e.message;
  const where = e.offset !== undefined ? ` at byte ${e.offset}` : " (where in the stream is not known)";
  return printable(`internal error${where} (a bug in vmstream: please report it with the input): ${e.summary}`);
}
