#!/usr/bin/env node
// Live migration of a running v86 guest between two Node processes over TCP on 127.0.0.1, next to v86's own
// stop-and-copy (save_state -> socket -> restore_state) on the same guest.
//
//   npm run demo:v86 [-- --mem 32 --fill 0.9 --json]   (defaults shown)
//
// The guest is vmstream's own boot sector (src/v86/guest.ts), booted by Debian's SeaBIOS; it counts on COM1 and
// keeps rewriting a 512 KiB window. --fill F fills that fraction of RAM above 1 MiB with random bytes from the
// host first ("most RAM in use"). The destination runs in a child process (this file with --destination).
import { spawn } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { connect, createServer } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const MIB = Number(opt("--mem", "32"));
const FILL = Number(opt("--fill", "0.9"));
const JSON_OUT = args.includes("--json");
const say = (s) => {
  if (!JSON_OUT) console.log(s);
};

let v86;
try {
  v86 = await import("../dist/v86/index.js");
} catch (e) {
  console.error(`vmstream is not built (run npm install): ${e.message}`);
  process.exit(1);
}
const { V86Machine, migrateV86Source, receiveV86, biosInstalled, DEFAULT_BIOS, parseGuestLines } = v86;

if (!biosInstalled()) {
  console.error(`This demo boots its guest with SeaBIOS, which v86 does not ship and which is missing here:
  no ${DEFAULT_BIOS}.
Install it (Debian/Ubuntu: sudo apt-get install seabios) and run the demo again.`);
  process.exit(2);
}

const machineOptions = { memorySize: MIB << 20 };

// ---------------------------------------------------------------------------------------- destination roles
if (args.includes("--destination")) {
  const mode = opt("--destination", "live");
  const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
  const m = await V86Machine.create({ ...machineOptions, autostart: false });
  try {
    if (mode === "live") {
      const r = await receiveV86(m, { port: 0 }, { onListening: (a) => out({ listening: a.port }) });
      out({ received: r });
    } else {
      // v86's own stop-and-copy: the whole save_state() blob over the socket, restore_state(), run()
      await new Promise((resolve, reject) => {
        const server = createServer({ allowHalfOpen: true }, (sock) => {
          server.close();
          const chunks = [];
          let n = 0;
          sock.on("data", (b) => (chunks.push(b), (n += b.length)));
          sock.on("end", async () => {
            try {
              const t = performance.now();
              const state = new Uint8Array(n);
              let o = 0;
              for (const c of chunks) state.set(c, (o += c.length) - c.length);
              await m.emu.restore_state(state.buffer);
              await m.resume();
              sock.end(JSON.stringify({ ok: true, bytes: n, restoreMs: performance.now() - t }) + "\n");
              resolve();
            } catch (e) {
              sock.end(JSON.stringify({ ok: false, error: String(e) }) + "\n");
              reject(e);
            }
          });
        });
        server.listen(0, "127.0.0.1", () => out({ listening: server.address().port }));
      });
      out({ received: true });
    }
    const from = m.serial.length;
    // until the guest's first status line here (at most 30 s: a busy machine runs the guest slowly)
    await m.waitForSerial(/C=\w{8} T=\w{8}\r\n/, Number(opt("--run-ms", "30000")), from).catch(() => undefined);
    out({ serial: m.serial.slice(from) });
  } catch (e) {
    out({ error: e.message });
  } finally {
    await m.destroy();
  }
  process.exit(0);
}

// ---------------------------------------------------------------------------------------- source
function destination(mode) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--destination", mode, "--mem", String(MIB)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const queue = [];
  let wake;
  createInterface({ input: child.stdout }).on("line", (l) => (queue.push(JSON.parse(l)), wake?.()));
  child.once("exit", () => wake?.());
  return {
    child,
    async next() {
      while (queue.length === 0) {
        if (child.exitCode !== null) throw new Error("the destination process exited");
        await new Promise((r) => (wake = r));
      }
      return queue.shift();
    },
  };
}

async function bootSource() {
  const m = await V86Machine.create(machineOptions);
  if (FILL > 0) {
    // random data above 1 MiB, written while the guest has barely started (data pages: no compiled code there)
    const ram = m.ramView();
    const end = 0x100000 + Math.floor((ram.length - 0x100000) * FILL);
    for (let o = 0x100000; o < end; o += 65536) randomFillSync(ram.subarray(o, Math.min(end, o + 65536)));
  }
  await m.waitForSerial(/C=\w{8} T=\w{8}\r\n/, 30_000);
  return m;
}

const lastCounter = (serial) => parseGuestLines(serial).at(-1)?.counter;
const hex = (n) => (n === undefined ? "-" : n.toString(16).padStart(8, "0").toUpperCase());

async function live() {
  const src = await bootSource();
  const dst = destination("live");
  const port = (await dst.next()).listening;
  say(`source: ${MIB} MiB guest running (${src.serial.trim().split("\r\n").at(-1)}), destination pid ${dst.child.pid} on 127.0.0.1:${port}`);
  const rounds = [];
  const r = await migrateV86Source(
    src,
    { port },
    {
      onRound: (x) => {
        rounds.push(x);
        say(
          `  round ${x.round}: ${(x.bytes / 1048576).toFixed(2)} MiB, ${x.pagesSent} pages sent, ${x.dirtied} dirtied meanwhile, ${(x.seconds * 1000).toFixed(1)} ms, expected downtime ${(x.expectedDowntime * 1000).toFixed(1)} ms`,
        );
      },
    },
  );
  const srcLast = lastCounter(src.serial);
  const received = await dst.next();
  const serial = (await dst.next()).serial ?? "";
  const pages = r.reply.pages;
  const result = {
    mode: "vmstream live",
    memMiB: MIB,
    fill: FILL,
    rounds: rounds.length,
    reason: r.live.reason,
    bytes: r.live.totalBytes,
    pages,
    pageBytes: { zero: pages.zero * 9, normal: pages.normal * (8 + 4096) },
    stateBytes: r.stateBytes,
    downtimeMs: r.downtimeMs,
    sourceDowntimeMs: r.live.downtime * 1000,
    destinationRestoreMs: r.reply.restoreMs,
    totalMs: r.totalMs,
    sourceLastCounter: srcLast,
    destinationFirstCounter: parseGuestLines(serial)[0]?.counter,
    rebooted: serial.includes("VMSTREAM GUEST BOOT"),
  };
  say(`switched over after ${rounds.length} rounds (${r.live.reason}); ${(r.live.totalBytes / 1048576).toFixed(2)} MiB sent`);
  say(
    `  pages: ${pages.normal} normal (${((pages.normal * 4104) / 1048576).toFixed(2)} MiB), ${pages.zero} zero (${((pages.zero * 9) / 1024).toFixed(1)} KiB), ${pages.xbzrle} XBZRLE; device state ${(r.stateBytes / 1024).toFixed(1)} KiB`,
  );
  say(
    `  downtime ${r.downtimeMs.toFixed(1)} ms (source stop -> destination running; restore on the destination ${r.reply.restoreMs.toFixed(1)} ms), total ${r.totalMs.toFixed(0)} ms`,
  );
  say(
    `  serial: source's last count C=${hex(srcLast)}; destination continues with C=${hex(result.destinationFirstCounter)}${result.rebooted ? " AFTER A REBOOT (bug)" : ", no reboot"}`,
  );
  await src.destroy();
  void received;
  return result;
}

async function stopAndCopy() {
  const src = await bootSource();
  const dst = destination("raw");
  const port = (await dst.next()).listening;
  const sock = await new Promise((ok, fail) => {
    const s = connect({ host: "127.0.0.1", port }, () => ok(s));
    s.once("error", fail);
  });
  const t0 = performance.now();
  await src.pause();
  const state = new Uint8Array(await src.emu.save_state());
  const saved = performance.now();
  const reply = new Promise((ok) => {
    let text = "";
    sock.on("data", (b) => {
      text += b;
      if (text.includes("\n")) ok(JSON.parse(text));
    });
  });
  sock.end(state);
  const r = await reply;
  const t1 = performance.now();
  const srcLast = lastCounter(src.serial);
  await dst.next();
  const serial = (await dst.next()).serial ?? "";
  sock.destroy();
  await src.destroy();
  const result = {
    mode: "v86 save_state+restore_state",
    memMiB: MIB,
    fill: FILL,
    bytes: state.length,
    saveMs: saved - t0,
    destinationRestoreMs: r.restoreMs,
    downtimeMs: t1 - t0,
    totalMs: t1 - t0,
    sourceLastCounter: srcLast,
    destinationFirstCounter: parseGuestLines(serial)[0]?.counter,
    rebooted: serial.includes("VMSTREAM GUEST BOOT"),
  };
  say(
    `v86's own stop-and-copy on the same guest: ${(state.length / 1048576).toFixed(2)} MiB state, save_state ${result.saveMs.toFixed(1)} ms, restore_state ${r.restoreMs.toFixed(1)} ms, downtime ${result.downtimeMs.toFixed(1)} ms`,
  );
  return result;
}

const a = await live();
const b = await stopAndCopy();
say(
  `=> downtime: vmstream live ${a.downtimeMs.toFixed(1)} ms vs stop-and-copy ${b.downtimeMs.toFixed(1)} ms (${(b.downtimeMs / a.downtimeMs).toFixed(1)}x lower)`,
);
if (JSON_OUT) console.log(JSON.stringify({ live: a, stopAndCopy: b }));
process.exit(0);
