// Bounded memory on a big stream: a fresh process checks (validateFile) and decodes without keeping RAM
// (decodeFile, the analyze path) the stream of a 2 GiB guest with 25 % non-zero pages (~540 MB, written to
// a temp dir here), and its peak RSS stays under 150 MB. Runs the built dist/ (`npm test` builds first).
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../helpers/random.js";
import { suiteTempDir } from "../helpers/temp-dir.js";

const P = 4096;
const GUEST = 2 ** 31;
const NODE_MODULE = fileURLToPath(new URL("../../dist/sections/node.js", import.meta.url));

/** A pc-i440fx-7.2 stream: MEM_SIZE pc.ram 2 GiB; each page ZERO or (p = 1/4) PAGE; 32 MiB PART sections. */
function writeGuestStream(file: string): number {
  const fd = openSync(file, "w");
  const buf = Buffer.alloc((32 << 20) + 2 * P);
  let pos = 0;
  const u8 = (v: number) => (buf[pos++] = v & 0xff);
  const be32 = (v: number) => {
    buf.writeUInt32BE(v >>> 0, pos);
    pos += 4;
  };
  const str = (s: string) => (pos += buf.write(s, pos, "latin1"));
  const flush = () => {
    writeSync(fd, buf, 0, pos);
    pos = 0;
  };
  str("QEVM");
  be32(3);
  u8(0x07);
  be32(13);
  str("pc-i440fx-7.2");
  u8(0x01); // START ram, MEM_SIZE
  be32(2);
  u8(3);
  str("ram");
  be32(0);
  be32(4);
  be32(0);
  be32(GUEST | 0x04);
  u8(6);
  str("pc.ram");
  be32(0);
  be32(GUEST);
  be32(0);
  be32(0x10);
  u8(0x7e);
  be32(2);
  const pool = Buffer.alloc(16 * P);
  const random = new SeededRandom(0x9e3779b9);
  for (let i = 0; i < pool.length; i += 4) pool.writeUInt32LE(random.u32(), i);
  let first = true;
  const open = () => {
    u8(0x02);
    be32(2);
    first = true;
  };
  const close = () => {
    be32(0);
    be32(0x10);
    u8(0x7e);
    be32(2);
    flush();
  };
  open();
  for (let i = 0; i < GUEST / P; i++) {
    const data = Math.imul(i, 0x9e3779b1) >>> 30 === 0; // a quarter of the pages, spread out
    be32(0);
    be32(i * P + (data ? 0x08 : 0x02) + (first ? 0 : 0x20));
    if (first) {
      u8(6);
      str("pc.ram");
      first = false;
    }
    if (data) {
      pool.copy(buf, pos, (i % 16) * P, (i % 16) * P + P);
      buf.writeUInt32LE(i, pos);
      pos += P;
    } else u8(0);
    if (pos >= 32 << 20) {
      close();
      open();
    }
  }
  close();
  u8(0x03); // END ram
  be32(2);
  be32(0);
  be32(0x10);
  u8(0x7e);
  be32(2);
  u8(0x00); // EOF
  const vmdesc = JSON.stringify({ page_size: P, devices: [] });
  u8(0x06);
  be32(vmdesc.length);
  str(vmdesc);
  flush();
  closeSync(fd);
  return statSync(file).size;
}

describe("bounded memory", () => {
  const dir = suiteTempDir("vmstream-rss-");

  it("a 2 GiB guest's stream (25 % non-zero pages) is checked and decoded without its RAM under 150 MB RSS", () => {
    expect(existsSync(NODE_MODULE)).toBe(true);
    const file = join(dir(), "guest-2g.mig");
    const size = writeGuestStream(file);
    expect(size).toBeGreaterThan(500e6);
    // Peak RSS of this process's own memory: VmHWM. (getrusage's maxRSS also counts the image of the parent
    // this child was forked from, here the test worker, before it exec'd node.)
    const child = `
      const { readFileSync } = await import("node:fs");
      const peakRssKiB = () => {
        try {
          return Number(/VmHWM:\\s+(\\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))[1]);
        } catch {
          return process.resourceUsage().maxRSS;
        }
      };
      const { validateFile, decodeFile } = await import(${JSON.stringify(NODE_MODULE)});
      const v = await validateFile(${JSON.stringify(file)});
      const r = await decodeFile(${JSON.stringify(file)});
      const ram = r.live.ram;
      console.log(JSON.stringify({ ok: v.ok, error: v.error?.message, bytes: v.summary.bytes, complete: r.completeness.complete,
        records: ram.records, kept: ram.blocks.map((b) => b.data !== undefined), maxRssKiB: peakRssKiB() }));
      r.dispose();`;
    const res = spawnSync(process.execPath, ["--input-type=module", "-e", child], { encoding: "utf8" });
    expect(res.stderr).toBe("");
    const out = JSON.parse(res.stdout) as {
      ok: boolean;
      bytes: number;
      complete: boolean;
      records: { zero: number; normal: number };
      kept: boolean[];
      maxRssKiB: number;
    };
    expect(out).toMatchObject({ ok: true, bytes: size, complete: true, kept: [false] });
    expect(out.records.normal + out.records.zero).toBe(GUEST / P);
    expect(out.records.normal).toBeGreaterThan(0.24 * (GUEST / P));
    expect(out.maxRssKiB / 1024).toBeLessThan(150);
  });
});
