"""Per-task figures, seed 000's normalisations, idle subtraction and pairs, on records with known values."""
from __future__ import annotations

import pytest

import moecluster_synthetic as syn
from moecluster.orchestrator.aggregate import all_task_stats, pair_ratios, task_stats
from moecluster.orchestrator.aggregate.tasks import normalisations


def test_task_means_are_the_known_values() -> None:
    r = syn.task("t", "p", "moe", rate=15_762.55, eff=95.35, total=368_287_260, active=92_083_590)
    s = task_stats(r)
    assert s.inferences_per_s is not None and s.inferences_per_j is not None and s.power_w is not None
    assert s.inferences_per_s.mean == pytest.approx(15_762.55, rel=1e-12)
    assert s.inferences_per_j.mean == pytest.approx(95.35, rel=1e-12)
    assert s.inferences_per_j.lo < 95.35 < s.inferences_per_j.hi  # type: ignore[operator]
    expected_w = sum(w.energy_j / w.duration_s for w in r.windows) / 3  # type: ignore[operator]
    assert s.power_w.mean == pytest.approx(expected_w)
    assert s.energy_note is None and s.n_windows == 3


def test_energy_above_idle_subtracts_idle_power_times_duration() -> None:
    r = syn.task("t", "p", "dense", rate=1000.0, eff=5.0, total=10, active=10, idle_w=60.0)
    s = task_stats(r)
    above = [w.energy_j - 60.0 * w.duration_s for w in r.windows]  # type: ignore[operator]
    eff = [w.inferences / a for w, a in zip(r.windows, above)]
    assert s.energy_above_idle_j is not None and s.inferences_per_j_above_idle is not None
    assert s.energy_above_idle_j.mean == pytest.approx(sum(above) / 3)
    assert s.inferences_per_j_above_idle.mean == pytest.approx(sum(eff) / 3)
    assert s.inferences_per_j_above_idle.mean > s.inferences_per_j.mean  # type: ignore[union-attr]


def test_idle_above_busy_is_reported_not_negative() -> None:
    r = syn.task("t", "p", "dense", rate=1000.0, eff=100.0, total=10, active=10, idle_w=40.0)  # 10 W busy
    s = task_stats(r)
    assert s.inferences_per_j_above_idle is None and s.energy_above_idle_j is None
    assert s.idle_note is not None and "not positive" in s.idle_note


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
    j_per_inf = sum(w.energy_j / w.inferences for w in r.windows) / 3  # type: ignore[operator]
    assert s.j_per_inference is not None and s.j_per_inference.mean == pytest.approx(j_per_inf)
    assert s.j_per_inference_per_total_param is not None
    assert s.j_per_inference_per_total_param.mean == pytest.approx(j_per_inf / 2_789_237_600)
    assert s.j_per_inference_per_active_param.mean == pytest.approx(j_per_inf / 697_328_240)  # type: ignore[union-attr]
    # one MLP inference routes one token
    assert s.j_per_token_per_active_param.mean == pytest.approx(j_per_inf / 697_328_240)  # type: ignore[union-attr]
    assert s.tokens_per_j.mean == pytest.approx(16.19)  # type: ignore[union-attr]


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
    assert by_match["active"].inferences_per_j.mean == pytest.approx(700.0 / 900.0)  # type: ignore[union-attr]
    assert [(i.pair_id, i.reason) for i in incomplete] == [("lonely", "MoE task failed")]
    _, alone = pair_ratios(all_task_stats([moe]))
    assert [(i.pair_id, i.reason) for i in alone] == [(moe.spec.pair_id, "no dense twin in this run")]
