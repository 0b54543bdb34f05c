"""A task whose weights cannot fit anywhere is refused when the sweep is expanded."""
from __future__ import annotations

import pytest

from moecluster.orchestrator.sweep import SweepError, expand, parse_sweep
from moecluster.orchestrator.sweep.memory import MAX_TASK_WEIGHT_BYTES, weight_bytes

HUGE = ("name: t\nmodels: [{name: huge, num_experts: 8, top_k: 2, expert_hidden_dim: 100000000,"
        " expert_num_layers: 3}]\n")


def test_weight_bytes_is_parameters_times_dtype_bytes() -> None:
    assert weight_bytes(1_000, "float32") == 4_000 and weight_bytes(1_000, "bfloat16") == 2_000


def test_huge_model_is_refused_with_the_memory_it_needs() -> None:
    with pytest.raises(SweepError) as info:
        expand(parse_sweep(HUGE))
    message = str(info.value)
    assert message.startswith("task huge-") and "GiB for the weights alone" in message
    assert f"{MAX_TASK_WEIGHT_BYTES / 2**30:,.0f} GiB" in message


def test_real_presets_pass() -> None:
    plan = expand(parse_sweep("name: t\nmodels: [{preset: xxl}]\ndtype: [float32, bfloat16]\n"))
    assert len(plan.tasks) == 4
