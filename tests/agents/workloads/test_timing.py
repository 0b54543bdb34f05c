"""Timing a call for choosing forms: warm-up, a calibrated run per sample, the median."""
import pytest
import torch

from moecluster.agents.workloads.timing import time_call_s


def test_every_sample_runs_at_least_one_call_after_the_warmup() -> None:
    calls = []
    seconds = time_call_s(lambda: calls.append(1), torch.device("cpu"), samples=3, warmup_calls=2, min_sample_s=0)
    assert seconds >= 0
    assert len(calls) == 2 + 1 + 3  # warm-up, calibration, one call per sample (min_sample_s=0)


def test_at_least_one_sample_is_needed() -> None:
    with pytest.raises(ValueError, match="samples must be >= 1"):
        time_call_s(lambda: None, torch.device("cpu"), samples=0)
