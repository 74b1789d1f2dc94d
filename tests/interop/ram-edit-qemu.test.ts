// Issue 5 item 4 (b): edit guest RAM through the library. A QEMU save of `pc -m 16` (ran 300 ms, stopped) is
// decoded; a new stream carries the original RAM in its first PART, then further PART sections with
//   - full PAGE records with a pattern (RamWriter.page),
//   - ZERO records for pages that the previous PART made non-zero (RamWriter.zero),
//   - XBZRLE records computed by kernels.xbzrleEncode against the page the destination holds at that point
//     (including deltas onto pages just zeroed and onto pages still holding the source's content),
//   - more full pages and deltas in a later PART (deltas against deltas),
// then END, the devices, EOF, vmdesc. QEMU loads it and its memory (pmemsave), below 640 KiB and at 2 MiB, is
// byte for byte the expected content (the mirror the test kept while writing).
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { nodeInflate } from "../../src/io/node.js";
import type { Kernels } from "../../src/kernels/types.js";
import type { RamWriter } from "../../src/sections/ram/writer.js";
import { decodeBytes } from "../../src/sections/stream.js";
import { loadAndRun, qemuSuite, saveStopped } from "../helpers/interop.js";
import { buildModelStream, ramBlockBytes } from "../helpers/model-stream.js";
import { describeQemu, pmemsave } from "../helpers/qemu.js";

const X86 = "qemu-system-x86_64";
const PAGE = 4096;

/** The regions edited, as pc.ram offsets (= guest-physical addresses there). */
const LOW = { addr: 0x10000, pages: 16 }; // below 640 KiB
const HIGH = { addr: 0x200000, pages: 64 }; // at 2 MiB

describeQemu(X86, "RAM edited through the library (PAGE, ZERO, XBZRLE over several PARTs): QEMU's memory shows the pattern", () => {
  const scratch = qemuSuite();

  it("pc -m 16: pattern pages, zeroed pages and XBZRLE deltas land exactly", async () => {
    const args = ["-machine", "pc", "-m", "16"];
    const saved = join(scratch(), "pc16.mig");
    await saveStopped(X86, args, saved, { runMs: 300 });

    const input = new Uint8Array(readFileSync(saved));
    const decoded = decodeBytes(input, { materialize: { ram: true }, inflate: nodeInflate });
    const k = decoded.kernels as Kernels;
    // the destination's pc.ram as it will be after each record (starts as the source's RAM)
    const mirror = ramBlockBytes(decoded, "pc.ram").slice();
    const oldPtr = k.alloc(PAGE, 4096);
    const newPtr = k.alloc(PAGE, 4096);
    const outPtr = k.alloc(PAGE, 4096);
    const counts = { page: 0, zero: 0, xbzrle: 0, xbzrleOntoZero: 0, xbzrleOntoSource: 0 };
    const pages = (reg: { addr: number; pages: number }): number[] => Array.from({ length: reg.pages }, (_, i) => reg.addr + i * PAGE);
    const low = pages(LOW);
    const high = pages(HIGH);

    const fullPage = (ram: RamWriter, off: number, seed: number): void => {
      const p = new Uint8Array(PAGE);
      for (let j = 0; j < PAGE; j++) p[j] = ((j * 7 + seed * 31 + (j >> 8)) & 0xff) | 1;
      ram.page("pc.ram", BigInt(off), p);
      mirror.set(p, off);
      counts.page++;
    };
    const delta = (ram: RamWriter, off: number, seed: number): void => {
      const old = mirror.subarray(off, off + PAGE);
      const neu = old.slice();
      const at = (seed * 97) % 3800;
      for (let j = 0; j < 120; j++) neu[at + j] = ((seed + j * 3) & 0xff) ^ 0x5a;
      neu[4095] = neu[4095]! ^ 0xff;
      neu[(seed * 13) % 64] = neu[(seed * 13) % 64]! ^ 0x81;
      k.u8.set(old, oldPtr);
      k.u8.set(neu, newPtr);
      const n = k.xbzrleEncode(oldPtr, newPtr, outPtr, PAGE, PAGE);
      expect(n, `xbzrle at 0x${off.toString(16)}`).toBeGreaterThan(0);
      if (old.every((b) => b === 0)) counts.xbzrleOntoZero++;
      ram.xbzrle("pc.ram", BigInt(off), k.u8.slice(outPtr, outPtr + n));
      mirror.set(neu, off);
      counts.xbzrle++;
    };

    const ramParts: ((ram: RamWriter) => void)[] = [
      // PART 2: deltas against the source's own content (what the first PART left), then full pattern pages
      (ram) => {
        for (const off of low.filter((_, i) => i % 4 === 3)) {
          delta(ram, off, off >> 12);
          counts.xbzrleOntoSource++;
        }
        for (const off of high) fullPage(ram, off, off >> 12);
        for (const off of low.filter((_, i) => i % 4 === 0)) fullPage(ram, off, (off >> 12) + 5);
      },
      // PART 3: ZERO records for pattern pages (non-zero now)
      (ram) => {
        for (const off of high.filter((_, i) => i % 4 === 0)) {
          ram.zero("pc.ram", BigInt(off));
          mirror.fill(0, off, off + PAGE);
          counts.zero++;
        }
        ram.zero("pc.ram", BigInt(low[0]!));
        mirror.fill(0, low[0]!, low[0]! + PAGE);
        counts.zero++;
      },
      // PART 4: XBZRLE deltas against pattern pages and against the pages just zeroed
      (ram) => {
        for (const off of high.filter((_, i) => i % 4 === 1 || i % 8 === 0)) delta(ram, off, (off >> 12) + 1);
        delta(ram, low[0]!, 3);
      },
      // PART 5: full pages over deltas, deltas over deltas
      (ram) => {
        for (const off of high.filter((_, i) => i % 4 === 2)) fullPage(ram, off, (off >> 12) + 9);
        for (const off of high.filter((_, i) => i % 8 === 1 || i % 8 === 0)) delta(ram, off, (off >> 12) + 2);
      },
    ];
    let bytes: Uint8Array;
    try {
      bytes = buildModelStream(input, decoded, { ramParts }).bytes;
    } finally {
      k.free(oldPtr);
      k.free(newPtr);
      k.free(outPtr);
      decoded.dispose();
    }
    expect(counts.zero).toBe(17);
    expect(counts.xbzrleOntoZero).toBeGreaterThanOrEqual(8);
    expect(counts.xbzrleOntoSource).toBe(4);
    const file = join(scratch(), "pc16-edited.mig");
    writeFileSync(file, bytes);

    await loadAndRun(X86, args, file, {
      paused: async (dst) => {
        for (const reg of [LOW, HIGH]) {
          const dump = join(dst.dir, `r${reg.addr}.mem`);
          await pmemsave(dst, reg.addr, reg.pages * PAGE, dump);
          const got = new Uint8Array(readFileSync(dump));
          const want = mirror.subarray(reg.addr, reg.addr + reg.pages * PAGE);
          const firstDiff = got.findIndex((b, i) => b !== want[i]);
          expect(firstDiff, `first differing byte in the region at 0x${reg.addr.toString(16)}`).toBe(-1);
        }
        // the rest of RAM is the source's: spot-check the 1 MiB below the edited high region
        const dump = join(dst.dir, "rest.mem");
        await pmemsave(dst, 0x100000, 0x100000, dump);
        expect(Buffer.compare(readFileSync(dump), Buffer.from(mirror.subarray(0x100000, 0x200000)))).toBe(0);
      },
    });
  }, 120_000);
});
