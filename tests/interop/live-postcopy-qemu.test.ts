// Postcopy through the `vmstream receive --forward` tap, with real QEMU 7.2 on both sides.
// Source and destination have the postcopy-ram capability; the source guest (tests/helpers/mbguest.ts) keeps
// dirtying 1024 pages and the bandwidth is capped with a 1 ms downtime limit, so precopy cannot finish by
// itself; then `migrate-start-postcopy`. The destination runs (no -S) as soon as the PACKAGED device state is
// loaded and faults on pages it has not received yet: it asks the source for them over the return path
// (MIG_RP_MSG_REQ_PAGES), which only works if the tap relays the return path. Checked: the migration
// completes on both sides with postcopy page requests served, the destination guest runs on past the source's
// counter, `receive` exits 0, and its --out recording (PACKAGED command inside, no vmdesc: QEMU writes none
// after postcopy) decodes as complete, also by `vmstream check`; its RAM equals the destination's memory
// everywhere the guest does not write (outside MBGUEST_DIRTY), and equals the source's frozen RAM everywhere;
// `vmstream convert` writes the recording again byte-identically.
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { reencodeStream } from "../../src/convert/qemu.js";
import { joinChunks } from "../../src/io/chunks.js";
import { nodeInflate } from "../../src/io/node.js";
import type { QmpMigrationInfo } from "../../src/qmp/index.js";
import { CMD } from "../../src/savevm/constants.js";
import type { DecodeResult } from "../../src/savevm/types.js";
import { decodeBytes, ramOf } from "../../src/sections/stream.js";
import { cliExitCode, cliListeningPort, expectMemory, mbguestCounter, pcRamRanges, qemuSuite, runVmstream, sleep, startMbguest } from "../helpers/interop.js";
import { MBGUEST_DIRTY, writeMbguest } from "../helpers/mbguest.js";
import { ramBlockBytes } from "../helpers/model-stream.js";
import { describeQemu, type QemuInstance, startQemu } from "../helpers/qemu.js";

const X86 = "qemu-system-x86_64";
const MIB = 1024 * 1024;
const GUEST_MIB = 32;
/** Plain pc.ram below 4 GiB (not the VGA/ROM window 0xa0000-0x100000). */
const RANGES = pcRamRanges(GUEST_MIB);
/** The same, without the window the guest writes to. */
const QUIET_RANGES = [
  { addr: 0, size: 0xa0000 },
  { addr: 0x100000, size: MBGUEST_DIRTY.start - 0x100000 },
  { addr: MBGUEST_DIRTY.end, size: GUEST_MIB * MIB - MBGUEST_DIRTY.end },
];
const FINAL = new Set(["completed", "failed", "cancelled"]);
const guestArgs = (kernel: string): string[] => ["-machine", "pc", "-m", String(GUEST_MIB), "-kernel", kernel];
const POSTCOPY = { capabilities: [{ capability: "postcopy-ram", state: true }] };

async function waitFinal(q: QemuInstance, what: string, timeoutMs = 30_000): Promise<QmpMigrationInfo> {
  const t0 = performance.now();
  for (;;) {
    const info = await q.qmp.execute("query-migrate");
    if (info.status !== undefined && FINAL.has(info.status)) return info;
    if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: no final status within ${timeoutMs} ms: ${JSON.stringify(info)}`);
    await sleep(20);
  }
}

describeQemu(X86, "postcopy with real QEMU 7.2 through `vmstream receive --forward`", () => {
  const scratchOf = qemuSuite();

  it("source -> tap (--out) -> destination, switched to postcopy: completes, pages requested over the relayed return path, recording complete", async () => {
    const scratch = scratchOf();
    const kernel = join(scratch, "mbguest.bin");
    writeMbguest(kernel);
    // not paused: in postcopy the destination starts the guest itself once the device state is loaded
    const dst = await startQemu({ binary: X86, args: guestArgs(kernel), incoming: "defer", paused: false });
    await dst.qmp.execute("migrate-set-capabilities", POSTCOPY);
    await dst.qmp.execute("migrate-incoming", { uri: "tcp:127.0.0.1:0" });
    const addrs = (await dst.qmp.execute("query-migrate"))["socket-address"] as { port: string }[] | undefined;
    const dstPort = Number(addrs?.[0]?.port);
    expect(dstPort).toBeGreaterThan(0);

    const rec = join(scratch, "postcopy.mig");
    const tap = runVmstream(["receive", "tcp:127.0.0.1:0", "--forward", `tcp:127.0.0.1:${dstPort}`, "--out", rec]);
    const port = await cliListeningPort(tap);

    const src = await startMbguest(X86, guestArgs(kernel));
    await src.qmp.execute("migrate-set-capabilities", POSTCOPY);
    // precopy cannot converge (1 ms downtime, 4 MiB/s against a guest re-dirtying 4 MiB); postcopy is capped
    // too, so the destination guest faults on pages not yet pushed and has to request them
    await src.qmp.execute("migrate-set-parameters", { "max-bandwidth": 4 * MIB, "max-postcopy-bandwidth": 4 * MIB, "downtime-limit": 1 });
    await src.qmp.execute("migrate", { uri: `tcp:127.0.0.1:${port}` });
    // switch once part of the first pass is out: a good part of the guest's window is then still on the source
    for (let i = 0; ; i++) {
      const info = await src.qmp.execute("query-migrate");
      expect(["setup", "active"], `${JSON.stringify(info)}\n${src.stderr()}`).toContain(info.status);
      if ((info.ram?.transferred ?? 0) > MIB) break;
      expect(i, "1 MiB not sent within 10 s").toBeLessThan(500);
      await sleep(20);
    }
    await src.qmp.execute("migrate-start-postcopy");

    const sinfo = await waitFinal(src, "source");
    expect(sinfo.status, `${JSON.stringify(sinfo)}\n${src.stderr()}`).toBe("completed");
    const dinfo = await waitFinal(dst, "destination");
    expect(dinfo.status, `${JSON.stringify(dinfo)}\n${dst.stderr()}`).toBe("completed");
    // pages the destination asked for over the return path (through the tap) and the source served
    expect(Number(sinfo.ram?.["postcopy-requests"] ?? 0), JSON.stringify(sinfo)).toBeGreaterThan(0);
    expect(await cliExitCode(tap), tap.stderr()).toBe(0);
    expect(tap.stdout()).toMatch(/^complete: /m);
    // every byte went both ways: to the destination and into the recording
    const fwdBytes = /^forward: (\d+) bytes/m.exec(tap.stdout());
    expect(fwdBytes, tap.stdout()).not.toBeNull();
    expect(statSync(rec).size).toBe(Number(fwdBytes![1]));
    expect((await src.qmp.execute("query-status")).status).toBe("postmigrate");
    expect((await dst.qmp.execute("query-status")).status).toBe("running");

    // the destination guest carried on from the source's final state
    const srcCounter = await mbguestCounter(src);
    const c1 = await mbguestCounter(dst);
    await sleep(200);
    const c2 = await mbguestCounter(dst);
    expect(c1).toBeGreaterThan(srcCounter);
    expect(c2).toBeGreaterThan(c1);

    // the recording: complete, with the postcopy commands (device state in a PACKAGED command)
    const bytes = new Uint8Array(readFileSync(rec));
    expect(bytes.length).toBe(statSync(rec).size);
    const r: DecodeResult = decodeBytes(bytes, { materialize: { ram: true }, inflate: nodeInflate });
    try {
      expect(r.completeness.complete, JSON.stringify(r.completeness)).toBe(true);
      expect(r.completeness.vmdesc).toBe(false); // QEMU sends no vmdesc after postcopy
      expect(r.bytes).toBe(bytes.length);
      const names = r.commands.map((c) => c.name);
      for (const c of ["OPEN_RETURN_PATH", "POSTCOPY_ADVISE", "PACKAGED", "POSTCOPY_LISTEN", "POSTCOPY_RUN"]) expect(names, c).toContain(c);
      const packaged = r.commands.find((c) => c.cmd === CMD.PACKAGED)!;
      expect(r.commands.filter((c) => c.depth > 0).map((c) => c.name)).toEqual(expect.arrayContaining(["POSTCOPY_LISTEN", "POSTCOPY_RUN"]));
      expect(packaged.depth).toBe(0);
      // the device state (every FULL section) travels inside the package: cmd byte, u16 cmd, u16 len, u32 size
      const body = { start: packaged.offset, end: packaged.offset + 9 + Number(packaged.fields["size"]) };
      const full = r.sections.filter((s) => s.type === "full");
      expect(full.length).toBeGreaterThan(5);
      expect(full.filter((s) => s.offset < body.start || s.offset >= body.end).map((s) => s.idstr)).toEqual([]);
      const ram = ramOf(r)!;
      // pages pushed or requested after the switch are ordinary RAM PART records (nothing marks them as
      // postcopy on the wire); together with precopy's they are exactly what QEMU counted
      expect(ram.records.normal).toBe(sinfo.ram!.normal);
      expect(ram.records.zero).toBe(sinfo.ram!.duplicate);
      const run = r.commands.find((c) => c.cmd === CMD.POSTCOPY_RUN)!;
      expect(r.sections.filter((s) => s.idstr === "ram" && s.offset > run.offset).length).toBeGreaterThan(0);
      const pcRam = ramBlockBytes(r, "pc.ram");
      // the source froze at the switch: its RAM is what the recording materialises, the guest window included
      await expectMemory(src, pcRam, RANGES, "source vs recording");
      await dst.qmp.execute("stop");
      await expectMemory(dst, pcRam, QUIET_RANGES, "destination vs recording (outside the guest's window)");
      expect(new DataView(pcRam.buffer, pcRam.byteOffset).getUint32(MBGUEST_DIRTY.start, true)).toBe(srcCounter);
    } finally {
      r.dispose();
    }

    const check = runVmstream(["check", rec]);
    expect(await cliExitCode(check), check.stderr()).toBe(0);
    // the recording (PACKAGED device state, no vmdesc) re-encodes through the model byte for byte
    const converted = join(scratch, "postcopy-converted.mig");
    const conv = runVmstream(["convert", rec, converted]);
    expect(await cliExitCode(conv), conv.stderr()).toBe(0);
    const again = new Uint8Array(readFileSync(converted));
    expect(again.length).toBe(bytes.length);
    expect(Buffer.compare(Buffer.from(again), Buffer.from(bytes)), "converted recording differs").toBe(0);
    // and so does the in-memory replay
    const mem = reencodeStream(bytes, { decode: { inflate: nodeInflate } });
    expect(Buffer.compare(Buffer.from(joinChunks(mem.chunks, mem.bytes)), Buffer.from(bytes)), "reencodeStream differs").toBe(0);
    expect(mem.report.devices).toBeGreaterThan(5);
    await src.stop();
    await dst.stop();
  }, 60_000);
});
