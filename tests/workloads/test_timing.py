"""Timing a call for choosing forms: warm-up, a calibrated run per sample, the median."""
import pytest
import torch

from moecluster.workloads.timing import time_call_s


def test_every_sample_runs_at_least_one_call_after_the_warmup() -> None:
    calls = []
    seconds = time_call_s(lambda: calls.append(1), torch.device("cpu"), samples=3, warmup_calls=2, min_sample_s=0)
    assert seconds >= 0
    assert len(calls) == 2 + 1 + 3  # warm-up, calibration, one call per sample (min_sample_s=0)


def test_at_least_one_sample_is_needed() -> None:
    with pytest.raises(ValueError, match="samples must be >= 1"):
        time_call_s(lambda: None, torch.device("cpu"), samples=0)


def test_a_race_sample_is_the_timed_call_itself_when_it_lasts_long_enough() -> None:
    import time

    from moecluster.workloads.timing import time_sample_s

    calls = []

    def slow() -> None:
        calls.append(1)
        time.sleep(0.003)
    seconds = time_sample_s(slow, torch.device("cpu"), min_sample_s=0.002)
    assert len(calls) == 2 and seconds >= 0.003  # a warm-up call, then the timed one is the sample
    calls.clear()
    fast_s = time_sample_s(lambda: calls.append(1), torch.device("cpu"), min_sample_s=0.05)
    assert len(calls) > 3 and 0 < fast_s < 0.05  # too short alone: a calibrated run of calls
