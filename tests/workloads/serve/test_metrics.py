"""The running batch read from a server's Prometheus page (vLLM's, SGLang's, TGI's gauges)."""
from __future__ import annotations

from moecluster.workloads.serve.metrics import running_batch

VLLM_PAGE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen3-30B-A3B"} 7.0
vllm:num_requests_running{engine="1",model_name="Qwen/Qwen3-30B-A3B"} 5.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen3-30B-A3B"} 3.0
"""


def test_vllms_running_requests_are_summed_over_engines() -> None:
    assert running_batch(VLLM_PAGE) == ("vllm:num_requests_running", 12.0)


def test_sglang_and_tgi_gauges_are_read_and_a_page_without_one_gives_none() -> None:
    assert running_batch("# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs 4\n") == \
        ("sglang:num_running_reqs", 4.0)
    assert running_batch("# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size 2\n") == \
        ("tgi_batch_current_size", 2.0)
    assert running_batch("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n") is None
