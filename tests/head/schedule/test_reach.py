"""`reach.Reach`: which nodes have not answered the head for long enough, with real sockets."""
from __future__ import annotations

import socket

from moecluster.head.schedule.cluster import NodeInfo
from moecluster.head.schedule.reach import Reach


def node(node_id: str, port: int) -> NodeInfo:
    return NodeInfo(node_id=node_id, name=node_id, address="127.0.0.1", cpus=1, gpus=0, accelerator_type=None,
                    port=port)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_node_silent_for_the_whole_grace_is_reported_until_it_answers_again() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        live = node("live", server.getsockname()[1])
        port = closed_port()
        silent = node("silent", port)
        reach = Reach(unreachable_s=10)
        assert reach.check([live, silent], now=100.0) == set()  # silent since 100
        assert reach.check([live, silent], now=109.0) == set()
        assert reach.check([live, silent], now=110.0) == {"silent"}
        with socket.socket() as back:  # it answers again: out of the set at once, and a new silence starts anew
            back.bind(("127.0.0.1", port))
            back.listen()
            assert reach.check([live, silent], now=111.0) == set()
        assert reach.check([live, silent], now=112.0) == set()
        assert reach.check([live, silent], now=122.0) == {"silent"}


def test_a_node_without_a_known_port_or_gone_from_the_inventory_is_not_reported() -> None:
    reach = Reach(unreachable_s=0)
    gone = node("gone", closed_port())
    assert reach.check([gone, node("unknown", 0)], now=0.0) == {"gone"}
    assert reach.check([node("unknown", 0)], now=5.0) == set()
