"""A task whose weights cannot fit anywhere is refused when the sweep is expanded."""
from __future__ import annotations

import pytest

from moecluster.head.sweep import SweepError, expand, parse_sweep
from moecluster.head.sweep.memory import MAX_TASK_WEIGHT_BYTES, weight_bytes

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
    plan = expand(parse_sweep("name: t\nreplicates: 1\nmodels: [{preset: xxl}]\ndtype: [float32, bfloat16]\n"))
    assert len(plan.tasks) == 4


def test_an_mlp_batch_whose_activations_cannot_fit_is_refused_naming_them() -> None:
    with pytest.raises(SweepError) as info:
        expand(parse_sweep("name: t\nreplicates: 1\nmodels: [{preset: small}]\nbatch_size: 2000000000\n"))
    message = str(info.value)
    assert message.startswith("task small-grouped-fp32-b2000000000-dense-total: needs ")
    assert "for 2,000,000,000 rows × 977), more than the 1,024 GiB any task can hold; lower batch_size" in message


def test_an_llm_prompt_whose_kv_cache_cannot_fit_is_refused_naming_it() -> None:
    with pytest.raises(SweepError) as info:
        expand(parse_sweep("name: t\nreplicates: 1\nworkload: llm\nmodels: [{preset: mixtral-8x7b}]\nphase: decode\n"
                           "prompt_len: 1000000000\n"))
    message = str(info.value)
    assert "KV cache" in message and "lower batch_size or prompt_len" in message and len(message) < 300


def test_the_llm_figure_is_the_nodes_own_estimate() -> None:
    from moecluster.spec.llm.memory import memory_need
    from moecluster.spec.llm.shapes import LlmShape
    from moecluster.head.sweep.memory import batch_bytes

    task = expand(parse_sweep("name: t\nreplicates: 1\n"
        "workload: llm\nmodels: [{preset: mixtral-8x7b}]\nphase: decode\n")).tasks[-1]
    need = memory_need(LlmShape.from_model(task.architecture or "", task.model), task.dtype, "decode",
                       task.batch_size, task.prompt_len, task.gen_tokens)
    assert batch_bytes(task)[0] == pytest.approx(need.total_bytes - need.weights_bytes)
