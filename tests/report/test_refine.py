"""Sizes between two measured ones where a break-even was interpolated across a wide gap: the planned shapes,
and `moecluster refine` on a stored run whose break-even lies between presets 5.8× apart."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import moecluster_synthetic as syn
from moecluster.spec.mlp.shapes import PRESETS
from moecluster.report.aggregate import aggregate
from moecluster.cli import cli
from moecluster.head.sweep.loader import parse_sweep
from moecluster.report.refine import WIDTH_STEP, fill_shapes, refined_models

SWEEP = """\
name: seed-001
models: [{preset: small}, {preset: medium}, {preset: large}, {preset: xxl}]
impl: [sorted]
dtype: [float32]
batch_size: [128]
match: [total]
duration_s: 10
repeats: 3
device: cuda
"""


@pytest.mark.parametrize(("lo", "hi", "inserted"), [("small", "medium", 4), ("medium", "large", 2),
                                                     ("large", "xxl", 2)])
def test_midpoints_split_each_preset_gap_into_steps_of_about_two(lo: str, hi: str, inserted: int) -> None:
    shapes = fill_shapes(PRESETS[lo], PRESETS[hi])
    totals = [PRESETS[lo].params().total, *(s.params().total for s in shapes), PRESETS[hi].params().total]
    assert len(shapes) == inserted
    assert totals == sorted(totals)
    steps = [b / a for a, b in zip(totals, totals[1:])]
    assert max(steps) < 2.1  # the target is 2×; the width's rounding moves a total by a few percent
    assert all(s.expert_hidden_dim % WIDTH_STEP == 0 and 1 <= s.top_k <= s.num_experts for s in shapes)


def test_sizes_no_more_than_the_gap_apart_get_nothing() -> None:
    assert fill_shapes(PRESETS["medium"], PRESETS["large"], max_gap=6.0) == []


def test_the_break_even_between_medium_and_large_plans_sizes_there_only() -> None:
    agg = aggregate(syn.seed_001_sweep())
    (be,) = agg.break_evens
    assert be.bracket is not None and [p.name for p in be.bracket] == ["medium", "large"]
    assert be.gap_factor == pytest.approx(368_287_260 / 63_418_800)
    assert "interpolated between 63.4M and 368M, 5.8× apart" in be.verdict
    planned = refined_models(agg.break_evens)
    assert [m.name for m in planned] == ["medium-large-1", "medium-large-2"]
    assert all(63_418_800 < m.total_params < 368_287_260 for m in planned)
    mid = math.sqrt(63_418_800 * 368_287_260)
    assert min(abs(math.log(m.total_params / mid)) for m in planned) < math.log(1.5)


def test_refine_writes_a_sweep_that_loads_and_adds_the_planned_models(tmp_path: Path) -> None:
    run_dir = syn.write_run(tmp_path, "seed-001", syn.seed_001_sweep())
    (run_dir / "sweep.yaml").write_text(SWEEP)
    out = tmp_path / "refined.yaml"
    done = CliRunner().invoke(cli, ["refine", "seed-001", "--runs-dir", str(tmp_path), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "adds medium-large-1: 17 experts × 1344 wide × 4 layers, top-4" in done.output
    doc = yaml.safe_load(out.read_text())
    assert doc["name"] == "seed-001-refined"
    assert [m.get("preset") or m["name"] for m in doc["models"]] == ["small", "medium", "large", "xxl",
                                                                     "medium-large-1", "medium-large-2"]
    sweep = parse_sweep(out.read_text(), out)
    assert [m.label for m in sweep.models][-2:] == ["medium-large-1", "medium-large-2"]


def test_refine_says_when_there_is_nothing_to_refine(tmp_path: Path) -> None:
    run_dir = syn.write_run(tmp_path, "flat", syn.no_crossover_sweep())
    (run_dir / "sweep.yaml").write_text(SWEEP)
    done = CliRunner().invoke(cli, ["refine", "flat", "--runs-dir", str(tmp_path)])
    assert done.exit_code == 0 and "nothing to refine" in done.output
