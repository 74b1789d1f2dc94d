// Bounded memory of `vmstream convert` (QEMU -> QEMU): the stream of a 1 GiB guest with half its pages
// non-zero (~539 MB), built on the fly here with the library's encoder, is piped through the CLI's
// convertCommand (stdin -> stdout) in a fresh process; the output is byte-identical and the child's peak RSS
// stays under 160 MB, far below the stream's size. Runs the built dist/ (`npm test` builds first).
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { StreamBerConverter } from "../../src/convert/to-ber.js";
import { ByteWriter } from "../../src/io/writer.js";
import { StreamEncoder } from "../../src/savevm/encoder.js";
import { RamWriter } from "../../src/sections/ram/writer.js";
import { SeededRandom } from "../helpers/random.js";

const P = 4096;
const GUEST = 2 ** 30;
const SECTION = 8 << 20;
const CONVERT = fileURLToPath(new URL("../../dist/cli/convert.js", import.meta.url));
const RSS_CAP = 160e6;
/** BER: the current section's input (8 MiB here) is held and copied into one piece, and its output refers to it. */
const BER_RSS_CAP = 200e6;

/** A pc-i440fx-7.2 stream: ram START (MEM_SIZE pc.ram), PARTs of 8 MiB of records (every other page data), END, EOF, vmdesc. */
function* guestStream(): Generator<Uint8Array> {
  // copy every page into the writer: one page buffer is reused for all of them
  const w = new ByteWriter({ initialCapacity: SECTION + (1 << 20), borrowMin: Number.POSITIVE_INFINITY });
  const enc = new StreamEncoder(w);
  const ram = new RamWriter(w, P);
  const page = new SeededRandom(0x2545f491).bytes(P);
  const dv = new DataView(page.buffer);
  enc.header();
  enc.configuration({ machine: "pc-i440fx-7.2" });
  enc.begin("start", 2, "ram", 0, 4);
  ram.memSize([{ name: "pc.ram", length: BigInt(GUEST) }]);
  ram.eos();
  enc.end();
  yield* w.takeChunks();
  const perSection = SECTION / P;
  for (let first = 0; first < GUEST / P; first += perSection) {
    enc.begin("part", 2);
    for (let i = first; i < first + perSection; i++) {
      if (i % 2 === 0) {
        dv.setUint32(0, i);
        ram.page("pc.ram", BigInt(i * P), page);
      } else ram.zero("pc.ram", BigInt(i * P));
    }
    ram.eos();
    enc.end();
    yield* w.takeChunks();
  }
  enc.begin("end", 2);
  ram.eos();
  enc.end();
  enc.finishStream();
  yield* w.takeChunks();
}

interface ChildRun {
  rc: number;
  hwm: number;
  stderr: string;
  inBytes: number;
  inHash: string;
  outBytes: number;
  outHash: string;
  /** What each input chunk gave the parent's own `also` consumer (hash of its output). */
  alsoHash: string;
  alsoBytes: number;
}

/** Pipe the guest stream through convertCommand("-", "-", { to }) in a fresh node; `also` sees every input chunk too. */
async function throughChild(to: "qemu" | "ber", also?: { push(c: Uint8Array): Uint8Array[]; end(): { chunks: Uint8Array[] } }): Promise<ChildRun> {
  // Peak RSS of the child's own memory: VmHWM (see decoder-memory.test.ts), printed after the conversion.
  const script = `
    import { readFileSync } from "node:fs";
    const { convertCommand } = await import(${JSON.stringify(CONVERT)});
    const rc = await convertCommand("-", "-", { to: ${JSON.stringify(to)} });
    const hwm = Number(/VmHWM:\\s+(\\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))[1]) * 1024;
    process.stderr.write("RESULT " + JSON.stringify({ rc, hwm }) + "\\n");
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "pipe"] });
  try {
    const outHash = createHash("sha256");
    let outBytes = 0;
    child.stdout.on("data", (c: Buffer) => {
      outHash.update(c);
      outBytes += c.length;
    });
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = once(child, "exit");
    const inHash = createHash("sha256");
    const alsoHash = createHash("sha256");
    let inBytes = 0;
    let alsoBytes = 0;
    const take = (chunks: Uint8Array[]) => {
      for (const o of chunks) {
        alsoHash.update(o);
        alsoBytes += o.length;
      }
    };
    for (const c of guestStream()) {
      inHash.update(c);
      inBytes += c.length;
      if (also) take(also.push(c));
      if (!child.stdin.write(c)) await once(child.stdin, "drain");
    }
    if (also) take(also.end().chunks);
    child.stdin.end();
    await exited;
    const m = /RESULT (.*)/.exec(stderr);
    expect(m, stderr).not.toBeNull();
    const { rc, hwm } = JSON.parse(m![1]!) as { rc: number; hwm: number };
    return { rc, hwm, stderr, inBytes, inHash: inHash.digest("hex"), outBytes, outHash: outHash.digest("hex"), alsoHash: alsoHash.digest("hex"), alsoBytes };
  } finally {
    child.kill();
  }
}

describe("bounded memory of convert", () => {
  it("a 1 GiB guest's stream (~539 MB) converts through stdin/stdout byte-identically under 160 MB peak RSS", async () => {
    expect(existsSync(CONVERT)).toBe(true);
    const r = await throughChild("qemu");
    expect(r.rc, r.stderr).toBe(0);
    expect(r.inBytes).toBeGreaterThan(530e6);
    expect(r.outBytes).toBe(r.inBytes);
    expect(r.outHash).toBe(r.inHash);
    console.log(`convert: ${r.inBytes} bytes, child peak RSS ${(r.hwm / 1e6).toFixed(1)} MB`);
    expect(r.hwm).toBeLessThan(RSS_CAP);
    expect(r.hwm).toBeLessThan(r.inBytes / 3);
  }, 300_000);

  it("--to ber: the same stream to BER under 200 MB peak RSS (the bytes StreamBerConverter gives here)", async () => {
    const r = await throughChild("ber", new StreamBerConverter());
    expect(r.rc, r.stderr).toBe(0);
    expect(r.outBytes).toBeGreaterThan(r.inBytes); // BER framing is larger than the wire's
    expect(r.outBytes).toBe(r.alsoBytes);
    expect(r.outHash).toBe(r.alsoHash);
    console.log(`convert --to ber: ${r.inBytes} -> ${r.outBytes} bytes, child peak RSS ${(r.hwm / 1e6).toFixed(1)} MB`);
    expect(r.hwm).toBeLessThan(BER_RSS_CAP);
  }, 300_000);
});
