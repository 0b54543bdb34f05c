"""The `node` label of a Ray node: the same name in task records, live metrics and reports."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any


def node_names(nodes: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The `node` label of each Ray node (by node id, from `ray.nodes()` entries): its host
    name, with the node id's first 8 characters appended where several nodes share one host
    name (e.g. a test cluster on one machine), so that labels stay unique."""
    hosts = {n["NodeID"]: str(n.get("NodeManagerHostname") or n["NodeManagerAddress"]) for n in nodes}
    dup = Counter(hosts.values())
    return {nid: (h if dup[h] == 1 else f"{h}-{nid[:8]}") for nid, h in hosts.items()}
