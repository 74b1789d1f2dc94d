// The streaming decoder on the 747-byte `-machine none` stream of wire-format §2.11 (rebuilt byte by byte):
// the result, every split into two chunks, 1-byte chunks, the vmdesc given up front (nothing buffered),
// truncation at every offset.
import { describe, expect, it } from "vitest";
import { analyzeDecoderOptions } from "../../src/analyze/report.js";
import { VmstreamError } from "../../src/io/errors.js";
import { createKernels } from "../../src/kernels/index.js";
import type { DecodeResult, DecoderEvent } from "../../src/savevm/types.js";
import { registryFromMap } from "../../src/sections/device/registry.js";
import { decodeBytes, decodeStream, ramOf, StreamDecoder, type StreamDecoderOptions, validateBytes, validateStream } from "../../src/sections/stream.js";
import { x86Devices } from "../../src/vmstate/devices/index.js";
import { sha256 } from "../helpers/bytes.js";
import { thrownBy } from "../helpers/errors.js";
import { NONE_OFFSETS, NONE_SHA256, NONE_VMDESC, noneStream } from "../helpers/none-stream.js";
import { digest } from "../helpers/result-digest.js";

const describeFromVmdesc = analyzeDecoderOptions.describe!;

const bytes = noneStream();
const kernels = createKernels();

function decodeChunks(chunks: Uint8Array[], options: StreamDecoderOptions = {}): DecodeResult {
  const d = new StreamDecoder({ kernels, ...options });
  for (const c of chunks) d.push(c);
  return d.end();
}

describe("the -machine none stream (wire-format §2.11)", () => {
  it("is rebuilt byte for byte", () => {
    expect(bytes.length).toBe(747);
    expect(sha256(bytes)).toBe(NONE_SHA256);
  });

  it("decodes: header, configuration, sections with footers, devices, EOF, vmdesc", () => {
    const events: DecoderEvent["type"][] = [];
    const r = decodeBytes(bytes, { onEvent: (e) => events.push(e.type) });
    expect(r.bytes).toBe(747);
    expect(r.version).toBe(3);
    expect(r.configuration?.machine).toBe("none");
    expect(r.configuration?.targetPageBits).toBeUndefined();
    expect(r.footers).toBe(true);
    expect(r.sections.map((s) => [s.type, s.id, s.idstr, s.instanceId, s.version, s.offset, s.size])).toEqual([
      ["start", 2, "ram", 0, 4, NONE_OFFSETS.ramStart, 0x37 - 0x11],
      ["end", 2, "ram", 0, 4, NONE_OFFSETS.ramEnd, 0x49 - 0x37],
      ["full", 0, "timer", 0, 2, NONE_OFFSETS.timer, 0x79 - 0x49],
      ["full", 4, "globalstate", 0, 1, NONE_OFFSETS.globalstate, 0xff - 0x79],
    ]);
    expect(r.sections[2]!.payloadOffset).toBe(0x5c);
    expect(r.sections[2]!.payloadSize).toBe(24);
    expect(r.devices.map((d) => [d.idstr, d.source, d.payloadSize])).toEqual([
      ["timer", "opaque", 24],
      ["globalstate", "opaque", 104],
    ]);
    expect(r.eof).toBe(true);
    expect(r.eofOffset).toBe(NONE_OFFSETS.eof);
    expect(r.vmdesc?.offset).toBe(NONE_OFFSETS.vmdesc);
    expect(r.vmdesc?.length).toBe(486);
    expect(r.vmdesc?.text).toBe(NONE_VMDESC);
    expect(r.vmdesc?.json.devices.map((d) => d.name)).toEqual(["timer", "globalstate"]);
    expect(r.completeness).toEqual({ complete: true, eof: true, vmdesc: true, missingDevices: [], unlistedSections: [] });
    const ram = ramOf(r)!;
    expect(ram.totalBytes).toBe(0n);
    expect(ram.blocks).toEqual([]);
    expect(ram.records.eos).toBe(2);
    expect(ram.sections).toBe(2);
    expect(r.commands).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(events).toEqual(["header", "configuration", "section", "section", "section", "device", "section", "device", "eof", "vmdesc"]);
  });

  it("decodes device states through options.describe (descriptions from the vmdesc)", () => {
    const r = decodeBytes(bytes, { describe: describeFromVmdesc });
    expect(r.devices.map((d) => d.source)).toEqual(["vmdesc", "vmdesc"]);
    expect(r.devices[0]!.state).toMatchObject({ cpu_ticks_offset: 0n, cpu_clock_offset: 0n });
    const gs = r.devices[1]!.state;
    expect(gs.size).toBe(10);
    expect(new TextDecoder().decode((gs.runstate as Uint8Array).subarray(0, 9))).toBe("prelaunch");
    expect(r.devices[1]!.vmdesc?.vmsd_name).toBe("globalstate");
  });

  it("decodes device states through a registry (x86 descriptions) with no vmdesc needed", () => {
    const devices = registryFromMap(x86Devices);
    const r = decodeBytes(bytes, { devices });
    expect(r.devices.map((d) => [d.idstr, d.source, d.description.name])).toEqual([
      ["timer", "registry", "timer"],
      ["globalstate", "registry", "globalstate"],
    ]);
    // the stream without its vmdesc trailer is complete too (nothing to check it against)
    const r2 = decodeBytes(bytes.subarray(0, NONE_OFFSETS.vmdesc), { devices });
    expect(r2.vmdesc).toBeUndefined();
    expect(r2.completeness.complete).toBe(true);
    expect(r2.completeness.vmdesc).toBe(false);
  });

  it("the result does not depend on where the input is split (every 2-chunk split, and 1-byte chunks)", () => {
    for (const opts of [{}, { describe: describeFromVmdesc }, { devices: registryFromMap(x86Devices) }] as StreamDecoderOptions[]) {
      const ref = digest(decodeChunks([bytes], opts));
      for (let i = 0; i <= bytes.length; i++) {
        expect(digest(decodeChunks([bytes.subarray(0, i), bytes.subarray(i)], opts)), `split at ${i}`).toEqual(ref);
      }
      const ones = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
      expect(digest(decodeChunks(ones, opts))).toEqual(ref);
    }
  });

  it("with the vmdesc given up front, device sections decode as they arrive, with the same result", () => {
    const ref = digest(decodeChunks([bytes]));
    let devicesBeforeEof = 0;
    let eof = false;
    const r = decodeChunks(
      Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1)),
      {
        vmdesc: NONE_VMDESC,
        onEvent: (e) => {
          if (e.type === "eof") eof = true;
          if (e.type === "device" && !eof) devicesBeforeEof++;
        },
      },
    );
    expect(devicesBeforeEof).toBe(2);
    expect(digest(r)).toEqual(ref);
  });

  it("a live peer that keeps its socket open: the last device, EOF and the vmdesc decode before end() (no lookahead wait)", () => {
    for (const opts of [{ devices: registryFromMap(x86Devices) }, { vmdesc: NONE_VMDESC }] as StreamDecoderOptions[]) {
      const seen: string[] = [];
      const d = new StreamDecoder({ kernels, ...opts, onEvent: (e) => seen.push(e.type === "device" ? `device:${e.device.idstr}` : e.type) });
      // byte by byte: each device section is decodable as soon as its footer and the next byte are in
      for (let i = 0; i < bytes.length; i++) d.push(bytes.subarray(i, i + 1));
      expect(seen.filter((t) => t.startsWith("device:") || t === "eof" || t === "vmdesc")).toEqual(["device:timer", "device:globalstate", "eof", "vmdesc"]);
      d.end();
    }
  });
  it("a stream cut at any offset is an error (EOF; or no description once device sections are cut off from the vmdesc)", () => {
    const devices = registryFromMap(x86Devices);
    for (let n = 0; n < bytes.length; n++) {
      for (const opts of [{}, { devices }] as StreamDecoderOptions[]) {
        let err: unknown;
        try {
          decodeChunks([bytes.subarray(0, n)], opts);
        } catch (e) {
          err = e;
        }
        if (opts.devices && n === NONE_OFFSETS.vmdesc) {
          expect(err, "a stream without its vmdesc is complete").toBeUndefined();
          continue;
        }
        expect(err, `cut at ${n}`).toBeInstanceOf(VmstreamError);
        const e = err as VmstreamError;
        const codes = !opts.devices && n > NONE_OFFSETS.timer ? ["EOF", "NO_DESCRIPTION"] : ["EOF"];
        expect(codes, `cut at ${n}: ${e.message}`).toContain(e.code);
        expect(e.offset, `cut at ${n}`).toBeTypeOf("number");
      }
    }
  });

  it("a cut stream names the section it ends in", () => {
    const inRam = thrownBy(() => decodeChunks([bytes.subarray(0, 0x30)]));
    expect(inRam.section).toMatchObject({ idstr: "ram", id: 2 });
    expect(inRam.message).toMatch(/truncated stream at byte \d+ \(section ram id 2/);
    const devices = registryFromMap(x86Devices);
    const inTimer = thrownBy(() => decodeChunks([bytes.subarray(0, 0x60)], { devices }));
    expect(inTimer.code).toBe("EOF");
    expect(inTimer.section).toMatchObject({ idstr: "timer", id: 0 });
  });

  it("validateStream / validateBytes give a verdict and a summary", async () => {
    const ok = await validateStream(bytes);
    expect(ok.ok).toBe(true);
    expect(ok.summary).toMatchObject({ bytes: 747, machine: "none", sections: 4, devices: 2, eof: true, vmdesc: true, complete: true });
    const bad = validateBytes(bytes.subarray(0, 0x40));
    expect(bad.ok).toBe(false);
    expect(bad.error?.code).toBe("EOF");
    expect(bad.error?.section?.idstr).toBe("ram");
    expect(bad.summary.sections).toBe(1);
    const async = await decodeStream(
      (async function* () {
        yield bytes.subarray(0, 100);
        yield bytes.subarray(100);
      })(),
    );
    expect(async.completeness.complete).toBe(true);
  });

  it("frees its kernel memory: thousands of decodes on one kernels instance do not grow it", () => {
    decodeChunks([bytes]).dispose();
    const before = kernels.memory.buffer.byteLength;
    for (let i = 0; i < 2000; i++) {
      decodeChunks([bytes]).dispose();
      try {
        decodeChunks([bytes.subarray(0, i % 700)]);
      } catch {
        // expected
      }
    }
    expect(kernels.memory.buffer.byteLength).toBe(before);
  });
});
