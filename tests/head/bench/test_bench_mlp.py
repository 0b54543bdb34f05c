"""`head.bench.mlp`: a dry run builds the pair without running it, and bad flags are refused naming them."""
from __future__ import annotations

import pytest

from moecluster.head.bench.mlp import bench_mlp, graph_mode
from moecluster.head.errors import InputError

SHAPE = {"num_experts": None, "expert_hidden_dim": None, "expert_num_layers": None, "top_k": None}


def never(*_: object) -> None:
    raise AssertionError("a dry run measures no window")


def test_a_dry_run_returns_the_shapes_and_no_results() -> None:
    done = bench_mlp(preset=None, overrides={**SHAPE, "num_experts": 4}, impl="grouped", match="active",
                     device=None, required_graphs=False, eager=False, dry_run=True, on_window=never)
    assert done.moe.num_experts == 4 and done.results == ()
    assert done.dense.params().total < done.moe.params().total  # matched by active parameters


@pytest.mark.parametrize("required, eager, impl, device, culprit", [
    (True, True, "grouped", "cuda", "--cuda-graphs and --eager exclude each other"),
    (True, False, "naive", "cuda", "--cuda-graphs is impossible with --impl naive"),
    (True, False, "grouped", "cpu", "--cuda-graphs needs --device cuda"),
])
def test_an_impossible_graph_is_refused_naming_why(required: bool, eager: bool, impl: str, device: str,
                                                   culprit: str) -> None:
    with pytest.raises(InputError, match=culprit):
        graph_mode(required, eager, impl, device)


def test_graphs_default_to_where_possible() -> None:
    assert graph_mode(False, False, "naive", "cpu") is None and graph_mode(False, True, "grouped", "cuda") is False
    assert graph_mode(True, False, "grouped", "cuda") is True


def test_an_llm_implementation_is_refused_for_the_mlp() -> None:
    with pytest.raises(InputError, match="--impl library is an llm implementation"):
        bench_mlp(preset=None, overrides=SHAPE, impl="library", match="total", device=None, required_graphs=False,
                  eager=False, dry_run=True, on_window=never)
