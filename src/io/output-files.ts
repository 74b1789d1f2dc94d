// Files vmstream writes (Node only): each one is created new (O_CREAT|O_EXCL|O_NOFOLLOW), never opened through
// a link. An old file of the same name is removed first, unless it is a symbolic link, a hard link or not a
// regular file: that is refused. OutputDir confines every file under a folder: each folder on the way is
// opened without following a link, and on Linux reached through its descriptor (/proc/self/fd/N/NAME, the
// same lookup as openat), so a link planted or swapped in while it writes changes nothing outside the folder.
// The guarantee and its limits: docs/io.md, "Output files".
import { closeSync, constants as fsc, fstatSync, lstatSync, mkdirSync, openSync, realpathSync, type Stats, statSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { VmstreamError } from "./errors.js";

const FILE_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
const DIR_FLAGS = fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW;

const codeOf = (e: unknown): string | undefined => (e as NodeJS.ErrnoException | undefined)?.code;

function ioError(summary: string, shown: string, e: unknown): VmstreamError {
  if (e instanceof VmstreamError) return e;
  return new VmstreamError("IO", summary, { detail: `${shown}: ${e instanceof Error ? e.message : String(e)}`, cause: e });
}

/** What makes an existing name unfit to be written through or replaced, or undefined when it is fine. */
function unfit(st: Stats, wantDir: boolean): string | undefined {
  if (st.isSymbolicLink()) return "it is a symbolic link";
  if (wantDir) return st.isDirectory() ? undefined : "it is not a folder";
  if (!st.isFile()) return st.isDirectory() ? "it is a folder" : "it is not a regular file";
  if (st.nlink > 1) return `it is a hard link (one of ${st.nlink} names of a file)`;
  return undefined;
}

const refusal = (shown: string, why: string): VmstreamError =>
  new VmstreamError("IO", `refusing to write ${shown}`, { detail: `${why}; vmstream writes no file through a link` });

function lstatOrUndefined(path: string, shown: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (e) {
    if (codeOf(e) === "ENOENT") return undefined;
    throw ioError("cannot write", shown, e);
  }
}

/**
 * Create the file at `path` new and open it for writing; `shown` names it in errors. `path` may go through a
 * /proc/self/fd/N folder handle. A regular file of one name already there is removed first (its data is never
 * written over: a reader holding it keeps the old bytes).
 */
function createFresh(path: string, shown: string): number {
  const st = lstatOrUndefined(path, shown);
  if (st) {
    const why = unfit(st, false);
    if (why) throw refusal(shown, why);
    try {
      unlinkSync(path);
    } catch (e) {
      if (codeOf(e) !== "ENOENT") throw ioError("cannot replace", shown, e);
    }
  }
  try {
    return openSync(path, FILE_FLAGS, 0o644);
  } catch (e) {
    // O_EXCL: something took the name after it was checked (a link, a file): never written through
    if (codeOf(e) === "EEXIST" || codeOf(e) === "ELOOP") throw refusal(shown, "something appeared at that name while it was being replaced");
    throw ioError("cannot write", shown, e);
  }
}

/**
 * Create the file at a path the user named (`--out FILE`'s FILE.partial, convert's OUT.partial): the path's
 * folders are taken as they are (the user named them), the file itself is new, never written through a link.
 */
export function createOutputFile(path: string): number {
  return createFresh(path, path);
}

interface Folder {
  /** Descriptor of the folder (Linux: files are created through /proc/self/fd/<fd>). */
  readonly fd: number;
  /** Its real path (used where /proc is not there). */
  readonly path: string;
}

/**
 * A folder the user named as the output of a command (extract DIR, receive --extract / --raw DIR). Files are
 * created only inside it, whatever it already contains: no symbolic or hard link is followed at any level
 * below DIR (DIR itself is taken as the user named it). A link found on the way is refused with an error
 * naming it.
 */
export class OutputDir {
  private readonly folders = new Map<string, Folder>();
  /** True when /proc/self/fd reaches the folders' descriptors (Linux): lookups start at the descriptor. */
  private readonly viaProc: boolean;

  private constructor(
    /** DIR as the user named it (for messages). */
    readonly shown: string,
    root: Folder,
    viaProc: boolean | undefined,
  ) {
    this.folders.set("", root);
    this.viaProc = viaProc ?? procReaches(root.fd);
  }

  /**
   * Open DIR, made first with its parents if missing; `fresh`: DIR must not exist yet (a `.partial` folder of
   * this run) and is not followed if a link appears there. `viaProc` is for tests (default: detected).
   */
  static open(dir: string, options: { fresh?: boolean; viaProc?: boolean } = {}): OutputDir {
    try {
      if (options.fresh) {
        mkdirSync(dirname(dir), { recursive: true });
        mkdirSync(dir, 0o755);
      } else mkdirSync(dir, { recursive: true });
    } catch (e) {
      if (codeOf(e) === "EEXIST" && options.fresh)
        throw new VmstreamError("IO", `cannot create ${dir}`, { detail: "it exists (left by another run?): remove it first" });
      throw ioError("cannot create the output folder", dir, e);
    }
    let fd: number;
    try {
      fd = openSync(dir, options.fresh ? DIR_FLAGS : fsc.O_RDONLY | fsc.O_DIRECTORY);
    } catch (e) {
      throw ioError("cannot open the output folder", dir, e);
    }
    return new OutputDir(dir, { fd, path: realpathSync(dir) }, options.viaProc);
  }

  /**
   * Create the file `rel` ("ram/pc.ram.bin": names joined by "/", none empty, "." or "..") new, with the
   * folders on its way; returns its descriptor, open for writing. The caller closes it.
   */
  create(rel: string): number {
    const parts = rel.split("/");
    if (parts.some((p) => p === "" || p === "." || p === ".." || p.includes("\0"))) {
      throw new VmstreamError("RANGE", `refusing to write outside ${this.shown}`, { detail: `not a name inside it: ${JSON.stringify(rel)}` });
    }
    const name = parts.pop()!;
    const parent = this.folder(parts);
    return createFresh(this.at(parent, name), join(this.shown, rel));
  }

  /** Close the folders' descriptors (files created stay open until their callers close them). */
  close(): void {
    for (const f of this.folders.values()) closeSync(f.fd);
    this.folders.clear();
  }

  /** A path that names `name` inside `f` (through its descriptor where /proc allows it). */
  private at(f: Folder, name: string): string {
    return this.viaProc ? `/proc/self/fd/${f.fd}/${name}` : join(f.path, name);
  }

  /** The folder `parts` below DIR, made where missing; each one checked to be a folder, not a link to one. */
  private folder(parts: string[]): Folder {
    const key = parts.join("/");
    const known = this.folders.get(key);
    if (known) return known;
    const parent = this.folder(parts.slice(0, -1));
    const name = parts[parts.length - 1]!;
    const path = this.at(parent, name);
    const shown = join(this.shown, key);
    try {
      mkdirSync(path, 0o755);
    } catch (e) {
      if (codeOf(e) !== "EEXIST") throw ioError("cannot create a folder", shown, e);
    }
    let fd: number;
    try {
      // O_NOFOLLOW|O_DIRECTORY: what is at the name now is a real folder, or the open fails
      fd = openSync(path, DIR_FLAGS);
    } catch (e) {
      const st = lstatOrUndefined(path, shown);
      const why = st && unfit(st, true);
      throw why ? refusal(shown, why) : ioError("cannot open a folder", shown, e);
    }
    const f: Folder = { fd, path: join(parent.path, name) };
    this.folders.set(key, f);
    return f;
  }
}

/** /proc/self/fd/<fd> leads to the folder open as `fd` (Linux with /proc mounted). */
function procReaches(fd: number): boolean {
  try {
    const a = statSync(`/proc/self/fd/${fd}`);
    const b = fstatSync(fd);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}
