"""Seed 004's prediction of an expert-parallel task's communication (bytes per token, time share)."""
from __future__ import annotations

from dataclasses import replace

import moecluster_synthetic as syn
import pytest

from moecluster.spec.mlp.shapes import PRESETS
from moecluster.head.estimate import gpu
from moecluster.head.estimate.ep import predicted_comm
from moecluster.head.estimate.formulas import comm_share
from moecluster.head.estimate.models import from_mlp


def _moe(degree: int, gpu_name: str, dtype: str = "bfloat16"):  # type: ignore[no-untyped-def]
    shape = PRESETS["large"]
    p = shape.params()
    return syn.task("t", "p", "moe", rate=100.0, eff=1.0, total=p.total, active=p.active_per_token,
                    model=shape.as_model(), expert_parallel=degree, n_gpus=degree, gpu_name=gpu_name,
                    dtype=dtype, batch_size=256)


def test_bytes_per_token_follow_the_seeds_count_and_the_share_needs_a_datasheet() -> None:
    shape = PRESETS["large"]
    on_h100 = predicted_comm(_moe(4, "NVIDIA H100 80GB HBM3"))
    assert on_h100 is not None and on_h100.gpu == "h100-sxm"
    # k x (input + output width) x 2 bytes (bf16) x 1 MoE layer x (d - 1)/d
    assert on_h100.bytes_per_token == pytest.approx(shape.top_k * (shape.input_dim + shape.output_dim) * 2 * 3 / 4)
    assert on_h100.time_share == pytest.approx(comm_share(from_mlp(shape), gpu("h100"), "bfloat16", 256, 4))
    on_fake = predicted_comm(_moe(4, "Fake FAKE-A"))
    assert on_fake is not None and on_fake.time_share is None and on_fake.gpu is None
    assert on_fake.bytes_per_token == on_h100.bytes_per_token


def test_nothing_predicted_for_a_dense_task_or_an_unknown_shape() -> None:
    moe = _moe(2, "NVIDIA H100 80GB HBM3")
    assert predicted_comm(replace(moe, spec=replace(moe.spec, kind="dense"))) is None
    assert predicted_comm(replace(moe, spec=replace(moe.spec, model={"hidden_dim": 8}))) is None
