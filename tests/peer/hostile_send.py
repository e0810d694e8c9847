#!/usr/bin/env python3
"""Send hand-made RoCEv2 packets from a raw socket (run on the peer guest by test_peer_hostile).

  hostile_send.py SRC DST PACKET...

Each PACKET is the hex of a packet's BTH, extension headers, payload and pad (everything before
the ICRC), optionally prefixed: "badicrc:" (the ICRC's last byte flipped), "noicrc:" (none at
all), "raw:" (the hex is the whole UDP payload, sent as it is). The IPv4 and UDP headers are
built here (IP_HDRINCL) with a fixed identification, so the invariant CRC computed over them is
the one the receiver computes: CRC-32 over 8 bytes of ones, the IP header with TOS, TTL and
checksum as ones, UDP with its checksum as ones, the BTH with resv8a as ones, and the rest.
"""
import socket
import struct
import sys
import zlib

PORT = 4791


def ip_udp(src, dst, udp_payload_len):
    total = 20 + 8 + udp_payload_len
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0x1234, 0x4000, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    udp = struct.pack("!HHHH", 0xc123, PORT, 8 + udp_payload_len, 0)
    return ip, udp


def icrc(ip, udp, body):
    ip, udp, body = bytearray(ip), bytearray(udp), bytearray(body)
    ip[1], ip[8], ip[10:12] = 0xff, 0xff, b"\xff\xff"
    udp[6:8] = b"\xff\xff"
    body[4] = 0xff
    return struct.pack("<I", zlib.crc32(b"\xff" * 8 + bytes(ip) + bytes(udp) + bytes(body)))


def packet(src, dst, spec):
    kind, _, hexbody = spec.rpartition(":")
    body = bytes.fromhex(hexbody)
    if kind == "raw":
        ip, udp = ip_udp(src, dst, len(body))
        return ip + udp + body
    n = len(body) + (0 if kind == "noicrc" else 4)
    ip, udp = ip_udp(src, dst, n)
    crc = b"" if kind == "noicrc" else icrc(ip, udp, body)
    if kind == "badicrc":
        crc = crc[:3] + bytes([crc[3] ^ 0xff])
    return ip + udp + body + crc


def main():
    src, dst, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    for spec in specs:
        s.sendto(packet(src, dst, spec), (dst, 0))
    print(f"sent {len(specs)}")


if __name__ == "__main__":
    main()
