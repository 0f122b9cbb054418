"""A passive mDNS listener inside one simulated host (``python -m tests.cluster._mdns_listen IPV4``).

Joins 224.0.0.251 on the interface holding ``IPV4`` only and prints ``{"event": "listening"}``, then one
JSON line ``{"event": "source", "source": ip}`` the first time a datagram from each source arrives.
Tests use it to see which hosts put mDNS on the simulated LAN (the registry itself would only show
what it could decode as a trimicro record; this sees every packet, queries included).
"""

from __future__ import annotations

import json
import socket
import sys

import trio

from trimicro.registry.mdns import MDNS_GROUP, MDNS_PORT


async def main(interface: str) -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # beside the registry's own socket
    sock.setsockopt(socket.IPPROTO_IP, 49, 0)  # IP_MULTICAST_ALL off: this interface's joins only
    sock.setsockopt(
        socket.IPPROTO_IP,
        socket.IP_ADD_MEMBERSHIP,
        socket.inet_aton(MDNS_GROUP) + socket.inet_aton(interface),
    )
    await sock.bind((MDNS_GROUP, MDNS_PORT))
    print(json.dumps({"event": "listening"}), flush=True)
    seen: set[str] = set()
    while True:
        _, (source, _port) = await sock.recvfrom(9000)
        if source not in seen:
            seen.add(source)
            print(json.dumps({"event": "source", "source": source}), flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
