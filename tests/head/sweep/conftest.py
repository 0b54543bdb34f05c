from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples"

ISSUE_EXAMPLE = """\
name: seed-scaling
models:
  - preset: small
  - name: wide
    num_experts: 16
    expert_hidden_dim: 2048
    expert_num_layers: 4
    top_k: 2
impl: [naive, sorted, grouped]
dtype: [float32, bfloat16]
batch_size: [128, 8192]
match: total            # or active, or [total, active]
duration_s: 30
warmup_s: 5
repeats: 3
expert_parallel: 1
device: cuda            # or cpu
"""


@pytest.fixture
def issue_example() -> str:
    """The sweep file of the issue, verbatim."""
    return ISSUE_EXAMPLE


@pytest.fixture
def examples() -> Path:
    return EXAMPLES_DIR
