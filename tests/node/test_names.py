"""Node labels: the host name, made unique where several Ray nodes share one host."""
from __future__ import annotations

from moecluster.node.names import node_names


def test_host_names_are_labels_and_shared_hosts_get_the_node_ids_prefix() -> None:
    nodes = [{"NodeID": "aaaaaaaa1111", "NodeManagerHostname": "gpu-1", "NodeManagerAddress": "10.0.0.1"},
             {"NodeID": "bbbbbbbb2222", "NodeManagerHostname": "box", "NodeManagerAddress": "10.0.0.2"},
             {"NodeID": "cccccccc3333", "NodeManagerHostname": "box", "NodeManagerAddress": "10.0.0.2"},
             {"NodeID": "dddddddd4444", "NodeManagerAddress": "10.0.0.9"}]
    assert node_names(nodes) == {"aaaaaaaa1111": "gpu-1", "bbbbbbbb2222": "box-bbbbbbbb",
                                 "cccccccc3333": "box-cccccccc", "dddddddd4444": "10.0.0.9"}
