"""The two energy views side by side: where the above-idle view and the total-energy headline disagree."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import moecluster_synthetic as syn
from moecluster.report.aggregate import aggregate
from moecluster.report.aggregate.stats import Estimate
from moecluster.report.aggregate.views import break_even_disagreement, pair_disagreement, ratios_disagree
from moecluster.report.frames import frames
from moecluster.report.html import write_html
from moecluster.report.tables import VIEWS, breakeven_table, pairs_table, warning_lines


def _pair_where_idle_flips_the_winner() -> list:
    # MoE 1,000 inferences/s at 95 inferences/J (10.5 W), dense 1,200 at 100 (12 W), idle 5 W: in total dense
    # wins (0.95×); above idle MoE does (1,000 / 5.53 W = 181 against 1,200 / 7 W = 171 inferences/J)
    return syn.preset_pair("large", 95.0, 100.0, idle_w=5.0)


def test_a_pair_whose_views_put_different_sides_ahead_is_flagged_everywhere() -> None:
    agg = aggregate(_pair_where_idle_flips_the_winner())
    (p,) = agg.pairs
    assert p.inferences_per_j is not None and p.inferences_per_j.mean == pytest.approx(0.95, rel=1e-6)
    assert p.inferences_per_j_above_idle is not None and p.inferences_per_j_above_idle.mean > 1.0
    why = pair_disagreement(p)
    assert why is not None and why.startswith("the views disagree: in total energy dense wins (0.95×), above idle MoE")
    table = pairs_table(agg)
    assert VIEWS in table.footnotes
    assert table.rows[-1][-1].endswith(table.note(VIEWS))
    assert any("above-idle view disagrees with it on 1 of 1 comparisons" in text for text, _ in warning_lines(agg))
    assert frames(agg).pairs["energy_views_disagree"].tolist() == [why]


def test_views_that_agree_are_not_flagged() -> None:
    agg = aggregate(syn.preset_pair("large", 120.0, 100.0, idle_w=5.0))
    assert pair_disagreement(agg.pairs[0]) is None
    assert not [text for text, _ in warning_lines(agg) if "disagrees" in text]
    assert frames(agg).pairs["energy_views_disagree"].tolist() == [""]


def test_two_ratios_that_cannot_tell_are_no_disagreement() -> None:
    unsure_low = Estimate(0.99, 0.9, 1.1, 3, 0.03, 2.0, True)
    unsure_high = Estimate(1.01, 0.9, 1.1, 3, 0.03, 2.0, True)
    clear_low = Estimate(0.8, 0.75, 0.85, 3, 0.02, 2.0, True)
    assert ratios_disagree(unsure_low, unsure_high) is None
    assert ratios_disagree(clear_low, unsure_high) is not None
    assert ratios_disagree(clear_low, None) is None


def test_a_break_even_that_moves_outside_its_interval_is_flagged() -> None:
    agg = aggregate(syn.seed_001_sweep())
    (total,), (above,) = agg.break_evens, agg.break_evens_above_idle
    assert total.interval is not None and above.params is not None
    why = break_even_disagreement(total, above)
    if total.interval.holds(above.params) is False:
        assert why is not None and "outside the 95 % CI of total energy" in why
    moved = replace(above, params=(total.params_hi or 0.0) * 1.5)
    assert "the break-even moves from 112M (total energy)" in (break_even_disagreement(total, moved) or "")
    same = replace(above, params=total.params, interval=total.interval)
    assert break_even_disagreement(total, same) is None
    gone = replace(above, params=None, outcome="no crossover: MoE ahead over the whole sweep")
    assert (break_even_disagreement(total, gone) or "").startswith(
        "the views disagree: total energy says MoE overtakes dense at 112M; above idle, no crossover")
    table = breakeven_table(agg)
    assert [row[1].rstrip("¹²³⁴") for row in table.rows] == ["total", "above idle"]


def test_the_html_page_marks_the_disagreement_too(tmp_path: Path) -> None:
    agg = aggregate(_pair_where_idle_flips_the_winner())
    page = write_html(agg, "views", {}, tmp_path).read_text()
    assert "the side that wins is not the one that wins in total energy" in page
    assert "above-idle view disagrees with it on 1 of 1 comparisons" in page
