"""The head's results exporter: the report's figures as gauges, run progress, caching, damaged stores, HTTP."""
from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import moecluster_synthetic as syn
from moecluster.report.aggregate import all_task_stats, ep_points, pair_ratios
from moecluster.report.results_exporter import ResultsCollector, ResultsExporterConfig, exporting
from moecluster.report.results_exporter import collector as collector_module
from moecluster.head.store import RunStore

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(collector: ResultsCollector) -> Samples:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    out: Samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    results = syn.demo_results()
    run_dir = syn.write_run(tmp_path, "demo", results)
    with RunStore(run_dir) as store:
        store.set_plan((r.spec, 1.0) for r in results)
        store.set_meta(state="finished", sweep="demo-sweep")
    return tmp_path


def test_the_figures_are_the_reports(runs: Path) -> None:
    got = scrape(ResultsCollector(runs))
    with RunStore(runs / "demo", read_only=True) as store:
        results = store.results()
    stats = all_task_stats(results)
    per_j = {labels["task"]: v for labels, v in got["moecluster_result_inferences_per_joule"]}
    with_energy = {s.task_id: s.inferences_per_j for s in stats if s.inferences_per_j is not None}
    assert set(per_j) == set(with_energy) and len(per_j) < len(stats)  # no series where energy was not measured
    for task, est in with_energy.items():
        assert per_j[task] == pytest.approx(est.mean, rel=1e-12)
    low = {labels["task"]: v for labels, v in got["moecluster_result_inferences_per_joule_ci95_low"]}
    assert all(low[t] == pytest.approx(with_energy[t].lo) for t in low if with_energy[t].lo is not None)
    assert len({labels["task"] for labels, _ in got["moecluster_result_inferences_per_second"]}) == len(stats)
    failed = {r.spec.task_id for r in results if r.status != "ok"}
    assert failed and not failed & {labels["task"] for labels, _ in got["moecluster_result_inferences_per_second"]}
    pairs, _ = pair_ratios(stats, [r for r in results if r.status != "ok"])
    ratios = {(labels["moe_task"], labels["dense_task"]): v
              for labels, v in got["moecluster_pair_inferences_per_joule_ratio"]}
    assert ratios == pytest.approx({(p.moe.task_id, p.dense.task_id): p.inferences_per_j.mean for p in pairs
                                    if p.inferences_per_j is not None})
    ep = {labels["task"]: (labels["ep"], v) for labels, v in got["moecluster_ep_inferences_per_joule_vs_ep1_ratio"]}
    assert ep == {e.stats.task_id: (str(e.degree), pytest.approx(e.energy_ratio.mean)) for e in ep_points(stats)
                  if e.degree > 1 and e.energy_ratio is not None}
    labels, _ = got["moecluster_result_inferences_per_joule"][0]
    assert set(labels) == set(collector_module.TASK_LABELS)


def test_run_progress_and_state(runs: Path) -> None:
    got = scrape(ResultsCollector(runs))
    ((info, one),) = got["moecluster_run_info"]
    assert info == {"run": "demo", "sweep": "demo-sweep", "state": "finished"} and one == 1.0
    counts = {labels["state"]: v for labels, v in got["moecluster_run_tasks"]}
    with RunStore(runs / "demo", read_only=True) as store:
        assert counts == {k: float(v) for k, v in store.counts().items()}
    assert counts["failed"] >= 1 and counts["missing"] == 0


def test_a_run_is_recomputed_only_when_its_store_changes(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = collector_module.read_run
    monkeypatch.setattr(collector_module, "read_run", lambda p: calls.append(p) or real(p))
    collector = ResultsCollector(runs)
    scrape(collector)
    scrape(collector)
    assert len(calls) == 1
    extra = syn.task("late", "late-pair", "dense", rate=10.0, eff=1.0, total=1, active=1, spread=(0.0,))
    with RunStore(runs / "demo") as store:
        store.add(extra)
    got = scrape(collector)
    tasks = {labels["task"] for labels, _ in got["moecluster_result_inferences_per_second"]}
    assert len(calls) == 2 and "late" in tasks


def test_most_recent_runs_and_a_damaged_store(runs: Path) -> None:
    (runs / "broken").mkdir()
    (runs / "broken" / "results.sqlite").write_bytes(b"not sqlite at all" * 10)
    got = scrape(ResultsCollector(runs))
    states = {labels["run"]: labels["state"] for labels, _ in got["moecluster_run_info"]}
    assert states == {"demo": "finished", "broken": "damaged"}
    assert all(labels["run"] == "demo" for labels, _ in got["moecluster_run_tasks"])
    newest = ResultsCollector(runs, max_runs=1).runs()
    assert [p.name for p in newest] == ["broken"]  # the newest store
    with pytest.raises(ValueError):
        ResultsCollector(runs, max_runs=0)


def test_served_over_http(runs: Path) -> None:
    with exporting(ResultsExporterConfig(runs_dir=runs, port=0)) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode()
    assert 'moecluster_run_tasks{run="demo",state="planned"}' in body
    assert "# HELP moecluster_pair_inferences_per_joule_ratio MoE task over its dense twin" in body


def test_bad_options_are_one_line(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from moecluster.cli import main

    with pytest.raises(SystemExit) as info:
        main(["dashboards", "serve-results", "--runs-dir", str(runs), "--port", "70000"])
    assert info.value.code == 2 and "70000" in capsys.readouterr().err
