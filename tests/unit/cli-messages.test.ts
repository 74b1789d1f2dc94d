// What a user sees of an error: a byte offset (or why there is none), never a bare exception text, and text
// from the stream (idstrs, RAM block names, field names, strings) escaped wherever it reaches a terminal, so a
// crafted name can neither move the cursor nor draw a line of its own (a fake "OK:").
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { userMessage } from "../../src/cli/messages.js";
import { berToQemu } from "../../src/convert/from-ber.js";
import { qemuToBerBytes } from "../../src/convert/to-ber.js";
import { printable, VmstreamError } from "../../src/io/errors.js";
import { thrownBy } from "../helpers/errors.js";
import { noneStream } from "../helpers/none-stream.js";
import { memSize, page, RAM, StreamBuilder } from "../helpers/stream-builder.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const MAIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const tmp = suiteTempDir("vmstream-messages-");

function run(args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function file(name: string, bytes: Uint8Array): string {
  const path = join(tmp(), name);
  writeFileSync(path, bytes);
  return path;
}

/** Nothing a terminal acts on: no control character but our own tabs and line breaks, no C1 control, no bidi override. */
function expectInert(text: string): void {
  const acting = [...text].filter((ch) => {
    const c = ch.codePointAt(0)!;
    return (c < 0x20 && c !== 0x09 && c !== 0x0a) || (c >= 0x7f && c <= 0x9f) || (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
  });
  expect(acting).toEqual([]);
}

/** A crafted name: clears the line, returns to its start and writes a fake verdict; a C1 CSI; a bidi override. */
const EVIL = "dev\u001b[2K\rOK: fake\nline\u009b31m\u202e";

describe("printable", () => {
  it("escapes C0 and C1 controls, DEL, line separators and bidi controls; leaves other text as it is", () => {
    expect(printable("pc.ram 0000:00:02.0/vga é ✓")).toBe("pc.ram 0000:00:02.0/vga é ✓");
    expect(printable("a\u0000b\tc\nd\re\u001bf\u007fg")).toBe("a\\x00b\\x09c\\x0ad\\x0de\\x1bf\\x7fg");
    expect(printable("\u0085\u009b\u2028\u2029\u202e\u2066\u200f\u061c")).toBe("\\x85\\x9b\\u{2028}\\u{2029}\\u{202e}\\u{2066}\\u{200f}\\u{61c}");
    expectInert(printable(EVIL));
  });

  it("every VmstreamError message is printable, whatever its parts hold; the parts keep the raw text", () => {
    const e = new VmstreamError("BAD_VALUE", "bad", { offset: 3, section: { idstr: EVIL, id: 1 }, path: `${EVIL}.f`, detail: EVIL });
    expectInert(e.message);
    expect(e.message).toMatch(/^bad at byte 3 \(section dev\\x1b\[2K\\x0dOK: fake\\x0aline/);
    expect(e.section!.idstr).toBe(EVIL);
    expectInert(e.withContext({ offset: 9 }).message);
  });
});

describe("userMessage", () => {
  it("a mistake of the engine (TypeError...) is an internal error, said as such, never its bare text", () => {
    const m = userMessage(new TypeError("Cannot read properties of undefined (reading 'devices')"));
    expect(m).toMatch(/^internal error \(where in the stream is not known\) \(a bug in vmstream: .*\): Cannot read properties/);
    expect(m).not.toMatch(/^TypeError/);
    const located = userMessage(VmstreamError.wrap(new RangeError("x"), { offset: 12 }));
    expect(located).toMatch(/^internal error at byte 12 /);
  });

  it("a system error names the file and what happened, without Node's decoration", () => {
    const r = run(["check", join(tmp(), "nothing-here.mig")]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe(`BROKEN: ${join(tmp(), "nothing-here.mig")}: no such file or directory (ENOENT, stat)\n`);
  });

  it("a VmstreamError and a plain Error with vmstream's own text pass unchanged", () => {
    expect(userMessage(new VmstreamError("EOF", "truncated", { offset: 5 }))).toBe("truncated at byte 5");
    expect(userMessage(new Error("--extract: out exists and is not empty"))).toBe("--extract: out exists and is not empty");
  });
});

describe("text from the stream reaches the terminal escaped", () => {
  // machine "none": no registered descriptions, the vmdesc describes the device (its field name is crafted too)
  function evilStream(footerId = 3): Uint8Array {
    const b = new StreamBuilder().header().config(`none${EVIL}`);
    b.u8(0x04).be32(3).cstr(EVIL).be32(0).be32(1).u8(0x2a).u8(0x7e).be32(footerId);
    b.eof().vmdesc({
      page_size: 4096,
      devices: [{ name: EVIL, instance_id: 0, vmsd_name: "evil", version: 1, fields: [{ name: `f${EVIL}`, type: "uint8", size: 1 }] }],
    });
    return b.build();
  }

  it("dump and check: idstrs, field names and the machine name cannot draw a line or move the cursor", () => {
    const path = file("evil.mig", evilStream());
    const dump = run(["dump", path]);
    expect(dump.status, dump.stderr).toBe(0);
    expectInert(dump.stdout);
    expect(dump.stdout.split("\n").filter((l) => l.startsWith("OK"))).toEqual([]);
    expect(dump.stdout).toContain("# dev\\x1b[2K\\x0dOK: fake\\x0aline\\x9b31m\\u{202e} instance 0 version 1");
    const check = run(["check", path]);
    expect(check.status).toBe(0);
    expectInert(check.stdout);
    expect(check.stdout.split("\n").filter(Boolean)).toHaveLength(1);
    // a broken footer: the message names the section, escaped
    const broken = run(["check", file("evil-broken.mig", evilStream(7))]);
    expect(broken.status).toBe(1);
    expectInert(broken.stdout);
    expect(broken.stdout).toMatch(/^BROKEN: mismatched section id in footer at byte \d+ \(section dev\\x1b\[2K\\x0dOK: fake/);
    const analyze = run(["analyze", path]);
    expectInert(analyze.stdout + analyze.stderr);
  });

  it("RAM block names: in extract's listing and in an error", () => {
    const name = `pc.ram${EVIL}`;
    const ok = new StreamBuilder().header().config("pc-i440fx-7.2");
    ok.start(2, "ram", 4, (s) => {
      memSize(s, [[name, 4096]]);
      page(s, RAM.PAGE, 0, name, new Uint8Array(4096).fill(1));
      s.be64(RAM.EOS);
    });
    ok.end(2, (s) => s.be64(RAM.EOS)).eof();
    const x = run(["extract", file("evil-ram.mig", ok.build()), join(tmp(), "evil-ram")]);
    expect(x.status, x.stderr).toBe(0);
    expectInert(x.stdout);
    expect(x.stdout).toContain("\\u001b[2K\\rOK: fake\\nline\\x9b31m\\u{202e}");
    const bad = new StreamBuilder().header().config("pc-i440fx-7.2");
    bad.start(2, "ram", 4, (s) => {
      memSize(s, [["pc.ram", 4096]]);
      page(s, RAM.PAGE, 0, name, new Uint8Array(4096));
      s.be64(RAM.EOS);
    });
    const r = run(["check", file("evil-ram-bad.mig", bad.build())]);
    expect(r.status).toBe(1);
    expectInert(r.stdout);
    expect(r.stdout).toMatch(/^BROKEN: unknown RAM block at byte \d+ \(section ram id 2 instance 0\): "pc\.ramdev\\x1b\[2K\\x0dOK/);
  });
});

describe("errors say what they are, with an offset", () => {
  it("BER -> QEMU: an embedded vmdesc of the wrong shape fails at its BER offset, and convert leaves no OUT", () => {
    const ber = qemuToBerBytes(noneStream());
    const text = new TextEncoder().encode('{"page_size": 4096');
    let at = -1;
    for (let i = 0; i < ber.length && at < 0; i++) if (text.every((c, k) => ber[i + k] === c)) at = i;
    // the vmdesc item: [APPLICATION 6] with a two-byte length, its text, then the end of the item list
    expect([ber[at - 4], ber[at - 3]]).toEqual([0x46, 0x82]);
    const old = (ber[at - 2]! << 8) | ber[at - 1]!;
    for (const [shape, why] of [
      ['{"page_size": 4096, "devices": [5]}', "devices[0] is not an object"],
      ['{"page_size": 4096, "devices": {"timer": 1}}', "devices is not an array"],
      ["[1, 2]", "not an object"],
    ] as const) {
      const t = new TextEncoder().encode(shape);
      const bytes = new Uint8Array([...ber.subarray(0, at - 2), t.length >> 8, t.length & 0xff, ...t, ...ber.subarray(at + old)]);
      const e = thrownBy(() => berToQemu(bytes));
      expect(e.message).toBe(`vmdesc JSON has an unexpected shape at byte ${at - 4}: ${why}`);
      const out = join(tmp(), "shape.mig");
      const r = run(["convert", file("shape.ber", bytes), out]);
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(`vmstream: ${e.message}\n`);
      expect(existsSync(out) || existsSync(`${out}.partial`)).toBe(false);
    }
  });

  it("a registered description that does not fit is reported as such, not as a missing one", () => {
    // port92 is registered for pc machines at version 1; this section says version 9, and there is no vmdesc
    const b = new StreamBuilder().header().config("pc-i440fx-7.2");
    b.full(5, "port92", 9, (s) => s.u8(0)).eof();
    const r = run(["check", file("port92.mig", b.build())]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(
      /^BROKEN: the registered description "port92" does not fit this device section at byte \d+ \(section port92 id 5 instance 0\): .*version 9.*; and the stream has no vmdesc trailer/,
    );
    expect(r.stdout).not.toMatch(/no registered description/);
  });
});
