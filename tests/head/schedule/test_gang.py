"""A gang's pure rules: ranks numbered per node, actors named by run, pair, attempt and rank."""
from __future__ import annotations

from moecluster.head.schedule.gang import actor_name, first_line, local_ranks
from moecluster.head.sweep import expand, parse_sweep

SWEEP = """\
name: g
replicates: 1  # one process per pair: this test counts pairs and tasks
models:
  - {name: tiny, num_experts: 4, expert_hidden_dim: 32, expert_num_layers: 1, top_k: 2}
batch_size: 32
expert_parallel: 2
device: cpu
"""


def test_local_ranks_count_the_gangs_earlier_ranks_on_the_same_node() -> None:
    assert local_ranks(["a", "a", "a", "a"]) == [0, 1, 2, 3]
    assert local_ranks(["a", "b", "a", "b"]) == [0, 0, 1, 1]


def test_actors_are_named_by_run_pair_attempt_and_rank() -> None:
    (pair,) = expand(parse_sweep(SWEEP), run_id="r1").pairs
    assert actor_name(pair, 2, 1) == f"gang-r1-{pair.pair_id}-a2-r1"


def test_an_error_is_one_line_with_its_type() -> None:
    assert first_line(RuntimeError("traceback ...\nConnection closed by peer")) == \
        "RuntimeError: Connection closed by peer"
