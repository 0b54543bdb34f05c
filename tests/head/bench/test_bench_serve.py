"""The tasks of `bench --workload serve` (`head.bench.serve`): a served pair's sides, load and counts."""
from __future__ import annotations

from moecluster.head.bench.serve import serve_specs


def test_a_served_pair_puts_the_dense_side_first_with_the_same_arrivals_and_reads_counts_like_a_sweep() -> None:
    given: dict[str, object] = {
        "serve_url": None, "serve_command": "vllm serve {model} --port {port}", "serve_model": "Qwen/Qwen3-30B-A3B",
        "params_total": 30.5e9, "params_active": 3.3e9, "dense_url": "http://127.0.0.1:9000", "dense_command": None,
        "dense_model": "Qwen/Qwen3-32B", "dense_params_total": 32.8e9, "concurrency": None, "request_rate": 2.0,
        "burstiness": None, "max_in_flight": 8, "max_tokens": None, "serve_output": None, "prompts_file": None,
        "startup_timeout_s": None}
    dense, moe = serve_specs(given, device="cpu", duration_s=5.0, warmup_s=1.0, repeats=3, meter="fake", seed=9,
                             match="total")
    assert (dense.kind, dense.task_id, moe.kind, moe.task_id) == (
        "dense", "bench-Qwen3-30B-A3B-r2-dense-total", "moe", "bench-Qwen3-30B-A3B-r2-moe")
    assert moe.model == {"params_total": 30_500_000_000, "params_active": 3_300_000_000}
    assert dense.model == {"params_total": 32_800_000_000, "params_active": 32_800_000_000}
    assert dense.serve is not None and moe.serve is not None and dense.serve.url == "http://127.0.0.1:9000"
    assert (moe.serve.request_rate, moe.serve.burstiness, moe.serve.max_in_flight, moe.serve.arrival_seed) == \
        (dense.serve.request_rate, dense.serve.burstiness, dense.serve.max_in_flight, dense.serve.arrival_seed) == \
        (2.0, 1.0, 8, 9)
    assert moe.serve.max_tokens == 256 and len(moe.serve.prompts) >= 20  # the sweep's defaults
