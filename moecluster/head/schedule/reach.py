"""Whether the head can still reach each node, on its own clock rather than Ray's health check.

Ray's GCS marks a partitioned node dead only after its health checks fail (about 65 s with Ray's
defaults). Meanwhile Ray still counts the node's resources and lets its pair "run": the sweep
would wait that long for one pair. The head opens a TCP connection to each node's raylet port
every time it reads the inventory (a partitioned host drops the packets: the connection times
out; a live raylet's kernel answers at once, however busy the raylet is). A node that has not
answered for `unreachable_s` is treated as lost by the scheduler until it answers again: its
pairs go back to the queue and no new pair is sent there.
"""
from __future__ import annotations

import socket
from collections.abc import Iterable

from moecluster.head.schedule.cluster import NodeInfo

CONNECT_TIMEOUT_S = 0.5


def answers(address: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to `address:port` opens within `timeout_s`."""
    try:
        socket.create_connection((address, port), timeout=timeout_s).close()
    except OSError:
        return False
    return True


class Reach:
    """The nodes that have not answered the head for `unreachable_s` seconds (as of the last `check`)."""

    def __init__(self, unreachable_s: float) -> None:
        self.unreachable_s = unreachable_s
        self._silent_since: dict[str, float] = {}  # node id -> when it first failed to answer, in a row

    def check(self, nodes: Iterable[NodeInfo], now: float) -> set[str]:
        """Try each node with a known port; the ids of those silent for at least `unreachable_s`."""
        seen = set()
        for node in nodes:
            if not node.port:
                continue
            seen.add(node.node_id)
            if answers(node.address, node.port):
                self._silent_since.pop(node.node_id, None)
            else:
                self._silent_since.setdefault(node.node_id, now)
        self._silent_since = {k: v for k, v in self._silent_since.items() if k in seen}
        return {k for k, since in self._silent_since.items() if now - since >= self.unreachable_s}
