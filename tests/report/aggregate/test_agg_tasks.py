"""Per-task figures, seed 000's normalisations, idle subtraction and pairs, on records with known values."""
from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

import moecluster_synthetic as syn
from moecluster.spec.records import TaskResult
from moecluster.report.aggregate import Estimate, all_task_stats, pair_ratios, task_stats
from moecluster.report.aggregate.tasks import normalisations


def _gm(values: Sequence[float]) -> float:
    """The geometric mean, by hand."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _energies(r: TaskResult) -> list[float]:
    out = [w.energy_j for w in r.windows if w.energy_j is not None]
    assert len(out) == len(r.windows)
    return out


def _mean(e: Estimate | None) -> float:
    assert e is not None
    return e.mean


def test_task_figures_are_geometric_means_of_the_windows() -> None:
    r = syn.task("t", "p", "moe", rate=15_762.55, eff=95.35, total=368_287_260, active=92_083_590)
    s = task_stats(r)
    assert s.inferences_per_s is not None and s.inferences_per_j is not None and s.power_w is not None
    rates = [w.inferences / w.duration_s for w in r.windows]
    effs = [w.inferences / j for w, j in zip(r.windows, _energies(r))]
    assert s.inferences_per_s.mean == pytest.approx(_gm(rates), rel=1e-12)
    assert s.inferences_per_j.mean == pytest.approx(_gm(effs), rel=1e-12)
    # within cv²/2 of the arithmetic means the synthetic windows were built around
    assert s.inferences_per_s.mean == pytest.approx(15_762.55, rel=1e-3)
    assert s.inferences_per_j.mean == pytest.approx(95.35, rel=1e-3)
    lo, hi = s.inferences_per_j.lo, s.inferences_per_j.hi
    assert lo is not None and hi is not None and lo < s.inferences_per_j.mean < hi
    assert s.power_w.mean == pytest.approx(_gm([j / w.duration_s for w, j in zip(r.windows, _energies(r))]))
    assert s.energy_note is None and s.n_windows == 3 and s.warnings == ()
    assert s.samples["inferences_per_j"] == pytest.approx(effs)


def test_energy_above_idle_subtracts_idle_power_times_duration() -> None:
    r = syn.task("t", "p", "dense", rate=1000.0, eff=5.0, total=10, active=10, idle_w=60.0)
    s = task_stats(r)
    above = [j - 60.0 * w.duration_s for w, j in zip(r.windows, _energies(r))]
    eff = [w.inferences / a for w, a in zip(r.windows, above)]
    assert s.energy_above_idle_j is not None and s.inferences_per_j_above_idle is not None
    assert s.energy_above_idle_j.mean == pytest.approx(_gm(above))
    assert s.inferences_per_j_above_idle.mean == pytest.approx(_gm(eff))
    assert s.inferences_per_j_above_idle.mean > _mean(s.inferences_per_j)
    assert s.above_idle_note is None


def test_idle_above_busy_is_reported_not_negative() -> None:
    r = syn.task("t", "p", "dense", rate=1000.0, eff=100.0, total=10, active=10, idle_w=40.0)  # 10 W busy
    s = task_stats(r)
    assert s.inferences_per_j_above_idle is None and s.energy_above_idle_j is None
    assert s.above_idle_note is not None and "not positive" in s.above_idle_note


def test_unavailable_energy_is_never_zero() -> None:
    r = syn.task("t", "p", "moe", rate=1000.0, eff=None, total=10, active=5, energy_reason="meter: none")
    s = task_stats(r)
    assert s.energy_note == "unavailable: meter: none"
    for name in ("power_w", "energy_j", "inferences_per_j", "j_per_inference", "tokens_per_j",
                 "j_per_inference_per_total_param", "inferences_per_j_above_idle"):
        assert getattr(s, name) is None, name
    assert s.total_energy_j is None
    assert s.inferences_per_s is not None  # throughput was still measured


def test_seed_000_table_reproduced() -> None:
    """Seed 000's normalisations from its own totals (Llama 3.3 70B vs Llama 4 Scout, A100)."""
    llama = normalisations(energy_j=216_192.35, inferences=216_192.35 / 5543.39, tokens=16_597,
                           total_params=70e9, active_params=70e9)
    scout = normalisations(energy_j=64_751.78, inferences=64_751.78 / 1660.30, tokens=27_092,
                           total_params=109e9, active_params=17e9)
    # the seed prints 7.91E-08 / 1.52E-08 / 9.76E-08 (truncated) and 1.86E-10 / 1.41E-10
    assert llama["j_per_inference_per_total_param"] == pytest.approx(7.91e-08, rel=2e-3)
    assert llama["j_per_inference_per_active_param"] == pytest.approx(7.91e-08, rel=2e-3)
    assert scout["j_per_inference_per_total_param"] == pytest.approx(1.52e-08, rel=3e-3)
    assert scout["j_per_inference_per_active_param"] == pytest.approx(9.76e-08, rel=2e-3)
    assert llama["j_per_token_per_active_param"] == pytest.approx(1.86e-10, rel=3e-3)
    assert scout["j_per_token_per_active_param"] == pytest.approx(1.41e-10, rel=3e-3)
    assert llama["tokens_per_j"] == pytest.approx(0.07, abs=0.01)  # printed with two decimals
    assert scout["tokens_per_j"] == pytest.approx(0.41, abs=0.01)


def test_task_normalisations_divide_by_parameters() -> None:
    r = syn.task("t", "p", "moe", rate=4081.49, eff=16.19, total=2_789_237_600, active=697_328_240)
    s = task_stats(r)
    j_per_inf = _gm([j / w.inferences for w, j in zip(r.windows, _energies(r))])
    assert s.j_per_inference is not None and s.j_per_inference.mean == pytest.approx(j_per_inf)
    assert s.inferences_per_j is not None and s.j_per_inference.mean == pytest.approx(1 / s.inferences_per_j.mean)
    assert s.j_per_inference_per_total_param is not None
    assert s.j_per_inference_per_total_param.mean == pytest.approx(j_per_inf / 2_789_237_600)
    assert _mean(s.j_per_inference_per_active_param) == pytest.approx(j_per_inf / 697_328_240)
    # one MLP inference routes one token
    assert _mean(s.j_per_token_per_active_param) == pytest.approx(j_per_inf / 697_328_240)
    assert _mean(s.tokens_per_j) == pytest.approx(1 / j_per_inf)


def test_pairs_give_moe_over_dense_ratios() -> None:
    results = syn.preset_pair("large", 95.35, 57.37, moe_rate=15_762.55, dense_rate=17_151.69)
    ratios, incomplete = pair_ratios(all_task_stats(results))
    assert not incomplete and len(ratios) == 1
    p = ratios[0]
    assert p.inferences_per_j is not None and p.inferences_per_s is not None
    assert p.inferences_per_j.mean == pytest.approx(95.35 / 57.37)
    assert p.inferences_per_s.mean == pytest.approx(15_762.55 / 17_151.69)
    assert p.inferences_per_j.crosses_one is False and "inferences_per_j" not in p.flags


def test_pair_with_indistinguishable_efficiency_is_flagged() -> None:
    results = syn.preset_pair("medium", 100.0, 100.5)
    (p,), _ = pair_ratios(all_task_stats(results))
    assert p.inferences_per_j is not None and p.inferences_per_j.crosses_one is True
    assert "inferences_per_j" in p.flags


def test_several_dense_twins_and_incomplete_pairs() -> None:
    dense_total, moe = syn.preset_pair("small", 700.0, 5000.0, match="total")
    dense_active = syn.task("small-active", moe.spec.pair_id, "dense", rate=2000.0, eff=900.0, total=676_000,
                            active=676_000, match="active", preset="small")
    failed = syn.task("lone-moe", "lonely", "moe", rate=1.0, eff=1.0, total=1, active=1, status="failed")
    results = [dense_total, moe, dense_active, failed]
    ratios, incomplete = pair_ratios(all_task_stats(results), [failed])
    assert sorted(str(p.match) for p in ratios) == ["active", "total"]
    by_match = {p.match: p for p in ratios}
    assert _mean(by_match["active"].inferences_per_j) == pytest.approx(700.0 / 900.0)
    assert [(i.pair_id, i.reason) for i in incomplete] == [("lonely", "MoE task failed")]
    _, alone = pair_ratios(all_task_stats([moe]))
    assert [(i.pair_id, i.reason) for i in alone] == [(moe.spec.pair_id, "no dense twin in this run")]


def test_a_failed_twin_beside_one_that_succeeded_is_named() -> None:
    dense_total, moe = syn.preset_pair("small", 700.0, 5000.0, match="total")
    pid = moe.spec.pair_id
    active = syn.task("small-active", pid, "dense", rate=1.0, eff=1.0, total=676_000, active=676_000,
                      match="active", preset="small", status="failed")
    grouped = syn.task("small-grouped", pid, "moe", rate=1.0, eff=1.0, total=1, active=1, impl="grouped",
                       preset="small", status="failed")
    ratios, incomplete = pair_ratios(all_task_stats([dense_total, moe]), [active, grouped])
    assert [(p.moe.task_id, p.match) for p in ratios] == [(moe.spec.task_id, "total")]  # what succeeded stands
    assert [(i.pair_id, i.reason) for i in incomplete] == [
        (pid, "dense twin dense/active failed: only the pair's other twin(s) are compared"),
        (pid, "MoE task moe/grouped failed: only the pair's other MoE task(s) are compared")]


def test_several_moe_tasks_share_their_dense_twins() -> None:
    """A pair holding one MoE task per implementation: each is compared with every dense twin of the pair."""
    dense, sorted_moe = syn.preset_pair("large", 95.35, 57.37, impl="sorted")
    pid = sorted_moe.spec.pair_id
    grouped = syn.task("large-grouped", pid, "moe", rate=16_000.0, eff=110.0, total=368_287_260, active=92_083_590,
                       impl="grouped", preset="large")
    active = syn.task("large-active", pid, "dense", rate=30_000.0, eff=150.0, total=92_000_000, active=92_000_000,
                      match="active", preset="large")
    ratios, incomplete = pair_ratios(all_task_stats([dense, sorted_moe, grouped, active]))
    assert not incomplete
    assert sorted((p.moe.spec.impl, str(p.match)) for p in ratios) == [
        ("grouped", "active"), ("grouped", "total"), ("sorted", "active"), ("sorted", "total")]
    shared = {p.dense.task_id for p in ratios if p.match == "total"}
    assert shared == {dense.spec.task_id}
    by = {(p.moe.spec.impl, p.match): p for p in ratios}
    assert _mean(by[("grouped", "total")].inferences_per_j) == pytest.approx(110.0 / 57.37, rel=1e-3)
