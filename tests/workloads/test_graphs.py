"""When CUDA graphs may be tried: the task's wish (None, True, False) against the device."""
import pytest
import torch

from moecluster.workloads.graphs import graph_policy


def test_by_default_graphs_are_tried_on_cuda_and_the_cpu_says_why_not() -> None:
    assert graph_policy(torch.device("cuda", 0), None).blocker is None
    cpu = graph_policy(torch.device("cpu"), None)
    assert cpu.wanted is None and cpu.blocker == "device cpu has no CUDA graphs"


def test_eager_is_the_seeds_way_on_any_device() -> None:
    for device in (torch.device("cuda", 0), torch.device("cpu")):
        policy = graph_policy(device, False)
        assert policy.wanted is False and policy.blocker == "cuda_graphs false: eager, the seed's way"


def test_a_required_graph_on_the_cpu_is_an_error_naming_the_device() -> None:
    with pytest.raises(ValueError, match="cuda_graphs: true needs device cuda; device cpu has no CUDA graphs"):
        graph_policy(torch.device("cpu"), True)
    assert graph_policy(torch.device("cuda", 0), True).wanted is True
