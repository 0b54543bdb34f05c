"""Cluster-wide energy from a (tiny, local) Prometheus query API answering with known counters."""
from __future__ import annotations

from dataclasses import replace

import pytest

import moecluster_synthetic as syn
from moecluster.spec.records import TaskResult
from moecluster.report.aggregate import Prometheus, PrometheusError, aggregate
from moecluster.report.aggregate.cluster import cluster_energy, window_spans
from moecluster.report.aggregate.prometheus import energy_series

IDLE_W, BUSY_W = 50.0, 300.0


def _scenario(reset_at: float | None = None):  # type: ignore[no-untyped-def]
    """Two single-window tasks on node-a GPUs 0 and 1, node-a GPU 2 and node-b GPU 0 idle.

    Each task's GPU is busy from 3 s after its start (warm-up) to its finish; its 30 s window
    (ending at the finish) measured BUSY_W exactly.
    """
    rate = 1000.0
    a = syn.task("a", "p", "dense", rate=rate, eff=rate / BUSY_W, total=10, active=10, spread=(0.0,),
                 eff_spread=(0.0,), gpu_index=0, started_at=syn.T0, duration_s=30.0)
    b = syn.task("b", "p", "moe", rate=rate, eff=rate / BUSY_W, total=10, active=5, spread=(0.0,),
                 eff_spread=(0.0,), gpu_index=1, started_at=syn.T0 + 50.0, duration_s=30.0)
    busy = {0: [(a.started_at + 3.0, a.finished_at)], 1: [(b.started_at + 3.0, b.finished_at)], 2: []}
    lo, hi = syn.T0 - 300, syn.T0 + 400
    series = {syn.gpu_labels("node-a", i): syn.counter_samples(spans, IDLE_W, BUSY_W, lo, hi)
              for i, spans in busy.items()}
    series[syn.gpu_labels("node-b", 0)] = syn.counter_samples([], IDLE_W, BUSY_W, lo, hi, reset_at=reset_at)
    return [a, b], busy, series


def _timed(r: TaskResult, starts: list[float]) -> TaskResult:
    """The record with each window's start time set (what the check needs from multi-window records)."""
    return replace(r, windows=tuple(replace(w, started_at=t) for w, t in zip(r.windows, starts)))


def test_window_placement() -> None:
    one = syn.task("a", "p", "dense", rate=10.0, eff=1.0, total=1, active=1, spread=(0.0,))
    spans, how = window_spans(one)
    assert how == "reconstructed" and spans == [(one.finished_at - one.windows[0].duration_s, one.finished_at)]
    three = syn.task("b", "p", "dense", rate=10.0, eff=1.0, total=1, active=1)
    spans, how = window_spans(three)
    assert spans is None and "3 windows without start times" in how
    spans, how = window_spans(_timed(three, [syn.T0 + 10, syn.T0 + 40, syn.T0 + 70]))
    assert how == "timestamps" and spans is not None
    assert [s for s, _ in spans] == [syn.T0 + 10, syn.T0 + 40, syn.T0 + 70]
    twin = syn.task("c", "p", "moe", rate=10.0, eff=1.0, total=1, active=1, spread=(0.0,), started_at=syn.T0 + 2)
    spans, how = window_spans(one, [one, twin])  # same GPU (node-a/0), overlapping in time
    assert spans is None and "shares a GPU with c" in how


def test_cluster_energy_and_the_two_percent_check() -> None:
    results, busy, series = _scenario()
    with syn.FakePrometheus(series) as prom:
        c = cluster_energy(results, Prometheus(prom.url))
    start, end = syn.T0, results[1].finished_at
    assert (c.start_s, c.end_s) == (start, end)
    expected = {i: syn.exact_energy(spans, IDLE_W, BUSY_W, start, end) for i, spans in busy.items()}
    got = {(g.key.node, int(g.key.gpu)): g for g in c.gpus}
    # linear interpolation between 1 s scrapes: off by at most a quarter scrape of (busy - idle) per edge
    slack = 2 * 0.25 * (BUSY_W - IDLE_W)
    for i, e in expected.items():
        assert got[("node-a", i)].energy_j == pytest.approx(e, abs=slack)
    assert got[("node-b", 0)].energy_j == pytest.approx(IDLE_W * (end - start), abs=1e-6)
    assert [g.ran_tasks for g in c.gpus] == [True, True, False, False]
    assert c.total_j == pytest.approx(sum(expected.values()) + IDLE_W * (end - start), abs=3 * slack)
    assert c.idle_gpus_j == pytest.approx(expected[2] + IDLE_W * (end - start), abs=1e-6)
    inferences = sum(w.inferences for r in results for w in r.windows)
    assert c.inferences == inferences and c.inferences_per_j == pytest.approx(inferences / c.total_j)
    assert c.tasks_inferences_per_j == pytest.approx(1000.0 / BUSY_W)
    assert c.inferences_per_j < c.tasks_inferences_per_j  # the cluster pays for idle GPUs and warm-ups
    assert c.check is not None and c.check.ok and abs(c.check.rel_diff) < 0.02
    assert len(c.check.tasks) == 2 and "reconstructed" in c.check.placement and not c.check.skipped
    assert c.by_node()["node-a"]["task_gpus"] == 2 and c.by_node()["node-b"]["gpus"] == 1


def test_a_meter_that_under_reads_fails_the_check() -> None:
    results, _, series = _scenario()
    low = [replace(r, windows=tuple(replace(w, energy_j=(w.energy_j or 0.0) * 0.95) for w in r.windows))
           for r in results]
    with syn.FakePrometheus(series) as prom:
        c = cluster_energy(low, Prometheus(prom.url))
    assert c.check is not None and not c.check.ok
    assert c.check.rel_diff == pytest.approx(1 / 0.95 - 1, abs=0.01)


def test_interleaved_windows_are_placed_by_their_start_times() -> None:
    """A B A B on one GPU: each task's two windows alternate with its twin's (as the pair runner does)."""
    rate, dur = 1000.0, syn.DURATION_S
    starts_a, starts_b = [syn.T0 + 10, syn.T0 + 40], [syn.T0 + 25, syn.T0 + 55]
    a = syn.task("a", "p", "dense", rate=rate, eff=rate / BUSY_W, total=10, active=10, spread=(0.0, 0.0),
                 eff_spread=(0.0, 0.0), started_at=syn.T0)
    b = syn.task("b", "p", "moe", rate=rate, eff=rate / 150.0, total=10, active=5, spread=(0.0, 0.0),
                 eff_spread=(0.0, 0.0), started_at=syn.T0)  # same GPU, 150 W
    busy_a = [(t - 3.0, t + dur) for t in starts_a]  # warm-up then window
    busy_b = [(t - 3.0, t + dur) for t in starts_b]
    samples = syn.counter_samples(busy_a, IDLE_W, BUSY_W, syn.T0 - 300, syn.T0 + 300)
    extra = syn.counter_samples(busy_b, 0.0, 150.0 - IDLE_W, syn.T0 - 300, syn.T0 + 300)
    series = {syn.gpu_labels("node-a", 0): [(t, v + e) for (t, v), (_, e) in zip(samples, extra)]}
    timed = [_timed(a, starts_a), _timed(b, starts_b)]
    with syn.FakePrometheus(series) as prom:
        c = cluster_energy(timed, Prometheus(prom.url))
        untimed = cluster_energy([a, b], Prometheus(prom.url))
    assert c.check is not None and c.check.ok and c.check.placement == "placed by their start times"
    got = {t.task_id: t for t in c.check.tasks}
    assert got["b"].prometheus_j == pytest.approx(got["b"].task_j, rel=0.02)
    assert untimed.check is not None and untimed.check.ok is None and len(untimed.check.skipped) == 2


def test_counter_reset_and_chunked_queries() -> None:
    results, _, series = _scenario(reset_at=syn.T0 + 30.0)
    with syn.FakePrometheus(series) as prom:
        whole = energy_series(Prometheus(prom.url), syn.T0, syn.T0 + 100)
        n_whole = len(prom.queries)
        chunked = energy_series(Prometheus(prom.url), syn.T0, syn.T0 + 100, chunk_s=45.0)
        assert len(prom.queries) - n_whole > 1
    key = next(k for k in whole if k.node == "node-b")
    # across the reset the counter restarts from 0; the energy is still idle power × time
    assert whole[key].energy_j(syn.T0, syn.T0 + 100) == pytest.approx(IDLE_W * 100, abs=IDLE_W * 1.0)
    for k in whole:
        assert chunked[k].times_s == whole[k].times_s and chunked[k].joules == whole[k].joules


def test_unreachable_or_failing_prometheus_is_reported_not_faked() -> None:
    results, _, series = _scenario()
    agg = aggregate(results, "http://127.0.0.1:9")
    assert agg.cluster is None and agg.cluster_note.startswith("unavailable: Prometheus at http://127.0.0.1:9")
    with syn.FakePrometheus(series, fail=True) as prom:
        with pytest.raises(PrometheusError, match="bad_data"):
            Prometheus(prom.url).query("moecluster_gpu_energy_joules_total[10s]", syn.T0)
        agg = aggregate(results, prom.url)
    assert agg.cluster is None and "rejected" in agg.cluster_note
    assert aggregate(results).cluster_note.startswith("not measured: no Prometheus URL")


def test_task_gpu_missing_from_prometheus_is_left_out_of_the_check() -> None:
    results, _, series = _scenario()
    del series[syn.gpu_labels("node-a", 1)]
    with syn.FakePrometheus(series) as prom:
        c = cluster_energy(results, Prometheus(prom.url))
    assert c.check is not None and [t.task_id for t in c.check.tasks] == ["a"]
    assert any("GPU-node-a-1 not in Prometheus" in s for s in c.check.skipped)
    assert any("absent from Prometheus" in n for n in c.notes)
