#!/usr/bin/env python3
"""Writes the committed seed corpus, fuzz/corpus/<target>/, from scratch.

Each seed is a real frame, packet, datagram, request or file of the shape its target
reads (see vswitch/src/fuzzing/ for the record format and control bytes), named for
what it is. Run it after changing a harness's input format: `python3 fuzz/make_corpus.py`.
Only the standard library is used.
"""

import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")

# --- addresses (the harnesses' constants) -------------------------------------------

def ip4(s):
    return bytes(int(x) for x in s.split("."))

C1, C2, GW0 = ip4("172.18.0.2"), ip4("172.18.0.3"), ip4("172.18.0.1")
C3, GW1 = ip4("172.19.0.2"), ip4("172.19.0.1")
UPLINK, WAN_GW, WAN_PEER = ip4("198.51.100.2"), ip4("198.51.100.1"), ip4("198.51.100.7")
FAR = ip4("203.0.113.7")
GW0_MAC = bytes([2, 0x76, 0, 0, 0, 1])
GW1_MAC = bytes([2, 0x76, 0, 0, 0, 2])
UPLINK_MAC = bytes([2, 0x76, 0, 0, 0, 0xFF])
BCAST = b"\xff" * 6


def mac(n):
    return bytes([2, 0, 0, 0, 0, n])


# --- checksums and headers -----------------------------------------------------------

def csum(data, init=0):
    if len(data) % 2:
        data += b"\0"
    s = init
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def fold(s):
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def fin(s):
    return (~s) & 0xFFFF


def pseudo(src, dst, proto, length):
    return csum(src + dst) + proto + length


def ipv4(src, dst, proto, l4, opts=b"", ttl=64, ident=1, frag=0, tos=0):
    assert len(opts) % 4 == 0
    hl = 20 + len(opts)
    h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | (hl // 4), tos, hl + len(l4),
                              ident, frag, ttl, proto, 0, src, dst)) + opts
    struct.pack_into("!H", h, 10, fin(csum(bytes(h))))
    return bytes(h) + l4


def tcp(src, dst, sp, dp, flags, payload=b"", seq=1000, ack=0, opts=b"", partial=False):
    doff = (20 + len(opts)) // 4
    t = bytearray(struct.pack("!HHIIBBHHH", sp, dp, seq, ack, doff << 4, flags, 65535, 0, 0))
    t += opts + payload
    ps = pseudo(src, dst, 6, len(t))
    if partial:
        struct.pack_into("!H", t, 16, fold(ps))
    else:
        struct.pack_into("!H", t, 16, fin(csum(bytes(t), ps)))
    return bytes(t)


def udp(src, dst, sp, dp, payload=b"", nocsum=False, partial=False):
    u = bytearray(struct.pack("!HHHH", sp, dp, 8 + len(payload), 0)) + payload
    ps = pseudo(src, dst, 17, len(u))
    if partial:
        struct.pack_into("!H", u, 6, fold(ps))
    elif not nocsum:
        c = fin(csum(bytes(u), ps))
        struct.pack_into("!H", u, 6, c or 0xFFFF)
    return bytes(u)


def icmp(ty, code, rest):
    m = bytearray([ty, code, 0, 0]) + rest
    struct.pack_into("!H", m, 2, fin(csum(bytes(m))))
    return bytes(m)


def echo(ident, seq, request=True, data=b"vswitch-ping"):
    return icmp(8 if request else 0, 0, struct.pack("!HH", ident, seq) + data)


def icmp_error(ty, code, about, quote=28):
    return icmp(ty, code, b"\0\0\0\0" + about[:quote])


def eth(dst, src, ethertype, payload, tags=()):
    h = dst + src
    for tpid, tci in tags:
        h += struct.pack("!HH", tpid, tci)
    return h + struct.pack("!H", ethertype) + payload


def arp(op, sha, spa, tha, tpa):
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, spa, tha, tpa)


def ipv6(src, dst, nh, payload):
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), nh, 64, src, dst) + payload


def tcp6(src, dst, sp, dp, flags, payload=b"", seq=1000, partial=False):
    t = bytearray(struct.pack("!HHIIBBHHH", sp, dp, seq, 0, 5 << 4, flags, 65535, 0, 0)) + payload
    ps = csum(src + dst) + 6 + len(t)
    if partial:
        struct.pack_into("!H", t, 16, fold(ps))
    else:
        struct.pack_into("!H", t, 16, fin(csum(bytes(t), ps)))
    return bytes(t)


V6A = bytes.fromhex("20010db8000000000000000000000002")
V6B = bytes.fromhex("20010db8000000000000000000000003")

# IPv4 options: record route (3 slots) + end of list; NOPs; router alert.
OPT_RR = bytes([7, 15, 4]) + b"\0" * 12 + b"\0"
OPT_NOP = b"\x01\x01\x01\x00"
OPT_RA = b"\x94\x04\x00\x00"
MSS = b"\x02\x04\x05\xb4"
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


def records(*recs):
    out = b""
    for ctl, body in recs:
        out += struct.pack("!BH", ctl, len(body)) + body
    return out


# --- writing -----------------------------------------------------------------------------

def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- nat ---------------------------------------------------------------------------------
# ctl: 0x01 from outside, 0x02 fix checksums, 0x04 partial, 0x38 clock step, 0x40 expire,
# 0x80 map addresses.
IN, OUT, FIXB, PART = 0x00, 0x01, 0x02, 0x04
STEP_1S, STEP_31S, STEP_LONG = 2 << 3, 3 << 3, 7 << 3


def nat_seeds():
    t = "nat"
    u_out = ipv4(C1, FAR, 17, udp(C1, FAR, 40000, 53, b"query"))
    u_back = ipv4(FAR, UPLINK, 17, udp(FAR, UPLINK, 53, 40000, b"answer"))
    write(t, "udp-out-and-reply", records((IN, u_out), (OUT, u_back)))
    syn = ipv4(C1, FAR, 6, tcp(C1, FAR, 40001, 80, SYN, opts=MSS))
    synack = ipv4(FAR, UPLINK, 6, tcp(FAR, UPLINK, 80, 40001, SYN | ACK, seq=5000, ack=1001, opts=MSS))
    ack = ipv4(C1, FAR, 6, tcp(C1, FAR, 40001, 80, ACK, seq=1001, ack=5001))
    data = ipv4(C1, FAR, 6, tcp(C1, FAR, 40001, 80, PSH | ACK, b"GET / HTTP/1.0\r\n\r\n", seq=1001, ack=5001))
    fin_ = ipv4(C1, FAR, 6, tcp(C1, FAR, 40001, 80, FIN | ACK, seq=1019, ack=5001))
    rst = ipv4(FAR, UPLINK, 6, tcp(FAR, UPLINK, 80, 40001, RST, seq=5001))
    write(t, "tcp-handshake-data-fin", records((IN, syn), (OUT, synack), (IN, ack), (IN, data), (IN, fin_)))
    write(t, "tcp-syn-then-rst", records((IN, syn), (OUT, rst)))
    write(t, "tcp-established-then-timeout",
          records((IN, syn), (OUT, synack), (IN, ack), (IN | STEP_LONG, data), (OUT, synack)))
    req = ipv4(C1, FAR, 1, echo(0x1234, 1))
    rep = ipv4(FAR, UPLINK, 1, echo(0x1234, 1, request=False))
    write(t, "echo-out-and-reply", records((IN, req), (OUT, rep)))
    pub = ipv4(FAR, UPLINK, 6, tcp(FAR, UPLINK, 50000, 8080, SYN))
    pub_rep = ipv4(C1, FAR, 6, tcp(C1, FAR, 80, 50000, SYN | ACK, seq=9, ack=1001))
    write(t, "published-tcp-in-and-reply", records((OUT, pub), (IN, pub_rep)))
    pub_udp = ipv4(FAR, UPLINK, 17, udp(FAR, UPLINK, 5000, 5353, b"mdns"))
    write(t, "published-udp-in", records((OUT, pub_udp)))
    hair = ipv4(C2, UPLINK, 6, tcp(C2, UPLINK, 41000, 8080, SYN))
    write(t, "hairpin-to-published", records((IN, hair)))
    iso = ipv4(C1, C3, 17, udp(C1, C3, 1000, 2000, b"x"))
    write(t, "isolated-networks", records((IN, iso)))
    spoof = ipv4(C1, UPLINK, 17, udp(C1, UPLINK, 1, 2))
    write(t, "spoofed-inside-source-from-outside", records((OUT, spoof)))
    unsolicited = ipv4(FAR, C1, 6, tcp(FAR, C1, 80, 40000, SYN))
    write(t, "unsolicited-to-container", records((OUT, unsolicited)))
    # An ICMP error from outside about a masqueraded datagram, and one from inside
    # about a published-port packet.
    quoted = ipv4(UPLINK, FAR, 17, udp(UPLINK, FAR, 40000, 53, b"query"))
    err_in = ipv4(FAR, UPLINK, 1, icmp_error(3, 3, quoted))
    write(t, "icmp-unreachable-about-masqueraded-udp", records((IN, u_out), (OUT, err_in)))
    q_tcp = ipv4(UPLINK, FAR, 6, tcp(UPLINK, FAR, 40001, 80, SYN))
    err_tcp = ipv4(FAR, UPLINK, 1, icmp_error(11, 0, q_tcp, quote=40))
    write(t, "icmp-time-exceeded-quoting-tcp", records((IN, syn), (OUT, err_tcp)))
    q_echo = ipv4(UPLINK, FAR, 1, echo(0x1234, 1))
    err_echo = ipv4(WAN_GW, UPLINK, 1, icmp_error(3, 1, q_echo))
    write(t, "icmp-unreachable-quoting-echo", records((IN, req), (OUT, err_echo)))
    q_pub = ipv4(FAR, C1, 6, tcp(FAR, C1, 50000, 80, SYN))
    err_out = ipv4(C1, FAR, 1, icmp_error(3, 3, q_pub))
    write(t, "icmp-error-from-container-about-published", records((OUT, pub), (IN, err_out)))
    opts = ipv4(C1, FAR, 17, udp(C1, FAR, 40002, 53, b"opts"), opts=OPT_RR)
    write(t, "ipv4-options-record-route", records((IN, opts)))
    ra = ipv4(C1, FAR, 6, tcp(C1, FAR, 40003, 443, SYN), opts=OPT_RA + OPT_NOP)
    write(t, "ipv4-options-router-alert-nop", records((IN, ra)))
    frag = ipv4(C1, FAR, 17, udp(C1, FAR, 40004, 53, b"x" * 16), frag=0x2000)
    frag2 = ipv4(C1, FAR, 17, b"y" * 16, frag=0x0002)
    write(t, "fragments", records((IN, frag), (IN, frag2)))
    part = ipv4(C1, FAR, 6, tcp(C1, FAR, 40005, 80, SYN, partial=True))
    part_u = ipv4(C1, FAR, 17, udp(C1, FAR, 40006, 53, b"p", partial=True))
    write(t, "partial-checksums", records((IN | PART, part), (IN | PART, part_u)))
    nocsum = ipv4(C1, FAR, 17, udp(C1, FAR, 40007, 53, b"none", nocsum=True))
    write(t, "udp-without-checksum", records((IN, nocsum)))
    flood = [(IN, ipv4(C1, FAR, 17, udp(C1, FAR, 20000 + i, 53, b"f"))) for i in range(40)]
    write(t, "new-flow-flood-past-limit", records(*flood))
    expiry = records((IN, u_out), (OUT | STEP_31S | 0x40, u_back), (OUT, u_back))
    write(t, "udp-expired-before-reply", expiry)
    same_port = [(IN, ipv4(a, FAR, 17, udp(a, FAR, 40000, 53, b"s"))) for a in (C1, C2)]
    write(t, "two-containers-same-source-port", records(*same_port))
    mapped = bytearray(u_out)
    write(t, "mapped-and-fixed", records((IN | FIXB | 0x80, bytes(mapped)), (OUT | FIXB | 0x80, u_back)))
    write(t, "proto-gre-unsupported", records((IN, ipv4(C1, FAR, 47, b"\0" * 8))))
    write(t, "truncated-tcp", records((IN, ipv4(C1, FAR, 6, b"\0" * 10))))


# --- nat_rewrite -------------------------------------------------------------------------

# --- services ------------------------------------------------------------------------------
# ctl: 0x01 from outside, 0x02 fix checksums, 0x04 map addresses, 0x08 map ports, 0x30
# clock step, 0x40 flip a backend's health, 0x80 expire. VIP 172.18.0.100 (tcp:80, udp:53;
# backend .3 on 8080), VIP_ANY 172.18.0.101 (every port), uplink 9000 published to VIP:80.
VIP, VIP_ANY, CL = ip4("172.18.0.100"), ip4("172.18.0.101"), ip4("172.18.0.50")
B2, B3, B4 = ip4("172.18.0.2"), ip4("172.18.0.3"), ip4("172.18.0.4")


def services_seeds():
    t = "services"
    syn = lambda sp: ipv4(CL, VIP, 6, tcp(CL, VIP, sp, 80, SYN, opts=MSS))
    write(t, "three-syns-round-robin", records((0, syn(40000)), (0, syn(40001)), (0, syn(40002))))
    synack = ipv4(B2, CL, 6, tcp(B2, CL, 80, 40000, SYN | ACK, seq=5000, ack=1001, opts=MSS))
    ack = ipv4(CL, VIP, 6, tcp(CL, VIP, 40000, 80, ACK, seq=1001, ack=5001))
    fin_b = ipv4(B2, CL, 6, tcp(B2, CL, 80, 40000, FIN | ACK, seq=5001, ack=1001))
    fin_c = ipv4(CL, VIP, 6, tcp(CL, VIP, 40000, 80, FIN | ACK, seq=1001, ack=5002))
    last = ipv4(B2, CL, 6, tcp(B2, CL, 80, 40000, ACK, seq=5002, ack=1002))
    write(t, "backend-closes-first-then-port-reused",
          records((0, syn(40000)), (0, synack), (0, ack), (0, fin_b), (0, ack), (0, fin_c), (0, last), (0, syn(40000))))
    q = ipv4(CL, VIP, 17, udp(CL, VIP, 40000, 53, b"query"))
    a = ipv4(B3, CL, 17, udp(B3, CL, 8080, 40000, b"answer"))
    write(t, "udp-to-remapped-backend-and-reply", records((0, q), (0, q), (0, a)))
    write(t, "health-flips-then-syn", records((0x40, syn(40003)), (0x40 | 0x10, syn(40004)), (0x40 | 0x20, syn(40005))))
    anyp = ipv4(CL, VIP_ANY, 6, tcp(CL, VIP_ANY, 40006, 5432, SYN))
    write(t, "every-port-service", records((0, anyp)))
    pub = ipv4(FAR, UPLINK, 6, tcp(FAR, UPLINK, 50000, 9000, SYN, opts=MSS))
    write(t, "published-to-vip", records((OUT, pub)))
    other = ipv4(C3, VIP, 6, tcp(C3, VIP, 40007, 80, SYN))
    write(t, "other-network-to-vip", records((0, other)))
    write(t, "unserved-port", records((0, ipv4(CL, VIP, 6, tcp(CL, VIP, 40008, 81, SYN)))))
    write(t, "mapped-fixed-expired", records((0x0E, syn(1)), (0x0E | 0x30 | 0x80, syn(2))))


def nat_rewrite_seeds():
    t = "nat_rewrite"
    to = UPLINK + FAR + struct.pack("!HH", 33000, 80)
    pk = {
        "tcp-syn-mss": ipv4(C1, FAR, 6, tcp(C1, FAR, 40000, 80, SYN, opts=MSS)),
        "tcp-data": ipv4(C1, FAR, 6, tcp(C1, FAR, 40000, 80, PSH | ACK, b"hello" * 20)),
        "tcp-ipv4-options": ipv4(C1, FAR, 6, tcp(C1, FAR, 40000, 80, ACK), opts=OPT_RR),
        "udp": ipv4(C1, FAR, 17, udp(C1, FAR, 5000, 53, b"query")),
        "udp-no-checksum": ipv4(C1, FAR, 17, udp(C1, FAR, 5000, 53, b"q", nocsum=True)),
        "udp-odd-length": ipv4(C1, FAR, 17, udp(C1, FAR, 5000, 53, b"odd")),
        "echo-request": ipv4(C1, FAR, 1, echo(77, 1)),
        "echo-reply": ipv4(FAR, C1, 1, echo(77, 1, request=False)),
        "error-quoting-udp": ipv4(FAR, UPLINK, 1, icmp_error(3, 3, ipv4(UPLINK, FAR, 17, udp(UPLINK, FAR, 33000, 53, b"q")))),
        "error-quoting-tcp-40": ipv4(FAR, UPLINK, 1, icmp_error(11, 0, ipv4(UPLINK, FAR, 6, tcp(UPLINK, FAR, 33000, 80, SYN)), quote=40)),
        "error-quoting-echo": ipv4(FAR, UPLINK, 1, icmp_error(3, 1, ipv4(UPLINK, FAR, 1, echo(77, 1)))),
        "error-quoting-options": ipv4(FAR, UPLINK, 1, icmp_error(12, 0, ipv4(UPLINK, FAR, 17, udp(UPLINK, FAR, 1, 2), opts=OPT_NOP), quote=32)),
        "error-nested": ipv4(FAR, UPLINK, 1, icmp_error(3, 3, ipv4(UPLINK, FAR, 1, icmp_error(3, 3, ipv4(FAR, UPLINK, 17, udp(FAR, UPLINK, 1, 2)))))),
        "fragment": ipv4(C1, FAR, 17, udp(C1, FAR, 1, 2, b"x" * 8), frag=0x2000),
        "timestamp-unsupported": ipv4(C1, FAR, 1, icmp(13, 0, b"\0" * 16)),
    }
    for name, p in pk.items():
        write(t, name, bytes([0]) + to + p)
    write(t, "tcp-partial", bytes([2]) + to + ipv4(C1, FAR, 6, tcp(C1, FAR, 40000, 80, SYN, partial=True)))
    write(t, "udp-partial", bytes([2]) + to + ipv4(C1, FAR, 17, udp(C1, FAR, 5000, 53, b"q", partial=True)))
    write(t, "same-tuple", bytes([1]) + C1 + FAR + struct.pack("!HH", 40000, 80) + pk["tcp-data"])
    write(t, "zero-tuple", bytes([1]) + b"\0" * 12 + pk["udp"])


# --- gateway -----------------------------------------------------------------------------
# ctl: 0x03 side (0 net0, 1 net1, 2 uplink, 3 tick/reconfigure), 0x04 fix, 0x08 to the
# gateway's MAC, 0x10 NEEDS_CSUM, 0x20 map, 0x40 force type, 0x80 ARP.
N0, N1, UP, TICK = 0, 1, 2, 3
RECONF_SAME, RECONF_NOUP, RECONF_NARROW = 3 | (1 << 2), 3 | (2 << 2), 3 | (3 << 2)


def arp_req(sha, spa, tpa, dst=BCAST):
    return eth(dst, sha, 0x0806, arp(1, sha, spa, b"\0" * 6, tpa))


def arp_rep(sha, spa, tha, tpa, dst):
    return eth(dst, sha, 0x0806, arp(2, sha, spa, tha, tpa))


def gw_seeds(t="gateway"):
    who_gw = arp_req(mac(2), C1, GW0)
    wan_reply = arp_rep(mac(0x99), WAN_GW, UPLINK_MAC, UPLINK, UPLINK_MAC)
    out_udp = eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, FAR, 17, udp(C1, FAR, 40000, 53, b"query")))
    back_udp = eth(UPLINK_MAC, mac(0x99), 0x0800, ipv4(FAR, UPLINK, 17, udp(FAR, UPLINK, 53, 40000, b"answer")))
    write(t, "arp-for-gateway", records((N0, who_gw)))
    write(t, "arp-for-gateway-net1", records((N1, arp_req(mac(3), C3, GW1))))
    write(t, "udp-out-resolve-next-hop-reply",
          records((N0, who_gw), (N0, out_udp), (UP, wan_reply), (UP, back_udp)))
    syn = eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, FAR, 6, tcp(C1, FAR, 40001, 80, SYN, opts=MSS)))
    synack = eth(UPLINK_MAC, mac(0x99), 0x0800, ipv4(FAR, UPLINK, 6, tcp(FAR, UPLINK, 80, 40001, SYN | ACK, seq=7, ack=1001)))
    write(t, "tcp-out-through-uplink", records((N0, who_gw), (UP, wan_reply), (N0, syn), (UP, synack)))
    ping = eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, GW0, 1, echo(1, 1)))
    write(t, "echo-to-gateway", records((N0, who_gw), (N0, ping)))
    ping_up = eth(UPLINK_MAC, mac(0x99), 0x0800, ipv4(FAR, UPLINK, 1, echo(2, 1)))
    write(t, "echo-to-uplink-address", records((UP, wan_reply), (UP, ping_up)))
    ping_in = eth(UPLINK_MAC, mac(0x99), 0x0800, ipv4(FAR, GW0, 1, echo(3, 1)))
    write(t, "echo-from-outside-to-inside-gateway", records((UP, wan_reply), (UP, ping_in)))
    ttl1 = eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, FAR, 17, udp(C1, FAR, 1, 33434, b"trace"), ttl=1))
    write(t, "ttl-expired-time-exceeded", records((N0, who_gw), (N0, ttl1)))
    ttl1_err = eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, FAR, 1, icmp_error(3, 3, ipv4(FAR, C1, 17, udp(FAR, C1, 1, 2))), ttl=1))
    write(t, "ttl-expired-icmp-error-no-reply", records((N0, ttl1_err)))
    spoof = arp_rep(mac(0x66), GW0, mac(2), C1, mac(2))
    write(t, "spoofed-arp-for-gateway", records((N0, spoof)))
    spoof_up = arp_rep(mac(0x66), UPLINK, BCAST, UPLINK, BCAST)
    write(t, "spoofed-arp-for-uplink", records((UP, spoof_up)))
    pub = eth(UPLINK_MAC, mac(0x99), 0x0800, ipv4(FAR, UPLINK, 6, tcp(FAR, UPLINK, 50000, 8080, SYN)))
    c1_arp_reply = arp_rep(mac(2), C1, GW0_MAC, GW0, GW0_MAC)
    write(t, "published-port-in", records((UP, wan_reply), (UP, pub), (N0, c1_arp_reply)))
    iso = eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, C3, 17, udp(C1, C3, 1, 2)))
    write(t, "isolation-between-networks", records((N0, iso)))
    opts = eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, FAR, 17, udp(C1, FAR, 40002, 53, b"o"), opts=OPT_RR))
    write(t, "ipv4-options-routed", records((UP, wan_reply), (N0, opts)))
    bad = bytearray(out_udp)
    bad[14 + 10] ^= 0xFF
    write(t, "bad-ip-checksum", records((N0, bytes(bad))))
    v6 = eth(GW0_MAC, mac(2), 0x86DD, ipv6(V6A, V6B, 17, b"\0" * 8))
    write(t, "ipv6-ignored", records((N0, v6)))
    write(t, "runt", records((N0, b"\x02\x76\0\0\0\x01\x02")))
    part = eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, FAR, 6, tcp(C1, FAR, 40005, 80, SYN, partial=True)))
    write(t, "needs-csum-tcp", records((UP, wan_reply), (N0 | 0x10 | 0x04, part)))
    queue = [(N0, eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, FAR, 17, udp(C1, FAR, 30000 + i, 53, b"q")))) for i in range(40)]
    write(t, "queue-while-resolving", records(*queue, (UP, wan_reply)))
    write(t, "queued-then-uplink-changes", records((N0, out_udp), (RECONF_NARROW, b""), (RECONF_NOUP, b""), (RECONF_SAME, b"")))
    write(t, "queued-then-tick", records((N0, out_udp), (TICK, b""), (TICK, b"")))
    neigh = arp_req(mac(0x77), WAN_PEER, UPLINK)
    direct = eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, WAN_PEER, 17, udp(C1, WAN_PEER, 1, 2)))
    write(t, "uplink-neighbour-on-link", records((UP, neigh), (N0, direct)))
    write(t, "mapped-fixed-forced", records((N0 | 0x04 | 0x08 | 0x20 | 0x40, out_udp), (UP | 0x20 | 0x40 | 0x80, wan_reply)))


# --- frame (the bridge) -------------------------------------------------------------------
# ctl: 0x07 port (1 unaware, 2 access 10, 3 trunk 10,20 native 1, 4 trunk 10,20,30,
# 5 unaware, 6 gateway; 0 uplink; 7 tick), 0x08 aux tag (4 bytes first), 0x10 vnet header
# (10 bytes next), 0x60 clock, 0x80 fix.
P_UNAWARE, P_ACCESS, P_TRUNK_N, P_TRUNK, P_UNAWARE2, P_GW, P_UPLINK, P_TICK = 1, 2, 3, 4, 5, 6, 0, 7
Q, AD = 0x8100, 0x88A8


def frame_seeds():
    t = "frame"
    a, b = mac(0xA), mac(0xB)
    pay = b"\x08\x00" + b"\x45" + b"\0" * 45
    write(t, "learn-and-forward", records((P_UNAWARE, b + a + pay), (P_UNAWARE2, a + b + pay), (P_UNAWARE, b + a + pay)))
    write(t, "broadcast-flood", records((P_UNAWARE, BCAST + a + pay)))
    write(t, "access-to-trunk-push", records((P_ACCESS, BCAST + a + pay), (P_TRUNK, a + b + struct.pack("!HH", Q, 10) + pay)))
    write(t, "trunk-tagged-vlan20", records((P_TRUNK, BCAST + b + struct.pack("!HH", Q, 0xA014) + pay)))
    write(t, "trunk-native-untagged", records((P_TRUNK_N, BCAST + b + pay)))
    write(t, "priority-tagged-on-access", records((P_ACCESS, BCAST + a + struct.pack("!HH", Q, 0x6000) + pay)))
    write(t, "qinq-outer-tag", records((P_TRUNK, BCAST + b + struct.pack("!HHHH", AD, 20, Q, 100) + pay)))
    write(t, "double-tag-vlan-hop-attempt", records((P_TRUNK, BCAST + b + struct.pack("!HHHH", Q, 1, Q, 20) + pay),
                                                     (P_UNAWARE, BCAST + a + struct.pack("!HHHH", Q, 1, Q, 20) + pay)))
    write(t, "tag-not-member", records((P_ACCESS, BCAST + a + struct.pack("!HH", Q, 20) + pay)))
    write(t, "aux-tag-stripped", records((P_TRUNK | 0x08, struct.pack("!HH", Q, 10) + BCAST + b + pay),
                                          (P_TRUNK | 0x08, struct.pack("!HH", Q, 10) + BCAST + b + struct.pack("!HH", Q, 30) + pay)))
    vh = bytes([1, 0]) + struct.pack("=HHHH", 0, 0, 34, 16)
    tcp_f = eth(b, a, 0x0800, ipv4(C1, FAR, 6, tcp(C1, FAR, 1, 2, ACK, b"z" * 100, partial=True)))
    write(t, "vnet-needs-csum-push", records((P_UNAWARE2, a + b + pay), (P_ACCESS | 0x10, vh + tcp_f)))
    gso = bytes([1, 1]) + struct.pack("=HHHH", 54, 1448, 34, 16)
    write(t, "vnet-gso-pop", records((P_ACCESS, BCAST + b + pay), (P_TRUNK | 0x10, gso + b + a + struct.pack("!HH", Q, 10) + tcp_f[12:])))
    write(t, "link-local-and-bad-source", records((P_UNAWARE, bytes([1, 0x80, 0xC2, 0, 0, 0]) + a + pay),
                                                   (P_UNAWARE, b + BCAST + pay), (P_UNAWARE, b + b"\0" * 6 + pay)))
    write(t, "runts", records((P_UNAWARE, a + b), (P_TRUNK, BCAST + b + struct.pack("!H", Q))))
    flood = [(P_UNAWARE, BCAST + mac(0x40 + i) + pay) for i in range(40)]
    write(t, "mac-flood-past-limit", records(*flood))
    write(t, "aging", records((P_UNAWARE, b + a + pay), (P_UNAWARE2 | 0x60, a + b + pay)))
    # The gateway on the bridge: ARP for it, a datagram out of the uplink, the reply.
    who_gw = arp_req(mac(2), C1, GW0)
    out_udp = eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, FAR, 17, udp(C1, FAR, 40000, 53, b"query")))
    wan_reply = arp_rep(mac(0x99), WAN_GW, UPLINK_MAC, UPLINK, UPLINK_MAC)
    back = eth(UPLINK_MAC, mac(0x99), 0x0800, ipv4(FAR, UPLINK, 17, udp(FAR, UPLINK, 53, 40000, b"answer")))
    write(t, "gateway-route-out-and-back", records((P_UNAWARE, who_gw), (P_UNAWARE, out_udp), (P_UPLINK, wan_reply), (P_UPLINK, back)))
    write(t, "gateway-echo", records((P_UNAWARE, who_gw), (P_UNAWARE, eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, GW0, 1, echo(9, 1))))))
    write(t, "gateway-mac-spoofed", records((P_UNAWARE, BCAST + GW0_MAC + pay), (P_UNAWARE2, GW0_MAC + b + pay)))
    write(t, "gateway-arp-spoofed", records((P_UNAWARE, arp_rep(mac(0x66), GW0, BCAST, GW0, BCAST))))
    write(t, "gateway-ttl-expired", records((P_UNAWARE, who_gw), (P_UNAWARE, eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, FAR, 17, udp(C1, FAR, 1, 2), ttl=1)))))
    write(t, "gateway-tick", records((P_UNAWARE, out_udp), (P_TICK, b""), (P_TICK, b"")))
    write(t, "gateway-from-access-vlan", records((P_ACCESS, who_gw)))
    write(t, "ipv4-options-to-gateway", records((P_UNAWARE | 0x80, who_gw), (P_UNAWARE | 0x80, eth(GW0_MAC, mac(2), 0x0800, ipv4(C1, FAR, 6, tcp(C1, FAR, 1, 2, SYN), opts=OPT_RR)))))


# --- vxlan -------------------------------------------------------------------------------

def vxlan_hdr(vni, flags=0x08):
    return bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0"


def tcp4_frame(n, partial=False, flags=ACK, seq=1000, tags=()):
    payload = bytes((i * 7) & 0xFF for i in range(n))
    return eth(mac(3), mac(2), 0x0800, ipv4(ip4("10.1.0.2"), ip4("10.1.0.3"), 6,
               tcp(ip4("10.1.0.2"), ip4("10.1.0.3"), 40000, 5201, flags, payload, seq=seq, partial=partial)), tags=tags)


def udp4_frame(n, partial=False, nocsum=False):
    payload = bytes((i * 3) & 0xFF for i in range(n))
    return eth(mac(3), mac(2), 0x0800, ipv4(ip4("10.1.0.2"), ip4("10.1.0.3"), 17,
               udp(ip4("10.1.0.2"), ip4("10.1.0.3"), 40000, 5201, payload, nocsum=nocsum, partial=partial)))


def tcp6_frame(n, partial=False, seq=1000, flags=ACK):
    payload = bytes((i * 5) & 0xFF for i in range(n))
    return eth(mac(3), mac(2), 0x86DD, ipv6(V6A, V6B, 6, tcp6(V6A, V6B, 40000, 5201, flags, payload, seq=seq, partial=partial)))


def vxlan_decap_seeds():
    t = "vxlan_decap"
    # sender: 0 10.0.0.2, 1 10.0.0.3, 2 ::ffff:10.0.0.2, 3 2001:db8::2, 4 stranger;
    # mtu: 0 1500, 1 1450, 2 9000, 3 576, 4 1280, 5 100, 6 68, 7 65535.
    arp_f = arp_req(mac(2), ip4("10.1.0.2"), ip4("10.1.0.3"))
    write(t, "arp-vni100", bytes([0, 0]) + vxlan_hdr(100) + arp_f)
    write(t, "tcp-small", bytes([1, 0]) + vxlan_hdr(100) + tcp4_frame(100))
    write(t, "tcp-small-partial", bytes([0, 0]) + vxlan_hdr(100) + tcp4_frame(100, partial=True))
    write(t, "tcp-super-packet-partial", bytes([0, 0]) + vxlan_hdr(100) + tcp4_frame(6000, partial=True))
    write(t, "tcp-super-packet-complete", bytes([0, 0]) + vxlan_hdr(100) + tcp4_frame(4000))
    write(t, "tcp-super-packet-cwr", bytes([0, 0]) + vxlan_hdr(100) + tcp4_frame(3000, flags=ACK | 0x80 | PSH, partial=True))
    write(t, "tcp-super-packet-tagged", bytes([0, 0]) + vxlan_hdr(100) + tcp4_frame(3000, partial=True, tags=((Q, 10),)))
    write(t, "udp-super-packet", bytes([0, 0]) + vxlan_hdr(100) + udp4_frame(4000, partial=True))
    write(t, "udp-no-checksum-big", bytes([0, 0]) + vxlan_hdr(100) + udp4_frame(3000, nocsum=True))
    write(t, "tcp6-super-packet", bytes([3, 0]) + vxlan_hdr(200) + tcp6_frame(5000, partial=True))
    write(t, "tcp6-small", bytes([3, 1]) + vxlan_hdr(200) + tcp6_frame(200))
    write(t, "mapped-ipv6-sender", bytes([2, 0]) + vxlan_hdr(100) + tcp4_frame(64))
    write(t, "max-vni", bytes([0, 0]) + vxlan_hdr(0xFFFFFF) + tcp4_frame(64))
    write(t, "unknown-vni", bytes([0, 0]) + vxlan_hdr(300) + tcp4_frame(64))
    write(t, "unknown-remote", bytes([4, 0]) + vxlan_hdr(100) + tcp4_frame(64))
    write(t, "no-i-flag", bytes([0, 0]) + vxlan_hdr(100, flags=0xF7) + tcp4_frame(64))
    write(t, "reserved-bits-set", bytes([0, 0]) + bytes([0xFF, 1, 2, 3, 0, 0, 100, 9]) + tcp4_frame(64))
    write(t, "truncated", bytes([0, 0]) + vxlan_hdr(100) + b"\0" * 13)
    write(t, "tiny-mtu", bytes([0, 6]) + vxlan_hdr(100) + tcp4_frame(2000, partial=True))
    write(t, "small-mtu-576", bytes([0, 3]) + vxlan_hdr(100) + tcp4_frame(2000, partial=True))
    write(t, "jumbo-mtu", bytes([0, 2]) + vxlan_hdr(100) + tcp4_frame(20000, partial=True))


def virtio(flags=0, gso=0, hdr_len=0, gso_size=0, start=0, off=0):
    return struct.pack("<BBHHHH", flags, gso, hdr_len, gso_size, start, off)


def vxlan_encap_seeds():
    t = "vxlan_encap"
    write(t, "plain-frame", virtio() + bytes([0]) + tcp4_frame(100))
    write(t, "needs-csum-tcp", virtio(1, 0, 0, 0, 34, 16) + bytes([0]) + tcp4_frame(500, partial=True))
    write(t, "needs-csum-udp", virtio(1, 0, 0, 0, 34, 6) + bytes([0]) + udp4_frame(500, partial=True))
    write(t, "tso4", virtio(1, 1, 54, 1448, 34, 16) + bytes([0]) + tcp4_frame(8000, partial=True, flags=ACK | PSH | FIN))
    write(t, "tso4-ecn-cwr", virtio(1, 0x81, 54, 1448, 34, 16) + bytes([0]) + tcp4_frame(5000, partial=True, flags=ACK | 0x80))
    write(t, "tso4-tagged", virtio(1, 1, 58, 1400, 38, 16) + bytes([0]) + tcp4_frame(5000, partial=True, tags=((Q, 10),)))
    write(t, "tso6", virtio(1, 4, 74, 1428, 54, 16) + bytes([0]) + tcp6_frame(6000, partial=True))
    write(t, "uso4", virtio(1, 5, 42, 1400, 34, 6) + bytes([0]) + udp4_frame(6000, partial=True))
    write(t, "tso4-small-mtu", virtio(1, 1, 54, 1448, 34, 16) + bytes([3]) + tcp4_frame(4000, partial=True))
    write(t, "tso4-jumbo-64k", virtio(1, 1, 54, 8948, 34, 16) + bytes([2]) + tcp4_frame(60000, partial=True))
    write(t, "ufo-unsupported", virtio(1, 3, 42, 1400, 34, 6) + bytes([0]) + udp4_frame(3000))
    write(t, "too-big-plain", virtio() + bytes([0]) + tcp4_frame(3000))
    write(t, "csum-offset-past-end", virtio(1, 0, 0, 0, 60000, 16) + bytes([0]) + tcp4_frame(100))
    write(t, "gso-size-zero", virtio(1, 1, 54, 0, 34, 16) + bytes([0]) + tcp4_frame(3000, partial=True))
    write(t, "arp", virtio() + bytes([0]) + arp_req(mac(2), C1, GW0))


def vxlan_gro_seeds():
    t = "vxlan_gro"
    mss = 1400

    def run(frames):
        stride = max(len(f) for f in frames) + 8
        return struct.pack("!H", stride) + b"".join(vxlan_hdr(100) + f for f in frames)

    def segs(n, last, v6=False, flags_last=ACK | PSH):
        out = []
        for i in range(n):
            size = mss if i < n - 1 else last
            fl = ACK if i < n - 1 else flags_last
            seq = 1000 + i * mss
            out.append(tcp6_frame(size, seq=seq, flags=fl) if v6 else tcp4_frame(size, seq=seq, flags=fl))
        return out

    write(t, "tcp4-three-full", run(segs(3, mss)))
    write(t, "tcp4-short-last", run(segs(4, 300)))
    write(t, "tcp6-two", run(segs(2, 700, v6=True)))
    write(t, "tcp4-fin-last", run(segs(3, 100, flags_last=ACK | FIN)))
    s = segs(3, mss)
    s[1] = tcp4_frame(mss, seq=999999)
    write(t, "tcp4-seq-gap", run(s))
    s = segs(2, mss)
    s[1] = s[1][:-1] + bytes([s[1][-1] ^ 1])
    write(t, "tcp4-bad-checksum", run(s))
    write(t, "udp-not-merged", run([udp4_frame(mss), udp4_frame(mss)]))
    write(t, "single-datagram", run(segs(1, mss)))


# --- control -----------------------------------------------------------------------------

def control_seeds():
    t = "control"
    r = lambda **kw: json.dumps(kw, separators=(",", ":"))
    br = r(op="add-br", bridge="br0")
    net = r(op="add-net", bridge="br0", subnet="172.18.0.0/24", gateway="172.18.0.1")
    sessions = {
        "add-br-show": [br, r(op="show"), r(op="list-br")],
        "add-del-br": [br, r(op="del-br", bridge="br0"), r(op="del-br", bridge="br0")],
        "net-publish-unpublish": [br, net, r(op="publish", proto="tcp", host_port=8080, target="172.18.0.2:80"),
                                  r(op="list-published"), r(op="del-net", bridge="br0"),
                                  r(op="unpublish", proto="tcp", host_port=8080), r(op="del-net", bridge="br0")],
        "overlapping-nets": [br, net, r(op="add-br", bridge="br1"),
                             r(op="add-net", bridge="br1", subnet="172.18.0.0/16", gateway="172.18.0.1")],
        "gateway-outside-subnet": [br, r(op="add-net", bridge="br0", subnet="10.0.0.0/24", gateway="10.0.1.1")],
        "aging-and-mac-limit": [br, r(op="set-aging", bridge="br0", seconds=5), r(op="set-aging", bridge="br0", seconds=60),
                                r(op="set-mac-limit", bridge="br0", limit=0), r(op="set-mac-limit", bridge="br0", limit=100)],
        "ct": [r(op="set-ct-limit", limit=10), r(op="ct-show"), r(op="ct-flush"), r(op="set-ct-limit", limit=0)],
        "stats": [br, r(op="stats"), r(op="stats", bridge="br0"), r(op="stats", bridge="br0", port="nope"), r(op="fdb-show", bridge="br0")],
        "vlans-on-missing-port": [br, r(op="add-vlan", bridge="br0", port="p1", vids=[10, 20], untagged=True, pvid=True),
                                  r(op="del-vlan", bridge="br0", port="p1", vids=[10]), r(op="list-vlans", bridge="br0")],
        "fdb-static": [br, r(op="add-fdb", bridge="br0", mac="02:00:00:00:00:0b", port="p1", vlan=10),
                       r(op="del-fdb", bridge="br0", mac="02:00:00:00:00:0b")],
        "port-kinds-refused": [br, r(op="add-port", bridge="br0", iface="gw0", kind="gateway"),
                               r(op="add-port", bridge="br0", iface="vx0", kind="vxlan")],
        "host-requests-parsed-only": [br, r(op="add-port", bridge="br0", iface="veth0"),
                                      r(op="add-tunnel", bridge="br0", name="vx0", vni=42, remotes=["192.0.2.2"]),
                                      r(op="set-uplink", iface="eth0", ip="198.51.100.2/24", gw="198.51.100.1"),
                                      r(op="attach", bridge="br0", netns="/proc/1/ns/net", container="c1", ifname="eth0", ip="172.18.0.2/24"),
                                      r(op="detach", bridge="br0", netns="/proc/1/ns/net", ifname="eth0")],
        "tunnel-requests": [br, r(op="del-tunnel", bridge="br0", name="vx0"),
                            r(op="add-remote", bridge="br0", name="vx0", remote="192.0.2.3"),
                            r(op="del-remote", bridge="br0", name="vx0", remote="192.0.2.3")],
        "del-uplink-none": [r(op="del-uplink")],
        "bad-names": [r(op="add-br", bridge=""), r(op="add-br", bridge="a" * 40), r(op="add-br", bridge="br 0"),
                      r(op="add-br", bridge="br\n0"), r(op="add-br", bridge="../x")],
        "publish-errors": [r(op="publish", proto="udp", host_port=0, target="172.18.0.2:53"),
                           r(op="publish", proto="tcp", host_port=80, target="10.9.9.9:80")],
        "malformed": ['{"op":"add-br"}', '{"op":"nope"}', '{"op":"add-br","bridge":"b","extra":1}', "not json",
                      '{"op":"set-aging","bridge":"b","seconds":-1}', '{"op":"set-aging","bridge":"b","seconds":99999999999}',
                      "[1,2,3]", "{}", '{"op":"show"} trailing'],
        "blank-lines-crlf": ["", "   ", br + "\r", r(op="show") + "\r"],
    }
    for name, lines in sessions.items():
        write(t, name, "\n".join(lines) + "\n")
    write(t, "no-final-newline", br)
    write(t, "invalid-utf8", b'{"op":"add-br","bridge":"br\xff\xfe"}\n')


# --- config ------------------------------------------------------------------------------

def config_seeds():
    t = "config"
    full = {
        "version": 1,
        "bridges": [{
            "name": "br0", "aging_secs": 300, "mac_limit": 65536,
            "ports": [
                {"name": "v1", "type": "tap", "mac": "02:00:00:00:00:01",
                 "vlans": {"pvid": 10, "untagged": [10], "tagged": [20, 30]},
                 "external_ids": {"endpoint": "e1"}},
                {"name": "vx", "type": "vxlan", "tunnel": {"vni": 42, "remotes": ["198.51.100.9"], "dstport": 4789}},
                {"name": "h1p", "type": "afpacket"},
            ],
            "static_fdb": [{"mac": "02:00:00:00:00:0b", "port": "vx", "remote": "198.51.100.9"}],
            "net": {"subnet": "172.18.0.0/24", "gateway": "172.18.0.1"},
        }, {"name": "br1", "ports": [], "net": {"subnet": "172.19.0.0/24", "gateway": "172.19.0.1"}}],
        "uplink": {"iface": "up0", "ip": "198.51.100.2/24", "gw": "198.51.100.1"},
        "published": [{"proto": "tcp", "host_port": 8080, "target": "172.18.0.2:80"},
                      {"proto": "udp", "host_port": 5353, "target": "172.19.0.3:53"}],
        "ct_limit": 1000,
    }
    write(t, "full", json.dumps(full, indent=2))
    write(t, "empty-object", "{}")
    write(t, "empty-bridge", json.dumps({"version": 1, "bridges": [{"name": "br0"}]}))
    attach = {"version": 1, "bridges": [{"name": "br0", "ports": [{"name": "c1-eth0", "type": "tap", "attach": {
        "netns": "/var/run/netns/c1", "netns_id": "4026532000", "container": "c1", "ifname": "eth0",
        "ip": "172.18.0.2/24", "gw": "172.18.0.1", "mtu": 1450}}]}]}
    write(t, "attached-port", json.dumps(attach))
    broken = {
        "duplicate-bridge": {"bridges": [{"name": "b"}, {"name": "b"}]},
        "port-twice": {"bridges": [{"name": "a", "ports": [{"name": "p"}]}, {"name": "b", "ports": [{"name": "p"}]}]},
        "vlan-both-tagged-untagged": {"bridges": [{"name": "b", "ports": [{"name": "p", "vlans": {"untagged": [5], "tagged": [5]}}]}]},
        "pvid-not-member": {"bridges": [{"name": "b", "ports": [{"name": "p", "vlans": {"pvid": 7, "untagged": [5]}}]}]},
        "vxlan-without-tunnel": {"bridges": [{"name": "b", "ports": [{"name": "p", "type": "vxlan"}]}]},
        "overlapping-nets": {"bridges": [{"name": "a", "net": {"subnet": "10.0.0.0/8", "gateway": "10.0.0.1"}},
                                         {"name": "b", "net": {"subnet": "10.1.0.0/16", "gateway": "10.1.0.1"}}]},
        "uplink-is-a-port": {"bridges": [{"name": "b", "ports": [{"name": "eth0"}]}], "uplink": {"iface": "eth0", "ip": "192.0.2.2/24"}},
        "published-to-gateway": {"bridges": [{"name": "b", "net": {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}}],
                                 "published": [{"proto": "tcp", "host_port": 80, "target": "10.0.0.1:80"}]},
        "unknown-field": {"bridges": [], "colour": "blue"},
        "static-fdb-no-port": {"bridges": [{"name": "b", "static_fdb": [{"mac": "02:00:00:00:00:01", "port": "nope"}]}]},
        "aging-too-small": {"bridges": [{"name": "b", "aging_secs": 1}]},
        "tunnel-duplicate-remote": {"bridges": [{"name": "b", "ports": [{"name": "vx", "type": "vxlan",
                                                "tunnel": {"vni": 1, "remotes": ["192.0.2.1", "192.0.2.1"]}}]}]},
    }
    for name, c in broken.items():
        write(t, name, json.dumps(c))
    write(t, "truncated-json", json.dumps(full)[:200])
    write(t, "not-json", "bridges = []\n")


# --- topology ----------------------------------------------------------------------------

def topology_seeds():
    t = "topology"
    d = os.path.join(ROOT, "topologies")
    for f in sorted(os.listdir(d)):
        if f.endswith(".yaml"):
            shutil.copy(os.path.join(d, f), os.path.join(CORPUS, t, f))
    write(t, "minimal.yaml", "hosts:\n  h1: {ip: 10.0.0.1/24}\n")
    write(t, "bad-indent.yaml", "hosts:\n  h1:\n ip: 10.0.0.1/24\n")
    write(t, "unknown-key.yaml", "name: x\nhostz:\n  h1: {}\n")
    write(t, "duplicate-key.yaml", "hosts:\n  h1: {}\n  h1: {}\n")
    write(t, "empty.yaml", "")
    write(t, "anchors.yaml", "x: &a {ip: 10.0.0.1/24}\nhosts:\n  h1: *a\n  h2: *a\n")
    write(t, "check-shape.yaml", "hosts:\n  h1: {}\nchecks:\n  - ping: {from: h1, to: h1}\n    name: wrong-place\n")


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    os.makedirs(os.path.join(CORPUS, "topology"))
    nat_seeds()
    services_seeds()
    nat_rewrite_seeds()
    gw_seeds()
    frame_seeds()
    vxlan_decap_seeds()
    vxlan_encap_seeds()
    vxlan_gro_seeds()
    control_seeds()
    config_seeds()
    topology_seeds()
    total = 0
    for root, _, files in os.walk(CORPUS):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    for tgt in sorted(os.listdir(CORPUS)):
        print(f"{tgt}: {len(os.listdir(os.path.join(CORPUS, tgt)))} seeds")
    print(f"corpus: {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
