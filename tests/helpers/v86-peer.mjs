// A v86 migration peer in its own Node process (tests, demo, benchmark). Usage:
//   node tests/helpers/v86-peer.mjs receive <memMiB> [--verify] [--fill-seed N] [--quit-after-ms N] [--channels N]
// Creates a stopped v86 machine with vmstream's guest, listens on 127.0.0.1 port 0, prints one JSON line
// {"listening":{port}} on stdout, receives one migration, prints {"received":...} (or {"error":...}), then
// prints the guest's serial output up to its first status line (at most `--run-ms` ms) as {"serial":"..."}, exits.
// With --die-after-bytes N it exits abruptly once N bytes have arrived (a broken transfer); with --channels N it
// expects a multifd migration with N channels.
import { receiveV86, V86Machine } from "../../dist/v86/index.js";

const [, , mode, memArg, ...rest] = process.argv;
const flag = (name) => rest.includes(name);
const num = (name, dflt) => {
  const i = rest.indexOf(name);
  return i >= 0 ? Number(rest[i + 1]) : dflt;
};
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

if (mode !== "receive") {
  out({ error: `unknown mode ${mode}` });
  process.exit(2);
}
const machine = await V86Machine.create({
  memorySize: Number(memArg) << 20,
  autostart: false,
  ...(num("--vga-kib") ? { vgaMemorySize: num("--vga-kib") << 10 } : {}),
});
const dieAfter = num("--die-after-bytes", 0);
try {
  const r = await receiveV86(
    machine,
    { port: 0 },
    {
      verify: flag("--verify"),
      ...(num("--channels", 0) ? { channels: num("--channels", 0) } : {}),
      onListening: (a) => out({ listening: a }),
      ...(dieAfter
        ? {
            onProgress: (p) => {
              if (p.bytes >= dieAfter) process.exit(3);
            },
          }
        : {}),
    },
  );
  const from = machine.serial.length;
  out({ received: r });
  // until the guest printed its first status line here (a loaded machine runs the guest slowly), at most 30 s
  await machine.waitForSerial(/C=\w{8} T=\w{8}\r\n/, num("--run-ms", 30000), from).catch(() => undefined);
  out({ serial: machine.serial.slice(from) });
} catch (e) {
  out({ error: e instanceof Error ? e.message : String(e), code: e?.code });
} finally {
  await machine.destroy();
}
process.exit(0);
