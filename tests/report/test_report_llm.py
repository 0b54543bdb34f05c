"""The report's LLM section from known results on an H100: series per phase over the batch, the critical batch
marked where the datasheet puts it, seed 004's analytic estimate beside each measured ratio."""
from __future__ import annotations

import moecluster_synthetic as syn  # type: ignore[import-not-found]
import pytest

from moecluster.report.aggregate import aggregate
from moecluster.report.frames import frames
from moecluster.report.html import page
from moecluster.report.llm import llm_table, normalisations_table, regime
from moecluster.report.plots import llm_efficiency

H100 = syn.H100
llm_pair = syn.llm_pair


@pytest.fixture
def agg():  # type: ignore[no-untyped-def]
    results = (llm_pair("decode", 1, 512, 10.0, 4.0, 12.0) + llm_pair("decode", 256, 512, 300.0, 250.0, 500.0)
               + llm_pair("decode", 4096, 512, 2000.0, 900.0, 1900.0) + llm_pair("prefill", 1, 8192, 900.0, 400.0,
                                                                                  1500.0))
    return aggregate(results)


def test_series_per_phase_with_the_h100_critical_batch_and_estimates(agg) -> None:  # type: ignore[no-untyped-def]
    decode, prefill = sorted(agg.llm, key=lambda s: s.key.phase)
    assert [pt.batch_size for pt in decode.points] == [1, 256, 4096]
    assert [pt.tokens_per_forward for pt in prefill.points] == [8192]
    assert decode.critical is not None and decode.critical.dense_tokens == pytest.approx(295.3, abs=0.1)
    assert decode.critical.moe_tokens == pytest.approx(4 * 295.3, abs=0.5) and "H100 SXM5" in decode.critical.source
    assert [regime(decode, pt) for pt in decode.points] == ["", "", "▲▲"]
    assert regime(prefill, prefill.points[0]) == "▲▲"
    one = decode.points[0]
    assert one.ratios["total"].inferences_per_j.mean == pytest.approx(10 / 4)
    assert one.ratios["active"].inferences_per_j.mean == pytest.approx(10 / 12)
    est = one.estimate
    assert est is not None and est.gpu == "h100-sxm"
    # at batch 1 the MoE reads its two chosen experts: like the active twin, ~3.5 × fewer bytes than the total one
    assert 3.0 < est.ratio["total"] < 3.6 and 0.95 < est.ratio["active"] < 1.05
    big = decode.points[-1].estimate
    assert big is not None and big.bound["moe"] == "compute" and big.ratio["active"] == pytest.approx(1.0, abs=0.01)


def test_tables_figure_exports_and_page_carry_the_llm_section(agg) -> None:  # type: ignore[no-untyped-def]
    table = llm_table(agg)
    assert any("critical batch 295 tokens per forward, the MoE's 1,181" in row[0] for row in table.rows)
    rows = [r for r, style in zip(table.rows, table.row_styles) if style != "group"]
    assert rows[0][:3] == ["1", "1", ""] and rows[2][2] == "▲▲" and rows[3][0] == "1 × 8192"
    assert rows[0][6].startswith("2.500") and rows[0][8].startswith("0.833")
    assert "H100 SXM5 80GB datasheet" in table.caption
    norms = normalisations_table(agg)
    assert any(r[0] == "b1 p512 moe" for r in norms.rows)
    assert llm_efficiency(agg) is not None
    llm = frames(agg).llm
    assert len(llm) == 4 and set(llm["critical_batch_tokens"].round()) == {295.0}
    assert llm["estimate_ratio_total"].notna().all()
    html = page(agg, "r", {})
    assert "LLMs: tokens per joule over the batch" in html and 'id="fig-llm"' in html
