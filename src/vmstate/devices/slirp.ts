// The "slirp" section of QEMU 7.2's user-mode networking: an old-style section whose bytes libslirp
// writes itself (wire-format §3.10), described as a legacy description of libslirp 4.7's format
// (state version 4) so that it can be decoded, printed and written again. The layout, its sources
// and what is unchecked: docs/vmstate.md, "Device notes".
import { VmstreamError } from "../../io/errors.js";
import type { Visitor } from "../../visitor/visitor.js";
import { visitState } from "../engine.js";
import { F } from "../fields.js";
import type { CustomField, State, VMStateDescription } from "../types.js";

/** libslirp's NB_BOOTP_CLIENTS. */
export const SLIRP_BOOTP_CLIENTS = 16;
/** slirp_state_version() of libslirp 4.x. */
export const SLIRP_STATE_VERSION = 4;
/** The byte slirp_state_save writes before each socket. */
export const SLIRP_SOCKET_MARKER = 42;
/** TCPT_NTIMERS: retransmit, persist, keep-alive, 2MSL. */
const TCPT_NTIMERS = 4;

/** struct tcpcb as libslirp migrates it ("slirp-tcp", version 0): 119 bytes. */
export const slirpTcp: VMStateDescription = {
  name: "slirp-tcp",
  version: 0,
  fields: [
    F.int16("t_state"),
    F.array("t_timer", "int16", TCPT_NTIMERS),
    F.int16("t_rxtshift"),
    F.int16("t_rxtcur"),
    F.int16("t_dupacks"),
    F.uint16("t_maxseg"),
    F.uint8("t_force"),
    F.uint16("t_flags"),
    F.uint32("snd_una"),
    F.uint32("snd_nxt"),
    F.uint32("snd_up"),
    F.uint32("snd_wl1"),
    F.uint32("snd_wl2"),
    F.uint32("iss"),
    F.uint32("snd_wnd"),
    F.uint32("rcv_wnd"),
    F.uint32("rcv_nxt"),
    F.uint32("rcv_up"),
    F.uint32("irs"),
    F.uint32("rcv_adv"),
    F.uint32("snd_max"),
    F.uint32("snd_cwnd"),
    F.uint32("snd_ssthresh"),
    F.int16("t_idle"),
    F.int16("t_rtt"),
    F.uint32("t_rtseq"),
    F.int16("t_srtt"),
    F.int16("t_rttvar"),
    F.uint16("t_rttmin"),
    F.uint32("max_sndwnd"),
    F.uint8("t_oobflags"),
    F.uint8("t_iobc"),
    F.int16("t_softerror"),
    F.uint8("snd_scale"),
    F.uint8("rcv_scale"),
    F.uint8("request_r_scale"),
    F.uint8("requested_s_scale"),
    F.uint32("ts_recent"),
    F.uint32("ts_recent_age"),
    F.uint32("last_ack_sent"),
  ],
};

/** The read / write offsets of an sbuf, sent through a temporary (the C struct holds pointers). */
const slirpSbufTmp: VMStateDescription = {
  name: "slirp-sbuf-tmp",
  version: 0,
  fields: [F.uint32("woff"), F.uint32("roff")],
};

/** struct sbuf ("slirp-sbuf", version 0). State: sb_cc, sb_datalen, woff, roff, sb_data. */
export const slirpSbuf: VMStateDescription = {
  name: "slirp-sbuf",
  version: 0,
  fields: [
    F.uint32("sb_cc"),
    F.uint32("sb_datalen"),
    F.tmp(
      slirpSbufTmp,
      (sb) => ({ woff: sb.woff ?? 0, roff: sb.roff ?? 0 }),
      (sb, tmp) => {
        sb.woff = tmp.woff;
        sb.roff = tmp.roff;
      },
    ),
    // VMSTATE_VBUFFER_UINT32: the whole buffer, sb_datalen bytes.
    F.buffer("sb_data", { field: "sb_datalen" }),
  ],
  // sbuf_tmp_post_load: both offsets must lie inside the buffer (so an empty buffer cannot load).
  postLoad(sb) {
    const len = sb.sb_datalen as number;
    if ((sb.woff as number) >= len || (sb.roff as number) >= len) {
      return `invalid sbuf offsets r/w=${String(sb.roff)}/${String(sb.woff)} len=${len}`;
    }
  },
};

/** The family as sent: SS_FAMILY_MIG_IPV4 = 2, SS_FAMILY_MIG_IPV6 = 10; 23 and 28 are accepted as IPv6 too. */
const PORTABLE_FAMILIES = new Set([2, 10, 23, 28]);

const slirpSsFamily: VMStateDescription = {
  name: "slirp-socket-addr/ss_family",
  version: 0,
  fields: [F.uint16("portable_family")],
  postLoad(t) {
    if (!PORTABLE_FAMILIES.has(t.portable_family as number)) return `invalid ss_family type ${(t.portable_family as number).toString(16)}`;
  },
};

const isInet = (s: State): boolean => (s.family ?? 2) === 2;

/** union slirp_sockaddr ("slirp-socket-addr", version 4). State: family (the portable value), and for IPv4 the address and port. */
export const slirpSocketAddr: VMStateDescription = {
  name: "slirp-socket-addr",
  version: 4,
  fields: [
    F.tmp(
      slirpSsFamily,
      (a) => ({ portable_family: a.family ?? 2 }),
      (a, tmp) => {
        a.family = tmp.portable_family;
      },
    ),
    F.uint32("sin.sin_addr.s_addr", { test: isInet }),
    F.uint16("sin.sin_port", { test: isInet }),
  ],
};

const olderThanV4 = (_s: State, version: number): boolean => version < 4;

/** struct socket ("slirp-socket", version 4), walked at the section's version. */
export const slirpSocket: VMStateDescription = {
  name: "slirp-socket",
  version: 4,
  fields: [
    F.uint32("so_urgc"),
    F.uint32("so_faddr.s_addr", { test: olderThanV4 }),
    F.uint32("so_laddr.s_addr", { test: olderThanV4 }),
    F.uint16("so_fport", { test: olderThanV4 }),
    F.uint16("so_lport", { test: olderThanV4 }),
    F.struct("fhost", slirpSocketAddr, { version: 4 }),
    F.struct("lhost", slirpSocketAddr, { version: 4 }),
    F.uint8("so_iptos"),
    F.uint8("so_emu"),
    F.uint8("so_type"),
    F.int32("so_state"),
    F.struct("so_rcv", slirpSbuf),
    F.struct("so_snd", slirpSbuf),
    F.struct("so_tcpcb", slirpTcp),
  ],
};

/** BOOTPClient ("slirp_bootpclient"): 8 bytes. */
export const slirpBootpClient: VMStateDescription = {
  name: "slirp_bootpclient",
  version: 0,
  fields: [F.uint16("allocated"), F.buffer("macaddr", 6)],
};

/** This description's grouping of the DHCP lease table (no bytes of its own). */
export const slirpBootp: VMStateDescription = {
  name: "bootp",
  version: 0,
  fields: [F.structArray("bootp_clients", slirpBootpClient, SLIRP_BOOTP_CLIENTS)],
};

/** One entry of the socket list: the marker byte it was sent with, and the socket. */
export interface SlirpSocketEntry {
  marker: number;
  socket: State;
}

/**
 * The socket list: `marker socket` pairs ended by a 0 byte. Walked as a list of unannounced length
 * (trace `slirp.sockets(*)(0).marker`, `slirp.sockets(*)(0).[i]...`). `socketVersion` is the version
 * the sockets are walked at: 4, or 3 for every older section version (they differ only by `< 4`).
 */
function socketList(socketVersion: number, test: (s: State, version: number) => boolean): CustomField {
  return F.custom(
    "sockets",
    "slirp-sockets",
    1,
    (v: Visitor, name: string, value: unknown): SlirpSocketEntry[] => {
      const prev = Array.isArray(value) ? (value as SlirpSocketEntry[]) : [];
      const out: SlirpSocketEntry[] = [];
      const output = v.direction === "output";
      v.startArray(name, -1, 0, "slirp-socket");
      for (let i = 0; !v.error; i++) {
        const entry = prev[i];
        const send = output && i < prev.length ? (entry?.marker ?? SLIRP_SOCKET_MARKER) & 0xff || SLIRP_SOCKET_MARKER : 0;
        const marker = v.uint8("marker", send);
        if (v.error || marker === 0) break;
        const socket: State = entry?.socket ?? {};
        visitState(v, slirpSocket, socket, socketVersion, i);
        out.push({ marker, socket });
      }
      v.endArray();
      if (!output && out.length > MAX_SOCKETS) {
        v.fail(new VmstreamError("LIMIT", "too many slirp sockets", { path: v.path(), detail: `${out.length}` }));
      }
      return out;
    },
    { key: "sockets", test },
  );
}

/** A sanity cap on the socket list (one per guestfwd rule in libslirp). */
const MAX_SOCKETS = 65536;

/**
 * The legacy "slirp" section (libslirp 4.7, state version 4; loads versions 0..4). State:
 * `sockets` (SlirpSocketEntry[]), `ip_id`, `bootp.bootp_clients` ({ allocated, macaddr }[16]).
 */
export const slirp: VMStateDescription = {
  name: "slirp",
  version: SLIRP_STATE_VERSION,
  minimumVersion: 0,
  fields: [
    socketList(4, (_s, version) => version >= 4),
    socketList(3, (_s, version) => version < 4),
    F.uint16("ip_id", { version: 2 }),
    F.struct("bootp", slirpBootp, { version: 3 }),
  ],
};
