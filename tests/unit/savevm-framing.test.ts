// Framing on synthetic streams: header, configuration subsections, footers present/absent, section binding,
// commands (every id of §2.6, PACKAGED sub-streams), the vmdesc trailer, device sections from a registry,
// the vmdesc, legacy octet-stream sections, and the errors' offsets, sections and field paths.
import { describe, expect, it } from "vitest";
import { createKernels } from "../../src/kernels/index.js";
import { CMD } from "../../src/savevm/constants.js";
import { registryFromMap } from "../../src/sections/device/registry.js";
import { decodeBytes, ramOf, StreamDecoder, type StreamDecoderOptions, validateBytes } from "../../src/sections/stream.js";
import { x86Devices } from "../../src/vmstate/devices/index.js";
import { F } from "../../src/vmstate/fields.js";
import type { VMStateDescription } from "../../src/vmstate/types.js";
import { thrownBy } from "../helpers/errors.js";
import { NONE_OFFSETS, NONE_VMDESC, noneStream } from "../helpers/none-stream.js";
import { memSize, page, RAM, StreamBuilder } from "../helpers/stream-builder.js";

const kernels = createKernels();
const decode = (bytes: Uint8Array, options: StreamDecoderOptions = {}) => decodeBytes(bytes, { kernels, ...options });

const dev: VMStateDescription = { name: "dev", version: 2, minimumVersion: 1, fields: [F.uint32("a"), F.uint8("b")] };
const devices = registryFromMap({ dev });

describe("header and configuration", () => {
  it("magic (with a hint for gzip input), obsolete version 2, other versions", () => {
    expect(thrownBy(() => decode(new Uint8Array([0x51, 0x45, 0x56, 0x00]))).code).toBe("BAD_MAGIC");
    const gz = thrownBy(() => decode(new Uint8Array([0x1f, 0x8b, 8, 0])));
    expect(gz.detail).toMatch(/gzip/);
    // a bad first byte is reported at once, before 8 bytes arrived
    const d = new StreamDecoder({ kernels });
    expect(() => d.push(new Uint8Array([0x00]))).toThrow(/not a QEMU migration stream/);
    expect(thrownBy(() => decode(new StreamBuilder().header(2).build())).message).toMatch(/obsolete/);
    expect(thrownBy(() => decode(new StreamBuilder().header(4).build())).code).toBe("BAD_VERSION");
  });

  it("subsections: target-page-bits sets the page size, capabilities, uuid", () => {
    const b = new StreamBuilder().header().config("virt-7.2", (b) => {
      b.subsection("configuration/target-page-bits", 1, (b) => b.be32(13));
      b.subsection("configuration/capabilities", 1, (b) => b.be32(2).cstr("x-ignore-shared").cstr("validate-uuid"));
      b.subsection("configuration/uuid", 1, (b) => b.bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]));
    });
    b.start(2, "ram", 4, (b) => memSize(b, [["mach-virt.ram", 8192 * 2, 0x40000000]]).be64(RAM.EOS));
    b.part(2, (b) => page(b, RAM.PAGE, 8192, "mach-virt.ram", new Array<number>(8192).fill(3)).be64(RAM.EOS));
    const r = decode(b.eof().build(), { materialize: true });
    expect(r.configuration).toMatchObject({ machine: "virt-7.2", targetPageBits: 13, capabilities: ["x-ignore-shared", "validate-uuid"] });
    expect(r.configuration?.uuid).toEqual(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]));
    expect(r.pageSize).toBe(8192);
    const ram = ramOf(r)!;
    expect(ram.pageSize).toBe(8192);
    expect(ram.blocks[0]!.mrAddr).toBe(0x40000000n);
    expect(ram.blocks[0]!.data!.subarray(8192).every((x) => x === 3)).toBe(true);
    r.dispose();
  });

  it("configuration errors: name over the cap (at once), unknown capability, too many, unknown subsection, bad page bits", () => {
    const huge = new StreamBuilder().header().u8(7).be32(0xffffffff).build(); // 13 bytes: QEMU would try a 4 GiB allocation
    const d = new StreamDecoder({ kernels });
    expect(() => d.push(huge)).toThrow(/configuration machine name too long at byte 9/);
    const cfg = (sub: (b: StreamBuilder) => void) => decode(new StreamBuilder().header().config("pc", sub).eof().build());
    expect(thrownBy(() => cfg((b) => b.subsection("configuration/capabilities", 1, (b) => b.be32(1).cstr("warp-drive")))).message).toMatch(
      /unknown capability "warp-drive"/,
    );
    expect(thrownBy(() => cfg((b) => b.subsection("configuration/capabilities", 1, (b) => b.be32(1000))))).toMatchObject({ code: "BAD_VALUE" });
    expect(thrownBy(() => cfg((b) => b.subsection("configuration/bogus", 1, () => {}))).code).toBe("UNKNOWN_SUBSECTION");
    expect(thrownBy(() => cfg((b) => b.subsection("configuration/target-page-bits", 1, (b) => b.be32(40)))).message).toMatch(/outside 10..16/);
    expect(thrownBy(() => cfg((b) => b.subsection("configuration/uuid", 2, (b) => b.bytes(new Array(16).fill(0))))).code).toBe("BAD_VERSION");
  });
});

describe("sections and footers", () => {
  it("old streams: no configuration, no footers, no vmdesc (device sections from a registry)", () => {
    const b = new StreamBuilder().header();
    b.footers = false;
    b.start(2, "ram", 4, (b) => memSize(b, [["pc.ram", 4096]]).be64(RAM.EOS));
    b.end(2, (b) => page(b, RAM.ZERO, 0, "pc.ram", [0]).be64(RAM.EOS));
    b.full(5, "dev", 2, (b) => b.be32(7).u8(9));
    const bytes = b.eof().build();
    const r = decode(bytes, { devices });
    expect(r.configuration).toBeUndefined();
    expect(r.footers).toBe(false);
    expect(r.sections.map((s) => [s.type, s.idstr, s.footer, s.size])).toEqual([
      ["start", "ram", false, 1 + 4 + 4 + 4 + 4 + 8 + 7 + 8 + 8],
      ["end", "ram", false, 1 + 4 + 8 + 7 + 1 + 8],
      ["full", "dev", false, 1 + 4 + 4 + 4 + 4 + 5],
    ]);
    expect(r.devices[0]!.state).toEqual({ a: 7, b: 9 });
    expect(r.completeness).toMatchObject({ complete: true, vmdesc: false });
    // every split gives the same result here too
    for (let i = 0; i <= bytes.length; i++) {
      const d = new StreamDecoder({ kernels, devices });
      d.push(bytes.subarray(0, i));
      d.push(bytes.subarray(i));
      expect(d.end().devices[0]!.state).toEqual({ a: 7, b: 9 });
    }
    // a 0x7e where no footers are used is an unknown section type
    const b2 = new StreamBuilder().header();
    b2.footers = false;
    b2.full(5, "dev", 2, (b) => b.be32(7).u8(9)); // footers detected absent here
    b2.full(6, "dev", 2, (b) => b.be32(7).u8(9))
      .u8(0x7e)
      .be32(6);
    expect(thrownBy(() => decode(b2.eof().build(), { devices })).message).toMatch(/unknown section type at byte 52: 0x7e/);
  });

  it("footer errors name the section", () => {
    const withFooter = (id: number, marker = 0x7e) => {
      const b = new StreamBuilder().header().config("pc");
      b.footers = false;
      b.start(2, "ram", 4, (b) => b.be64(4).be64(RAM.EOS))
        .u8(marker)
        .be32(id);
      return b.eof().build();
    };
    const e1 = thrownBy(() => decode(withFooter(3)));
    expect(e1.message).toMatch(/mismatched section id in footer at byte 48 \(section ram id 2 instance 0\): footer says 3/);
    decode(withFooter(2));
    const b = new StreamBuilder().header().config("pc");
    b.start(2, "ram", 4, (b) => b.be64(4).be64(RAM.EOS));
    b.footers = false;
    b.end(2, (b) => b.be64(RAM.EOS));
    b.u8(0x00);
    expect(thrownBy(() => decode(b.build())).message).toMatch(/missing section footer.*section ram id 2/);
  });

  it("section binding: PART/END of unknown or non-iterative ids, START of a device, live instance != 0, unknown types", () => {
    const s = (f: (b: StreamBuilder) => void) => {
      const b = new StreamBuilder().header().config("pc");
      f(b);
      return b.eof().build();
    };
    expect(thrownBy(() => decode(s((b) => b.part(9, () => {})))).message).toMatch(/never started.*section id 9/);
    expect(
      thrownBy(() =>
        decode(
          s((b) => b.full(5, "dev", 2, (b) => b.be32(1).u8(2)).part(5, () => {})),
          { devices },
        ),
      ).message,
    ).toMatch(/not iterative/);
    expect(
      thrownBy(() =>
        decode(
          s((b) => b.start(5, "dev", 2, () => {})),
          { devices },
        ),
      ).message,
    ).toMatch(/START section for a section that is not iterative/);
    expect(thrownBy(() => decode(s((b) => b.start(2, "ram", 4, () => {}, 1)))).message).toMatch(/unknown section instance/);
    expect(thrownBy(() => decode(s((b) => b.start(2, "spapr/htab", 2, () => {})))).code).toBe("BAD_VERSION");
    expect(thrownBy(() => decode(s((b) => b.u8(0x05)))).message).toMatch(/unknown section type.*0x05/);
    expect(thrownBy(() => decode(s((b) => b.u8(0x04).be32(1).u8(0)))).code).toBe("EMPTY_STRING");
  });
});

describe("device sections", () => {
  const bytes = noneStream();
  const x86 = registryFromMap(x86Devices);

  it("a registered description that fails falls back to the vmdesc with a warning; strictDevices makes it an error with the field path", () => {
    const bad = bytes.slice();
    bad.set(new TextEncoder().encode("xyzzy\0\0\0\0"), 0x96); // globalstate runstate
    const r = decode(bad, { devices: x86 });
    expect(r.devices.map((d) => d.source)).toEqual(["registry", "opaque"]);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/globalstate.*registered description "globalstate" failed/);
    const e = thrownBy(() => decode(bad, { devices: x86, strictDevices: true }));
    expect(e.section).toMatchObject({ idstr: "globalstate", id: 4, instanceId: 0 });
    expect(e.offset).toBeTypeOf("number");
    expect(e.message).toMatch(/globalstate/);
    // a description of the wrong size: the footer does not follow
    const wrong = registryFromMap({ timer: { name: "timer", version: 2, fields: [F.uint64("x")] } });
    const r2 = decode(bytes, { devices: wrong });
    expect(r2.devices[0]!.source).toBe("opaque");
    expect(r2.warnings[0]).toMatch(/missing section footer/);
    const e2 = thrownBy(() => decode(bytes, { devices: wrong, strictDevices: true }));
    expect(e2.message).toMatch(/missing section footer at byte 100 \(section timer id 0 instance 0\).*consumed 8 payload bytes/);
  });

  it("a field error inside a device names the field path", () => {
    const b = new StreamBuilder().header().config("pc");
    const withCheck: VMStateDescription = { name: "dev", version: 1, fields: [F.uint8Equal("magic")], preLoad: (s) => void (s.magic = 5) };
    b.full(5, "dev", 1, (b) => b.u8(6));
    const e = thrownBy(() => decode(b.eof().build(), { devices: registryFromMap({ dev: withCheck }), strictDevices: true }));
    expect(e.code).toBe("MISMATCH");
    expect(e.path).toBe("dev.magic");
    expect(e.section).toMatchObject({ idstr: "dev", id: 5 });
  });

  it("legacy octet-stream sections (slirp) decode from the vmdesc", () => {
    const blob = Array.from({ length: 131 }, (_, i) => i);
    const b = new StreamBuilder().header().config("pc");
    b.full(4, "slirp", 4, (b) => b.bytes(blob));
    b.eof().vmdesc({ page_size: 4096, devices: [{ name: "slirp", instance_id: 0, size: 131, fields: [{ name: "data", size: 131, type: "buffer" }] }] });
    const r = decode(b.build());
    expect(r.devices[0]).toMatchObject({ idstr: "slirp", source: "legacy", version: 4, payloadSize: 131 });
    expect(r.devices[0]!.state.data).toEqual(new Uint8Array(blob));
    expect(r.completeness.complete).toBe(true);
  });

  it("completeness: vmdesc devices without a section, sections not in the vmdesc", () => {
    const doc = JSON.parse(NONE_VMDESC) as { page_size: number; devices: unknown[] };
    const extra = { ...doc, devices: [...doc.devices, { name: "ghost", instance_id: 0, vmsd_name: "ghost", version: 1, fields: [] }] };
    const b = new StreamBuilder().bytes(bytes.subarray(0, NONE_OFFSETS.vmdesc)).vmdesc(extra);
    const r = decode(b.build());
    expect(r.completeness).toMatchObject({ complete: false, missingDevices: [{ name: "ghost", instanceId: 0 }] });
    const v = validateBytes(b.build());
    expect(v.ok).toBe(false);
    expect(v.error?.code).toBe("INCOMPLETE");
    const fewer = { ...doc, devices: [doc.devices[1]] };
    const b2 = new StreamBuilder().bytes(bytes.subarray(0, NONE_OFFSETS.vmdesc)).vmdesc(fewer);
    expect(thrownBy(() => decode(b2.build())).code).toBe("NO_DESCRIPTION");
    const r3 = decode(b2.build(), { devices: x86 });
    expect(r3.completeness.unlistedSections).toEqual([{ idstr: "timer", instanceId: 0 }]);
  });

  it("vmdesc trailer errors: bad JSON, over the cap, deep nesting, bytes after it, a non-0x06 byte after EOF", () => {
    const head = bytes.subarray(0, NONE_OFFSETS.vmdesc);
    const x = { devices: x86 };
    expect(thrownBy(() => decode(new StreamBuilder().bytes(head).vmdesc("{nope").build(), x)).message).toMatch(/not valid JSON at byte 261/);
    expect(thrownBy(() => decode(new StreamBuilder().bytes(head).vmdesc('{"page_size": 4096}').build(), x)).message).toMatch(/unexpected shape/);
    expect(thrownBy(() => decode(bytes, { ...x, limits: { vmdescBytes: 100 } })).code).toBe("LIMIT");
    const deep = '{"page_size": 4096, "devices": [], "x": ' + "[".repeat(100) + "]".repeat(100) + "}";
    expect(thrownBy(() => decode(new StreamBuilder().bytes(head).vmdesc(deep).build(), x)).message).toMatch(/nested too deeply/);
    expect(thrownBy(() => decode(new StreamBuilder().bytes(bytes).u8(0).build(), x)).message).toMatch(/trailing bytes after the vmdesc/);
    expect(thrownBy(() => decode(new StreamBuilder().bytes(head).u8(7).build(), x)).message).toMatch(/unexpected data after QEMU_VM_EOF.*0x07/);
  });
});

describe("commands", () => {
  const ramSetup = (b: StreamBuilder) => b.start(2, "ram", 4, (b) => memSize(b, [["pc.ram", 4 * 4096]]).be64(RAM.EOS));
  const be32 = (v: number) => [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
  const be64 = (v: number) => [0, 0, 0, 0, ...be32(v)];
  const enc = (s: string) => [...new TextEncoder().encode(s)];

  it("a postcopy stream: return path, PING, ADVISE, DISCARD, PACKAGED(LISTEN, devices, PING, RUN), pages after RUN", () => {
    const pkg = new StreamBuilder();
    pkg
      .command(CMD.POSTCOPY_LISTEN)
      .full(5, "dev", 2, (b) => b.be32(1).u8(2))
      .command(CMD.PING, be32(3))
      .command(CMD.POSTCOPY_RUN);
    pkg.bytes([0xde, 0xad]); // dropped: QEMU leaves the package's loop at RUN
    const body = pkg.build();
    const b = new StreamBuilder().header().config("pc");
    b.command(CMD.OPEN_RETURN_PATH)
      .command(CMD.PING, be32(1))
      .command(CMD.POSTCOPY_ADVISE, [...be64(4096), ...be64(4096)]);
    ramSetup(b);
    b.command(CMD.POSTCOPY_RAM_DISCARD, [0, 6, ...enc("pc.ram"), 0, ...be64(0), ...be64(8192)]);
    b.command(CMD.PING, be32(2));
    b.command(CMD.PACKAGED, be32(body.length)).bytes(body);
    b.part(2, (b) => page(b, RAM.ZERO, 0, "pc.ram", [0]).be64(RAM.EOS));
    b.end(2, (b) => b.be64(RAM.EOS));
    const bytes = b.eof().build();
    const r = decode(bytes, { devices });
    expect(r.commands.map((c) => [c.name, c.depth])).toEqual([
      ["OPEN_RETURN_PATH", 0],
      ["PING", 0],
      ["POSTCOPY_ADVISE", 0],
      ["POSTCOPY_RAM_DISCARD", 0],
      ["PING", 0],
      ["PACKAGED", 0],
      ["POSTCOPY_LISTEN", 1],
      ["PING", 1],
      ["POSTCOPY_RUN", 1],
    ]);
    expect(r.commands[2]!.fields).toEqual({ pageSizeSummary: 4096n, targetPageSize: 4096n });
    expect(r.commands[3]!.fields).toEqual({ block: "pc.ram", ranges: [{ start: 0n, length: 8192n }] });
    expect(r.commands[5]!.fields).toEqual({ size: body.length });
    expect(r.sections.map((s) => [s.type, s.idstr, s.depth])).toEqual([
      ["start", "ram", 0],
      ["full", "dev", 1],
      ["part", "ram", 0],
      ["end", "ram", 0],
    ]);
    expect(r.devices[0]!.state).toEqual({ a: 1, b: 2 });
    for (let i = 0; i <= bytes.length; i += 3) {
      const d = new StreamDecoder({ kernels, devices });
      d.push(bytes.subarray(0, i));
      d.push(bytes.subarray(i));
      expect(d.end().commands.length).toBe(9);
    }
  });

  it("every command id is validated", () => {
    const s =
      (f: (b: StreamBuilder) => void, opts: StreamDecoderOptions = {}) =>
      () => {
        const b = new StreamBuilder().header().config("pc");
        f(b);
        return decode(b.eof().build(), opts);
      };
    expect(thrownBy(s((b) => b.command(0))).message).toMatch(/unknown command.*command 0/);
    expect(thrownBy(s((b) => b.command(11))).message).toMatch(/command 11/);
    expect(thrownBy(s((b) => b.command(CMD.OPEN_RETURN_PATH, [0]))).message).toMatch(/bad OPEN_RETURN_PATH command.*length 1, expected 0/);
    expect(thrownBy(s((b) => b.command(CMD.PING, be32(1)))).message).toMatch(/without a return path/);
    expect(thrownBy(s((b) => b.command(CMD.POSTCOPY_ADVISE, [1, 2, 3]))).message).toMatch(/expected 0 or 16/);
    expect(thrownBy(s((b) => b.command(CMD.POSTCOPY_ADVISE).command(CMD.POSTCOPY_ADVISE))).message).toMatch(/postcopy state "advise"/);
    expect(thrownBy(s((b) => b.command(CMD.POSTCOPY_LISTEN))).message).toMatch(/postcopy state "none"/);
    expect(thrownBy(s((b) => b.command(CMD.POSTCOPY_RUN))).message).toMatch(/postcopy state "none"/);
    expect(thrownBy(s((b) => b.command(CMD.POSTCOPY_RAM_DISCARD, new Array(19).fill(0)))).message).toMatch(/length 19 < 20/);
    const discard = (data: number[]) => s((b) => (ramSetup(b), b.command(CMD.POSTCOPY_ADVISE).command(CMD.POSTCOPY_RAM_DISCARD, data)));
    expect(thrownBy(discard([1, 6, ...enc("pc.ram"), 0, ...be64(0), ...be64(4096)])).message).toMatch(/version 1/);
    expect(thrownBy(discard([0, 6, ...enc("pc.ram"), 1, ...be64(0), ...be64(4096)])).message).toMatch(/missing NUL/);
    expect(thrownBy(discard([0, 6, ...enc("pc.ram"), 0, ...be64(0), ...be64(4096), 0])).message).toMatch(/not a multiple of 16/);
    expect(thrownBy(discard([0, 6, ...enc("pc.rom"), 0, ...be64(0), ...be64(4096)])).message).toMatch(/unknown RAM block "pc.rom"/);
    expect(thrownBy(discard([0, 6, ...enc("pc.ram"), 0, ...be64(4096), ...be64(4 * 4096)])).message).toMatch(/outside block/);
    expect(thrownBy(s((b) => b.command(CMD.PACKAGED, [1, 2, 3]))).message).toMatch(/length 3, expected 4/);
    expect(thrownBy(s((b) => b.command(CMD.PACKAGED, be32(0x7fffffff)))).code).toBe("LIMIT");
    expect(thrownBy(s((b) => b.command(CMD.PACKAGED, be32(100)))).code).toBe("EOF");
    expect(thrownBy(s((b) => b.command(CMD.ENABLE_COLO, [0]))).message).toMatch(/length 1/);
    expect(thrownBy(s((b) => b.command(CMD.POSTCOPY_RESUME))).message).toMatch(/recovery/);
    expect(thrownBy(s((b) => b.command(CMD.RECV_BITMAP, [6, ...enc("pc.ram")]))).message).toMatch(/recovery/);
    expect(thrownBy(s((b) => b.command(CMD.RECV_BITMAP, [6, ...enc("pc.ra")]))).message).toMatch(/length 6 for a 6-byte block name/);
    decode(new StreamBuilder().header().config("pc").command(CMD.ENABLE_COLO).eof().build());
    // a package inside a package may not be longer than its container
    const inner = new StreamBuilder().command(CMD.PACKAGED, be32(50)).build();
    expect(thrownBy(s((b) => b.command(CMD.PACKAGED, be32(inner.length)).bytes(inner))).message).toMatch(/longer than the package that contains it/);
    // a section cut by the end of its package
    const cut = new StreamBuilder().u8(4).be32(5).cstr("dev").be32(0).be32(2).be32(1).build();
    const e = thrownBy(s((b) => b.command(CMD.PACKAGED, be32(cut.length)).bytes(cut), { devices }));
    expect(e.code).toBe("EOF");
  });
});
