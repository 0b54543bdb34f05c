"""Served pairs' figures from stored results: per window, per process, pooled over replicates, MoE over dense
with intervals; a figure a window cannot give (no response, no energy) is absent, never a zero."""
from __future__ import annotations

from dataclasses import replace

import pytest

from moecluster.spec.records import (ParamCounts, Percentiles, ServeSpec, ServeStats, ServeWindow, TaskResult,
                                       TaskSpec, Window)
from moecluster.report.aggregate import aggregate
from moecluster.report.aggregate.serve import serve_comparisons
from moecluster.report.serve import rows, tables

SERVE = ServeSpec(name="m", model="m", concurrency=4, max_tokens=64, prompts=("hi",))


def result(kind: str, replicate: int, tokens: list[int], energy_j: float, responses: int = 10) -> TaskResult:
    pair = f"p-c4-r{replicate}" if replicate else "p-c4"  # replicate 0: a run of one replicate
    spec = TaskSpec(task_id=pair + ("-moe" if kind == "moe" else "-dense-total"), pair_id=pair,
                    kind="moe" if kind == "moe" else "dense", impl="served" if kind == "moe" else "dense",
                    match=None if kind == "moe" else "total", model={}, workload="serve", run_id="r",
                    model_name=f"{kind}-model", replicate=max(replicate, 1), replicates=2 if replicate else 1,
                    serve=replace(SERVE, name=f"{kind}-model"))
    windows = tuple(Window(inferences=n, duration_s=2.0, energy_j=energy_j, aligned=True) for n in tokens)
    stats = ServeStats(server="started", windows=tuple(
        ServeWindow(responses=responses, output_tokens=n, input_tokens=5 * n, ttft_s=Percentiles(0.1, 0.2, 0.3),
                    in_flight=4.0) for n in tokens), token_counts="usage")
    params = ParamCounts(total=1000, active_per_token=250 if kind == "moe" else 1000)
    return TaskResult(spec=spec, status="ok", windows=windows, params=params, serve=stats, energy_source="fake")


def test_moe_over_dense_ratios_pool_replicates_and_every_figure_has_its_interval() -> None:
    results = [result("moe", r, [200, 210, 190], 100.0) for r in (1, 2)] + \
              [result("dense", r, [100, 105, 95], 100.0) for r in (1, 2)]
    (c,) = serve_comparisons(aggregate(results).pairs)
    ratio = c.ratios["output_tokens_per_j"]
    assert ratio is not None and ratio.mean == pytest.approx(2.0, rel=1e-3) and ratio.lo is not None
    assert c.ratios["j_per_response"] is not None and c.ratios["j_per_response"].mean == pytest.approx(1.0)
    per_active = c.moe.figures["ws_per_response_per_active_param"]
    assert per_active is not None and per_active.mean == pytest.approx(10.0 / 250)  # 100 J / 10 responses / 250
    assert c.moe.figures["input_tokens_per_s"] is not None
    assert c.moe.latency_s["ttft_s.p90"] == pytest.approx(0.2) and c.moe.in_flight == 4.0
    assert c.moe.running_batch is None  # no server gauge: none shown
    titles = [t.title for t in tables(aggregate(results))]
    assert titles[0].startswith("Served models: MoE against dense") and len(titles) == 3
    exported = rows(aggregate(results))
    assert len(exported) == 2 and exported[0]["ratio_output_tokens_per_j"] == pytest.approx(2.0, rel=1e-3)


def test_a_window_without_a_response_gives_no_per_response_figure_rather_than_a_zero() -> None:
    results = [result("moe", 0, [200, 210], 100.0, responses=0), result("dense", 0, [100, 100], 100.0)]
    (c,) = serve_comparisons(aggregate(results).pairs)
    assert c.moe.figures["j_per_response"] is None and c.ratios["j_per_response"] is None
    assert c.moe.figures["output_tokens_per_j"] is not None


OPEN = ServeSpec(name="m", model="m", concurrency=0, max_tokens=64, prompts=("hi",), request_rate=2.5,
                 arrival_seed=3)


def open_loop(kind: str, arrivals: int, responses: int, overload: str = "") -> TaskResult:
    base = result(kind, 0, [200, 210], 100.0, responses=responses)
    assert base.serve is not None
    windows = tuple(replace(w, arrivals=arrivals, queued_open=2, queued_close=2 + arrivals - responses)
                    for w in base.serve.windows)
    return replace(base, spec=replace(base.spec, serve=replace(OPEN, name=f"{kind}-model")),
                   serve=replace(base.serve, windows=windows, overload=overload))


def test_an_open_loop_shows_its_rate_and_a_side_that_fell_behind_withholds_the_ratios() -> None:
    kept_up = [open_loop("moe", 5, 5), open_loop("dense", 5, 5)]
    (c,) = serve_comparisons(aggregate(kept_up).pairs)
    assert not c.overloaded and c.ratios["output_tokens_per_j"] is not None
    assert c.moe.arrivals_per_s == pytest.approx(2.5) and c.moe.queued_close == 2  # 5 arrivals in 2 s windows
    (row, _) = rows(aggregate(kept_up))
    assert (row["load_axis"], row["request_rate"], row["concurrency"], row["arrival_seed"]) == \
        ("request_rate", 2.5, None, 3)
    assert row["overloaded"] is False and row["arrivals_per_s"] == pytest.approx(2.5)
    table = tables(aggregate(kept_up))[0]
    assert "request rate 2.5/s (Poisson, seed 3)" in table.rows[0][0] and "arriving / s · queued at close" in \
        table.columns

    behind = [open_loop("moe", 5, 2, overload="overloaded: answered 1/s of 2.5/s"), open_loop("dense", 5, 5)]
    (c,) = serve_comparisons(aggregate(behind).pairs)
    assert c.overloaded and all(r is None for r in c.ratios.values())  # no ratio against a saturated server
    assert c.moe.overload.startswith("overloaded") and c.moe.queued_close == 5
    table = tables(aggregate(behind))[0]
    assert any(r[0] == "moe moe-model (overloaded)" for r in table.rows)
    assert any(r[0] == "ratio MoE / dense" and r[1] == "overloaded: none" for r in table.rows)
    assert any("overloaded: answered 1/s of 2.5/s" in note for note in table.footnotes)
    assert rows(aggregate(behind))[0]["overloaded"] is True
