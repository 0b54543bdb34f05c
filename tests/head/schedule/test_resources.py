"""What a gang asks Ray for: each rank's bundle must hold something, else the sweep is refused."""
from __future__ import annotations

import pytest

from moecluster.head.schedule.cluster import ClusterError, Inventory, NodeInfo
from moecluster.head.schedule.resources import check_feasible, pair_resources
from moecluster.head.sweep import expand, parse_sweep

SWEEP = """\
name: g
replicates: 1  # one process per pair: this test counts pairs and tasks
models:
  - {name: tiny, num_experts: 4, expert_hidden_dim: 32, expert_num_layers: 1, top_k: 2}
batch_size: 32
expert_parallel: 2
device: cpu
meter: fake
"""
CPU_ONLY = Inventory((NodeInfo("id0", "n0", "127.0.0.1", 4.0, 0.0, None),))


def test_a_gang_of_cpu_slots_is_one_bundle_per_rank() -> None:
    (pair,) = expand(parse_sweep(SWEEP)).pairs
    res = pair_resources(pair, 0, 1.0)
    assert res.ranks == 2 and res.bundle() == {"CPU": 1.0}
    check_feasible([pair], CPU_ONLY, 1.0)


def test_a_gang_whose_ranks_hold_nothing_is_refused() -> None:
    (pair,) = expand(parse_sweep(SWEEP)).pairs
    with pytest.raises(ClusterError, match="gang of 2 ranks with neither GPUs nor CPUs"):
        check_feasible([pair], CPU_ONLY, 0.0)
