// TEST-ONLY: the one policy for tests that need something from outside the repository (QEMU, SeaBIOS,
// libtasn1, asn1c, `script`): they run when it is installed; under CI (CI=true) a missing one is a FAILING
// test, so CI cannot pass without running them; elsewhere they are skipped with the reason in their name.
import { spawnSync } from "node:child_process";
import { describe, it } from "vitest";

export const isCI = (): boolean => process.env["CI"] === "true";

/** Something the tests need, and whether it is there. */
export interface Requirement {
  /** What it is, for the name of the failing test under CI, e.g. `QEMU`. */
  readonly what: string;
  /** Why it cannot be used (e.g. `unber not installed, apt-get install asn1c`); undefined when it can. */
  readonly missing: string | undefined;
  /** What to install, added to the CI failure when `missing` does not say it. */
  readonly install?: string;
}

/** A program on the PATH, from Debian package `pkg`. */
export function requireTool(tool: string, pkg: string): Requirement {
  const found = spawnSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" }).status === 0;
  return { what: tool, missing: found ? undefined : `${tool} not installed, apt-get install ${pkg}` };
}

function ciFailure(need: Requirement): Error {
  return new Error(`${need.missing}; CI=true, so these tests must run${need.install ? ` (install ${need.install})` : ""}`);
}

/** `describe` for a suite that needs `need`: under CI with it missing, one failing test takes the suite's place. */
export function describeIfInstalled(need: Requirement, name: string, fn: () => void): void {
  if (need.missing === undefined) describe(name, fn);
  else if (isCI()) {
    describe(name, () => {
      it(`${need.what} must be installed under CI`, () => {
        throw ciFailure(need);
      });
    });
  } else describe.skip(`${name} [skipped: ${need.missing}]`, fn);
}

/** An `it` for tests that need `need`: under CI with it missing, each such test fails. */
export function itIfInstalled(need: Requirement): (name: string, fn: () => unknown, timeout?: number) => void {
  return (name, fn, timeout) => {
    if (need.missing === undefined) it(name, fn, timeout);
    else if (isCI()) {
      it(name, () => {
        throw ciFailure(need);
      });
    } else it.skip(`${name} [skipped: ${need.missing}]`, fn);
  };
}
