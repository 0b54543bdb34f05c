"""The expert-parallel table: per configuration and degree, measured communication beside seed 004's
prediction, and no communication figure where none was measured."""
from __future__ import annotations

from dataclasses import replace

import moecluster_synthetic as syn
import pytest

from moecluster.spec.records import AllToAllPoint, PhaseStat, TaskResult
from moecluster.spec.mlp.shapes import PRESETS
from moecluster.report.aggregate import aggregate
from moecluster.report.ep import COLUMNS, PREDICTED, ep_rows, ep_table, shown
from moecluster.report.tables import sections

GPU = "NVIDIA H100 80GB HBM3"


def _moe(degree: int, rate: float, eff: float, *, gang: bool = True, phases: bool = True) -> TaskResult:
    shape = PRESETS["large"]
    p = shape.params()
    r = syn.task(f"large-ep{degree}", f"large-ep{degree}", "moe", rate=rate, eff=eff, total=p.total,
                 active=p.active_per_token, preset="large", model=shape.as_model(), expert_parallel=degree,
                 n_gpus=degree, batch_size=256, gpu_name=GPU)
    if not gang:
        return r
    r = replace(r, world_size=degree)
    if not phases or degree == 1:
        return r
    # each rank sends 200 kB to the other in a dispatch, 20 kB in a combine; the raw all-to-all was
    # measured at both sizes (whole send buffers: twice that), its energy at the dispatch's only
    return replace(r, phases=(PhaseStat("route", 1e-4, 1e-4), PhaseStat("dispatch", 3e-4, 3e-4, bytes_sent=4e5),
                              PhaseStat("experts", 5e-4, 5e-4), PhaseStat("combine", 1e-4, 1e-4, bytes_sent=4e4)),
                   alltoall=(AllToAllPoint(4e5, 2e-4, 2e9, 1e9, energy_j=1e-3), AllToAllPoint(4e4, 4e-5, 1e9, 5e8)))


def _cells(table, first: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    (row,) = [r for r, style in zip(table.rows, table.row_styles) if style != "group" and r[0] == first]
    return dict(zip(table.columns, row))


def test_one_group_per_configuration_one_row_per_degree_measured_beside_predicted() -> None:
    agg = aggregate([_moe(1, 1000.0, 10.0), _moe(2, 1600.0, 8.0), _moe(4, 2400.0, 6.0, phases=False)])
    t = ep_table(agg)
    assert t.columns == COLUMNS and any(PREDICTED in c for c in t.columns)
    groups = [r[0] for r, style in zip(t.rows, t.row_styles) if style == "group"]
    assert groups == ["large · MoE sorted · float32 · batch 256 · cuda"]
    one, two, four = _cells(t, "EP 1"), _cells(t, "EP 2"), _cells(t, "EP 4")
    assert one["speedup vs EP 1"] == "—" and one["comm share of time"] == "—"
    assert two["speedup vs EP 1"].startswith("1.600") and two["inf/J vs EP 1"].startswith("0.800")
    assert two["comm share of time"] == "40.0 %" and two["GPUs"] == f"2 × {GPU}"  # (0.3 + 0.1) / 1 ms
    assert two["all-to-all bytes/token"] == "1.72 kB"
    # 200 kB crossing in 0.3 ms against the raw call's busbw 1 GB/s: raw time / dispatch time, 0.2 / 0.3 ms
    assert two["dispatch busbw / raw all-to-all busbw"] == "66.7 %"
    assert two["comm share of energy"].startswith("≥ ") and two["comm share of energy"].endswith("(dispatch only)")
    assert two[f"comm share of time, {PREDICTED}"].endswith("%")
    assert two[f"all-to-all bytes/token, {PREDICTED}"].endswith("B")
    # EP 4 has no measured phases: no communication figure, measured or predicted
    assert [four[c] for c in COLUMNS[6:10]] == ["not measured"] * 4
    assert [four[c] for c in COLUMNS[10:]] == ["—", "—"]
    assert "analytic" not in " ".join(t.columns + [t.caption])
    rows = {r["expert_parallel"]: r for r in ep_rows(agg)}
    assert rows[2]["comm_time_share"] == pytest.approx(0.4) and rows[4]["comm_time_share"] is None
    assert rows[4]["predicted_seed004_comm_time_share"] is None
    assert rows[2]["predicted_seed004_all_to_all_bytes_per_token"] > 0


def test_old_records_are_left_out_and_said_so() -> None:
    agg = aggregate([_moe(1, 1000.0, 10.0), _moe(2, 1600.0, 8.0, gang=False)])
    assert agg.ep == () and shown(agg)
    t = ep_table(agg)
    assert t.rows == [] and "Left out: 1 task(s)" in t.caption
    assert t.title in [s.title for s in sections(agg)]
