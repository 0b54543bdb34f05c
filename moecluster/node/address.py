"""This node's address as other nodes reach it (no Ray, no torch: the agent process needs it too)."""
from __future__ import annotations

import socket


def node_address() -> str:
    """This node's address as other nodes reach it: the source address of its default route.

    Connecting a UDP socket sends nothing; it only asks the kernel which interface it would use.
    Without a route, the address the host name resolves to, else the loopback address.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
    except OSError:
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"
