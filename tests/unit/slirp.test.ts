// The legacy "slirp" section (libslirp 4.7, state version 4): the no-connection state is the
// 131 bytes QEMU 7.2 was observed to write, it prints the DESIGN.md trace line, and a state with a
// guestfwd TCP socket round-trips with the layout of libslirp's state.c.
import { describe, expect, it } from "vitest";
import { ByteReader } from "../../src/io/reader.js";
import { ByteWriter } from "../../src/io/writer.js";
import { AnalyzeVisitor } from "../../src/visitor/analyze.js";
import { WireInputVisitor, WireOutputVisitor } from "../../src/visitor/wire.js";
import { SLIRP_BOOTP_CLIENTS, slirp, slirpBootpClient, slirpSocket, slirpTcp } from "../../src/vmstate/devices/index.js";
import { fixedWireSize, loadState, saveState } from "../../src/vmstate/engine.js";
import { assertSymmetry, prettyPrint } from "../../src/vmstate/symmetry.js";
import type { State } from "../../src/vmstate/types.js";

const MAC = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06];

/** The 131 bytes: no sockets (0), ip_id, 16 bootp clients, client 0 allocated with MAC. */
function noSocketPayload(ipId = 0x1234): Uint8Array {
  const b = new Uint8Array(131);
  b[0] = 0; // end of the socket list
  b[1] = ipId >> 8;
  b[2] = ipId & 0xff;
  // client 0: allocated = 1, macaddr
  b[3] = 0;
  b[4] = 1;
  b.set(MAC, 5);
  return b;
}

function load(payload: Uint8Array, version = 4) {
  const r = new ByteReader(payload, { sticky: true });
  const v = new WireInputVisitor(r);
  const s: State = {};
  loadState(v, slirp, s, version, "slirp");
  return { r, v, s };
}

function save(s: State): Uint8Array {
  const w = new ByteWriter();
  const v = new WireOutputVisitor(w);
  saveState(v, slirp, s, "slirp");
  expect(v.error).toBeUndefined();
  return w.concat();
}

function tcpcb(): State {
  const s: State = {};
  for (const f of slirpTcp.fields) {
    if (f.kind === "array") s[f.name] = [1, 2, 3, 4];
    else if (f.kind === "scalar") s[f.name] = f.type.startsWith("int") ? -2 : 0x11;
  }
  s.t_state = 4; // ESTABLISHED
  s.snd_una = 0x01020304;
  return s;
}

function sbuf(data: number[], woff: number, roff: number): State {
  return { sb_cc: data.length, sb_datalen: 8, woff, roff, sb_data: new Uint8Array([...data, ...new Array(8 - data.length).fill(0)]) };
}

function socketState(): State {
  return {
    so_urgc: 0,
    fhost: { family: 2, "sin.sin_addr.s_addr": 0x0a000264, "sin.sin_port": 0x1f90 },
    lhost: { family: 2, "sin.sin_addr.s_addr": 0x0a000202, "sin.sin_port": 0x0050 },
    so_iptos: 0,
    so_emu: 0,
    so_type: 1,
    so_state: 0x104,
    so_rcv: sbuf([0x68, 0x69], 2, 0),
    so_snd: sbuf([], 0, 0),
    so_tcpcb: tcpcb(),
  };
}

describe("slirp (libslirp 4.7, state version 4)", () => {
  it("a state without sockets is exactly 131 bytes: 1 (list end) + 2 (ip_id) + 16 x 8 (bootp clients)", () => {
    expect(fixedWireSize(slirpBootpClient)).toBe(8);
    expect(1 + 2 + SLIRP_BOOTP_CLIENTS * 8).toBe(131);
    const payload = noSocketPayload();
    const { r, v, s } = load(payload);
    expect(v.error).toBeUndefined();
    expect(r.remaining).toBe(0);
    expect(s.sockets).toEqual([]);
    expect(s.ip_id).toBe(0x1234);
    expect(s.bootp.bootp_clients).toHaveLength(16);
    expect(s.bootp.bootp_clients[0].allocated).toBe(1);
    expect([...s.bootp.bootp_clients[0].macaddr]).toEqual(MAC);
    expect(save(s)).toEqual(payload);
  });

  it("prints the DESIGN.md trace line", () => {
    const { s } = load(noSocketPayload());
    const lines = prettyPrint(slirp, s, "slirp");
    expect(lines).toContain("slirp.bootp.bootp_clients(16)(8).[0].macaddr(6)(1).[0] = (uint8) 0x1");
    expect(lines[0]).toBe("slirp.sockets(*)(0).marker = (uint8) 0x0");
    expect(lines[1]).toBe("slirp.ip_id = (uint16) 0x1234");
    expect(lines).toHaveLength(1 + 1 + 16 * 7);
  });

  it("an empty state saves as the 131 bytes of a fresh libslirp", () => {
    const bytes = save({});
    expect(bytes.length).toBe(131);
    expect(bytes.every((b) => b === 0)).toBe(true);
  });

  it("is symmetric (trace of save == trace of load) without and with a socket", () => {
    assertSymmetry(slirp, load(noSocketPayload()).s);
    const withSocket = { ...load(noSocketPayload()).s, sockets: [{ marker: 42, socket: socketState() }] };
    assertSymmetry(slirp, withSocket);
  });

  it("a guestfwd TCP socket: marker 42, the socket, then the list end, with the sizes of state.c", () => {
    expect(fixedWireSize(slirpTcp)).toBe(119);
    const s = { ...load(noSocketPayload()).s, sockets: [{ marker: 42, socket: socketState() }] };
    const bytes = save(s);
    // socket = so_urgc 4 + 2 x sockaddr (2 family + 4 addr + 2 port) + 3 x u8 + so_state 4
    //        + 2 x sbuf (4 + 4 + 8 offsets + 8 data) + tcpcb 119
    const socketSize = 4 + 2 * 8 + 3 + 4 + 2 * (16 + 8) + 119;
    expect(bytes.length).toBe(1 + socketSize + 131);
    expect(bytes[0]).toBe(42);
    // fhost: portable family 2, address, port.
    expect([...bytes.subarray(5, 13)]).toEqual([0, 2, 0x0a, 0x00, 0x02, 0x64, 0x1f, 0x90]);
    // so_rcv starts after so_urgc, 2 sockaddrs, 3 bytes and so_state: sb_cc 2, sb_datalen 8, woff 2, roff 0, data.
    const rcv = 1 + 4 + 16 + 3 + 4;
    expect([...bytes.subarray(rcv, rcv + 24)]).toEqual([0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0, 0, 0x68, 0x69, 0, 0, 0, 0, 0, 0]);
    expect(bytes[1 + socketSize]).toBe(0);

    const back = load(bytes);
    expect(back.v.error).toBeUndefined();
    expect(back.r.remaining).toBe(0);
    expect(back.s.sockets).toHaveLength(1);
    expect(back.s.sockets[0].marker).toBe(42);
    expect(back.s.sockets[0].socket.so_tcpcb.snd_una).toBe(0x01020304);
    expect(back.s.sockets[0].socket.fhost["sin.sin_port"]).toBe(0x1f90);
    expect(save(back.s)).toEqual(bytes);
  });

  it("any non-zero marker continues the list, and re-saves as read", () => {
    const bytes = save({ ...load(noSocketPayload()).s, sockets: [{ marker: 42, socket: socketState() }] });
    bytes[0] = 7;
    const back = load(bytes);
    expect(back.v.error).toBeUndefined();
    expect(back.s.sockets[0].marker).toBe(7);
    expect(save(back.s)).toEqual(bytes);
  });

  it("an IPv6 socket address carries only its family (libslirp migrates no IPv6 address)", () => {
    const sock = socketState();
    sock.lhost = { family: 10 };
    const bytes = save({ sockets: [{ marker: 42, socket: sock }] });
    const back = load(bytes);
    expect(back.v.error).toBeUndefined();
    expect(back.s.sockets[0].socket.lhost).toEqual({ family: 10 });
    expect(save(back.s)).toEqual(bytes);
  });

  it("older section versions: sockets with plain v4 addresses (< 4), no bootp (< 3), no ip_id (< 2)", () => {
    const sock = socketState();
    delete sock.fhost;
    delete sock.lhost;
    Object.assign(sock, { "so_faddr.s_addr": 0x0a000264, "so_laddr.s_addr": 0x0a000202, so_fport: 0x1f90, so_lport: 0x50 });
    // A save writes the current version only: build a version-3 payload by hand (marker, the
    // socket walked at version 3, list end, ip_id, bootp clients).
    const sockBytes = new ByteWriter();
    saveState(new WireOutputVisitor(sockBytes), { ...slirpSocket, version: 3 }, sock);
    const w = new ByteWriter();
    w.u8(42);
    w.bytes(sockBytes.concat());
    w.u8(0);
    w.be16(5);
    w.bytes(new Uint8Array(128));
    const payload = w.concat();
    expect(sockBytes.concat().length).toBe(4 + 4 + 4 + 2 + 2 + 3 + 4 + 2 * 24 + 119);
    const back = load(payload, 3);
    expect(back.v.error).toBeUndefined();
    expect(back.r.remaining).toBe(0);
    expect(back.s.sockets[0].socket.so_fport).toBe(0x1f90);
    expect(back.s.ip_id).toBe(5);

    const v2 = load(new Uint8Array([0, 0x12, 0x34]), 2);
    expect(v2.v.error).toBeUndefined();
    expect(v2.r.remaining).toBe(0);
    expect(v2.s.ip_id).toBe(0x1234);
    expect(v2.s.bootp).toBeUndefined();

    const v1 = load(new Uint8Array([0]), 1);
    expect(v1.v.error).toBeUndefined();
    expect(v1.r.remaining).toBe(0);
  });

  it("refuses what libslirp refuses: sbuf offsets outside the buffer, an unknown address family, a newer version", () => {
    const sock = socketState();
    sock.so_rcv.woff = 8; // == sb_datalen
    const bad = save({ sockets: [{ marker: 42, socket: sock }] });
    const e1 = load(bad).v.error;
    expect(e1?.code).toBe("BAD_VALUE");
    expect(e1?.message).toContain("invalid sbuf offsets");

    const fam = save({ sockets: [{ marker: 42, socket: socketState() }] });
    fam[5] = 0x12; // fhost portable family 0x1202
    const e2 = load(fam).v.error;
    expect(e2?.code).toBe("BAD_VALUE");
    expect(e2?.message).toContain("invalid ss_family");

    expect(load(noSocketPayload(), 5).v.error?.code).toBe("BAD_VERSION");
    const cut = load(noSocketPayload().subarray(0, 100)).v.error;
    expect(cut?.code).toBe("EOF");
  });

  it("renders for analyze as nested objects (the old-style vmdesc would show one 131-byte blob instead)", () => {
    const v = new AnalyzeVisitor(new WireInputVisitor(new ByteReader(noSocketPayload(), { sticky: true })));
    loadState(v, slirp, {}, 4, "slirp");
    expect(v.error).toBeUndefined();
    const clients = (v.result!.get("bootp") as Map<string, unknown>).get("bootp_clients") as Map<string, unknown>[];
    expect(clients[0]!.get("allocated")).toBe("0x0001");
    expect(clients[0]!.get("macaddr")).toBe("01 02 03 04 05 06");
    expect(v.result!.get("ip_id")).toBe("0x1234");
  });
});
