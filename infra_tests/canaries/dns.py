"""A canary resolver: answers every A query with a TEST-NET address and logs the name it was asked.

Stdlib only, run from the qc-mcp image. It stands for an upstream resolver that forwards an
attacker's lookups: the NET-05 mutant points qc-mcp at it, and a test that resolves a random
name must then go red. Nothing in a real stack ever queries it.
"""

from __future__ import annotations

import json
import socket
import struct

ANSWER_ADDRESS = bytes([192, 0, 2, 53])  # TEST-NET-1 (RFC 5737): routes nowhere
TYPE_A = 1


def question_name(packet: bytes) -> tuple[str, int]:
    """The queried name and the offset just past it (no compression in questions)."""
    labels, offset = [], 12
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    return ".".join(labels), offset + 1


def answer(packet: bytes) -> bytes:
    name, end = question_name(packet)
    qtype = struct.unpack("!H", packet[end : end + 2])[0]
    question = packet[12 : end + 4]
    print(json.dumps({"dns_canary_query": name, "type": qtype}), flush=True)
    flags = 0x8180  # response, recursion desired and available, no error
    if qtype != TYPE_A:
        return packet[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + question
    record = b"\xc0\x0c" + struct.pack("!HHIH", TYPE_A, 1, 60, 4) + ANSWER_ADDRESS
    return packet[:2] + struct.pack("!HHHHH", flags, 1, 1, 0, 0) + question + record


def main() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("0.0.0.0", 53))  # noqa: S104
    while True:
        packet, client = server.recvfrom(512)
        try:
            server.sendto(answer(packet), client)
        except (IndexError, struct.error, UnicodeError):
            continue


if __name__ == "__main__":
    main()
