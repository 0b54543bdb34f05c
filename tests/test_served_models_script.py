"""benchmarks/served_models.py writes the serve sweep of an LLM preset's MoE and its twins: the sweep loads
through the real loader and expands into one pair per concurrency level, each with the MoE and both twins at
the parameter counts the llm workload's accounting gives (the models themselves are written on the GPU)."""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import yaml

from moecluster.head.sweep import expand, load_sweep

ROOT = Path(__file__).resolve().parent.parent


def test_the_served_sweep_loads_and_pairs_the_moe_with_both_twins(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("served_models", ROOT / "benchmarks" / "served_models.py")
        assert spec is not None and spec.loader is not None
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    models = script.shapes("mixtral-8x7b-8l", 2)
    args = argparse.Namespace(duration=4.0, warmup=2.0, repeats=2, replicates=1, max_tokens=64, concurrency=[1, 8, 32])
    path = tmp_path / "served.yaml"
    path.write_text(yaml.safe_dump(script.sweep("m2", tmp_path / "models", models, args)))
    plan = expand(load_sweep(path))
    assert len(plan.pairs) == 3
    for pair in plan.pairs:
        by_kind = {(t.kind, t.match): t for t in pair.tasks}
        assert set(by_kind) == {("moe", None), ("dense", "total"), ("dense", "active")}
        for (_, match), task in by_kind.items():
            key = "moe" if match is None else f"dense-{match}"
            assert task.model["params_total"] == models[key][0].params().total
            assert "transformers serve" in task.serve.command
    moe = models["moe"][0].params()
    assert abs(models["dense-total"][0].params().total / moe.total - 1) < 0.01
    assert abs(models["dense-active"][0].params().total / moe.active_per_token - 1) < 0.01
