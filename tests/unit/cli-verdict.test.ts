// One verdict: every command that reads a stream (check, dump, analyze, extract, convert to QEMU and to BER,
// send to a file, receive from a file) gives the same verdict with the same exit code and the same message for
// the same crafted input (cut inside RAM, inside a device section, before EOF, after EOF, inside the vmdesc,
// bytes after the end, a broken record, a vmdesc that lists a device the stream lacks or lacks one it has, a
// corrupt gzip file), and none leaves complete-looking output for a stream check rejects.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync, gzipSync } from "node:zlib";
import { beforeAll, describe, expect, it } from "vitest";
import { decodeNodeStream } from "../../src/sections/node.js";
import { concat } from "../helpers/bytes.js";
import { NONE_OFFSETS as AT, noneStream } from "../helpers/none-stream.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const FIX = (f: string) => fileURLToPath(new URL(`../fixtures/${f}`, import.meta.url));
const tmp = suiteTempDir("vmstream-verdict-");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[]): Promise<Run> {
  return new Promise((ok) => {
    const p = spawn(process.execPath, [MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    p.on("close", (code) => ok({ code, stdout, stderr }));
  });
}

const cat = (...parts: Uint8Array[]): Uint8Array => concat(parts);

/** What one command said: its exit code, and its failure message (undefined when it says the stream is complete). */
interface Said {
  code: number | null;
  message: string | undefined;
  /** Output files a complete run would leave, present after this one. */
  complete: string[];
  /** stdout of analyze and dump (what they decoded). */
  printed: string;
}

/** The message after a command's prefix on its last diagnostic line. */
function failure(stderr: string, prefix: string): string | undefined {
  const lines = stderr.split("\n").filter((l) => l.startsWith(`vmstream: ${prefix}`));
  return lines.length > 0 ? lines[lines.length - 1]!.slice(`vmstream: ${prefix}`.length) : undefined;
}

async function everyCommand(name: string, bytes: Uint8Array): Promise<Record<string, Said>> {
  const dir = join(tmp(), name);
  const input = join(tmp(), `${name}.mig`);
  writeFileSync(input, bytes);
  const p = (f: string) => join(tmp(), `${name}-${f}`);
  const present = (...files: string[]) => files.filter((f) => existsSync(f));
  const plain = (r: Run) => failure(r.stderr.replace(/^vmstream: (note|warning): .*$/gm, ""), "");
  // the commands run side by side: each writes its own files
  const [check, dump, analyze, extract, convert, ber, send, receive] = await Promise.all([
    run(["check", input]),
    run(["dump", input]),
    run(["analyze", input]),
    run(["extract", input, p("x")]),
    run(["convert", input, p("q.mig")]),
    run(["convert", input, p("b.ber"), "--to", "ber"]),
    run(["send", input, p("s.mig")]),
    run(["receive", input, "--out", p("r.mig"), "--extract", join(dir, "r")]),
  ]);
  const said: Record<string, Said> = {};
  said.check = { code: check.code, message: check.stdout.startsWith("BROKEN: ") ? check.stdout.slice(8).trimEnd() : undefined, complete: [], printed: "" };
  said.dump = { code: dump.code, message: plain(dump), complete: [], printed: dump.stdout };
  said.analyze = { code: analyze.code, message: plain(analyze), complete: [], printed: analyze.stdout };
  said.extract = { code: extract.code, message: plain(extract), complete: present(p("x")), printed: "" };
  said.convert = { code: convert.code, message: plain(convert), complete: present(p("q.mig"), p("q.mig.partial")), printed: "" };
  said.convertBer = { code: ber.code, message: plain(ber), complete: present(p("b.ber"), p("b.ber.partial")), printed: "" };
  said.send = { code: send.code, message: failure(send.stderr, "send failed: "), complete: present(p("s.mig")), printed: "" };
  said.receive = { code: receive.code, message: failure(receive.stderr, "migration failed: "), complete: present(p("r.mig"), join(dir, "r")), printed: "" };
  return said;
}

/** Every command agrees with check: same exit code, same message; a rejected stream leaves nothing complete-looking. */
function expectOneVerdict(said: Record<string, Said>, expected: "complete" | "incomplete" | "broken"): void {
  const check = said.check!;
  if (expected === "complete") {
    expect(check.code).toBe(0);
    for (const [cmd, s] of Object.entries(said)) {
      expect({ cmd, code: s.code, message: s.message }).toEqual({ cmd, code: 0, message: undefined });
    }
    return;
  }
  expect(check.code).toBe(1);
  expect(check.message).toMatch(/ at byte \d+/);
  if (expected === "incomplete") expect(check.message).toMatch(/^incomplete stream at byte \d+: /);
  else expect(check.message).not.toMatch(/^incomplete stream/);
  for (const [cmd, s] of Object.entries(said)) {
    expect({ cmd, code: s.code, message: s.message }).toEqual({ cmd, code: 1, message: check.message });
    expect({ cmd, complete: s.complete }).toEqual({ cmd, complete: [] });
  }
}

describe("one verdict: the none stream cut and damaged", () => {
  const none = noneStream();
  const cases: [string, () => Uint8Array, "complete" | "incomplete" | "broken"][] = [
    ["whole", () => none, "complete"],
    ["cut inside RAM", () => none.subarray(0, AT.ramStart + 20), "broken"],
    ["cut inside a device section", () => none.subarray(0, AT.timer + 30), "broken"],
    ["cut before EOF", () => none.subarray(0, AT.eof), "broken"],
    ["cut before the vmdesc", () => none.subarray(0, AT.vmdesc), "broken"],
    ["cut inside the vmdesc", () => none.subarray(0, AT.vmdesc + 40), "broken"],
    ["bytes after the vmdesc", () => cat(none, Uint8Array.of(1, 2, 3, 4)), "broken"],
    [
      "a broken record (footer of another section)",
      () => {
        const b = none.slice();
        b[AT.globalstate - 4] = 9; // the timer section's footer names section 9
        return b;
      },
      "broken",
    ],
    ["a vmdesc device without its section", () => cat(none.subarray(0, AT.globalstate), none.subarray(AT.eof)), "incomplete"],
    [
      "a device section twice",
      // machine none has no registered descriptions: the second timer section has no vmdesc entry left to decode it
      () => cat(none.subarray(0, AT.globalstate), none.subarray(AT.timer, AT.globalstate), none.subarray(AT.globalstate)),
      "broken",
    ],
  ];
  it.each(cases)(
    "%s: every command gives check's verdict",
    async (name, bytes, expected) => {
      const said = await everyCommand(name.replace(/\W+/g, "-"), bytes());
      expectOneVerdict(said, expected);
      // analyze and dump still print what they decoded before an incomplete verdict
      if (expected === "incomplete") {
        expect(said.dump!.printed).toMatch(/^# timer instance 0 version 2$/m);
        expect(JSON.parse(said.analyze!.printed)).toHaveProperty(["timer (0)"]);
      }
    },
    60_000,
  );

  it("a corrupt gzip file: the same verdict everywhere, with the stream offset", async () => {
    const gz = gzipSync(none);
    gz[gz.length - 6] ^= 0xff; // the CRC: the data inflates, the check fails
    const said = await everyCommand("gzip-crc", gz);
    expectOneVerdict(said, "broken");
    expect(said.check!.message).toMatch(/^the gzip-compressed input is corrupt at byte \d+: .*gzip file/);
    const cut = await everyCommand("gzip-cut", gzipSync(none).subarray(0, 200));
    expectOneVerdict(cut, "broken");
  }, 60_000);
});

describe("one verdict: a real x86 stream cut and damaged", () => {
  let x86: Uint8Array;
  let offsetOf: (idstr: string) => { offset: number; end: number };
  let eof = 0;
  beforeAll(async () => {
    x86 = gunzipSync(readFileSync(FIX("x86-pc-64m.mig.gz")));
    const r = await decodeNodeStream([x86]);
    const secs = r.sections;
    offsetOf = (idstr) => {
      const i = secs.findIndex((s) => s.idstr === idstr && s.type === "full");
      return { offset: secs[i]!.offset, end: secs[i + 1]?.offset ?? r.eofOffset! };
    };
    eof = r.eofOffset!;
    r.dispose();
  });

  it("cut inside RAM, inside a device section; bytes after the end: broken everywhere", async () => {
    const apic = offsetOf("apic");
    for (const [name, bytes] of [
      ["x86-ram", x86.subarray(0, 400_000)],
      ["x86-apic", x86.subarray(0, apic.offset + 30)],
      ["x86-after", cat(x86, Uint8Array.of(0x6a, 0x75, 0x6e, 0x6b))],
    ] as const) {
      expectOneVerdict(await everyCommand(name, bytes), "broken");
    }
  }, 240_000);

  it("cut right after QEMU_VM_EOF: complete (the devices decode without the vmdesc) everywhere", async () => {
    expectOneVerdict(await everyCommand("x86-noverdesc", x86.subarray(0, eof + 1)), "complete");
  }, 120_000);

  it("a device the vmdesc lists is missing; a section it does not list is there: incomplete everywhere", async () => {
    const pcspk = offsetOf("pcspk");
    const port92 = offsetOf("port92");
    const missing = await everyCommand("x86-missing", cat(x86.subarray(0, pcspk.offset), x86.subarray(pcspk.end)));
    expectOneVerdict(missing, "incomplete");
    expect(missing.check!.message).toMatch(/: vmdesc devices without a section: pcspk\/0$/);
    const extra = await everyCommand("x86-extra", cat(x86.subarray(0, port92.end), x86.subarray(port92.offset, port92.end), x86.subarray(port92.end)));
    expectOneVerdict(extra, "incomplete");
    expect(extra.check!.message).toMatch(/: sections not in the vmdesc: port92\/0$/);
    expect(readdirSync(tmp()).filter((f) => f.startsWith("x86-missing-x") || f.startsWith("x86-extra-x"))).toEqual([]);
  }, 240_000);
});
