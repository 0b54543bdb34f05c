"""What a reader sees: numbers in numeric order, an LLM's items called tokens, a custom model by its name,
no header-only exports, no degenerate intervals, and the HTML page's headline figure first with its
legends outside the data and its titles naming dtype, batch and GPU."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import moecluster_synthetic as syn
import pandas as pd
import pytest
from rich.console import Console

from moecluster.spec.records import TaskResult
from moecluster.report.aggregate import Aggregate, SeriesKey, aggregate
from moecluster.report.aggregate.stats import Estimate
from moecluster.cli.submit_views import result_line, status_table
from moecluster.report import fmt
from moecluster.report.frames import frames
from moecluster.report.html import page
from moecluster.report.tables import render
from moecluster.report.labels import model_name
from moecluster.report.plots import _color, color, efficiency_vs_params, llm_figure, llm_panels, \
    llm_title, pairs_figure
from moecluster.report.tables import pairs_table, tasks_table
from moecluster.head.sweep import expand, parse_sweep

H100 = syn.H100
llm_pair = syn.llm_pair
BATCHES = (1, 16, 256, 4, 64)  # as text they sort 1, 16, 256, 4, 64
ROOT = Path(__file__).resolve().parents[2]


def _text(agg: Aggregate) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115 - closed by the console
    for part in render(agg, "r", {}):
        console.print(part)
    return console.export_text()


@pytest.fixture(scope="module")
def llm() -> Aggregate:
    results: list[TaskResult] = []
    for batch, eff in zip(BATCHES, (10.0, 150.0, 900.0, 40.0, 500.0)):
        results += llm_pair("decode", batch, 512, eff, eff / 2, eff * 1.2)
    results += llm_pair("prefill", 1, 2048, 900.0, 400.0, 1500.0) + llm_pair("prefill", 1, 512, 700.0, 300.0, 1000.0)
    return aggregate(results)


def test_batches_and_prompt_lengths_sort_as_numbers(llm: Aggregate) -> None:
    mlp = aggregate([r for b in BATCHES for r in syn.preset_pair("small", 700.0, 5000.0, batch_size=b)])
    groups = [row[0] for row, style in zip(tasks_table(mlp).rows, tasks_table(mlp).row_styles) if style == "group"]
    assert [int(re.search(r"batch (\d+)", g).group(1)) for g in groups] == sorted(BATCHES)  # type: ignore[union-attr]
    heads = [row[0] for row, style in zip(pairs_table(mlp).rows, pairs_table(mlp).row_styles) if style == "group"]
    assert [int(re.search(r"batch (\d+)", h).group(1)) for h in heads] == sorted(BATCHES)  # type: ignore[union-attr]
    keys = [SeriesKey("sorted", "float32", 1, b, "total") for b in BATCHES]
    assert [k.batch_size for k in sorted(keys, key=SeriesKey.sort_key)] == sorted(BATCHES)  # figure 1's panels
    llm_groups = [row[0] for row, style in zip(tasks_table(llm).rows, tasks_table(llm).row_styles)
                  if style == "group"]
    decode = [int(re.search(r"batch (\d+)", g).group(1)) for g in llm_groups if "decode" in g]  # type: ignore[union-attr]
    prefill = [int(re.search(r"prefill p(\d+)", g).group(1)) for g in llm_groups if "prefill" in g]  # type: ignore[union-attr]
    assert decode == sorted(BATCHES) and prefill == [512, 2048]
    bars = pairs_figure(llm)
    assert bars is not None
    labels = [t.get_text() for t in bars.axes[0].get_yticklabels()]
    assert [int(m.group(1)) for m in (re.search(r"batch (\d+) · decode", x) for x in labels) if m] == \
        sorted(b for b in BATCHES for _ in range(2))
    plt.close("all")


def test_an_llm_counts_tokens_wherever_a_result_is_shown(llm: Aggregate, tmp_path: Path) -> None:
    text = _text(llm)
    assert "tokens/s" in text and "tokens/J" in text and "tok/J ratio" in text and "tok/s −" not in text
    assert not re.search(r"inferences|inf/[sJ]", text), re.search(r".{60}(inferences|inf/[sJ]).{20}", text)
    assert "tokens/s" in tasks_table(llm).columns and "tok/J MoE" in pairs_table(llm).columns
    html = page(llm, "r", {})
    body = re.sub(r"<ol class=\"method\">.*?</ol>", "", html, flags=re.S)  # the method speaks of the MLP too
    assert not re.search(r"inferences|inf/[sJ]", body)
    bars = pairs_figure(llm)
    assert bars is not None and bars.axes[0].get_xlabel() == "tokens / s"
    plt.close("all")
    one = next(r for r in llm.results if r.spec.kind == "moe")
    line = result_line(one)
    assert one.inferences_per_s is not None and one.inferences_per_j is not None
    assert f"{one.inferences_per_s:,.0f} tokens/s" in line and f"{one.inferences_per_j:,.2f} tokens/J" in line
    assert status_table("r", [r.spec for r in llm.results], {}, {}).columns[4:6] == ("tok/s", "tok/J")
    tasks = frames(llm).tasks
    assert set(tasks["item"]) == {"token"} and "inferences_per_j" in tasks  # the stores' names stay
    mlp = frames(aggregate(syn.preset_pair("small", 700.0, 5000.0))).tasks
    assert set(mlp["item"]) == {"inference"}


def _custom_results(share_twins: bool) -> list[TaskResult]:
    """A sweep's named custom model planned by the real expander, measured synthetically."""
    sweep = parse_sweep("name: custom\nmodels:\n  - {name: tiny-e16, num_experts: 16, top_k: 2, expert_hidden_dim: 128,"
                        " expert_num_layers: 2, input_dim: 256, output_dim: 256}\nimpl: [sorted, grouped]\n"
                        f"match: [total, active]\nbatch_size: [4, 16]\nshare_twins: {str(share_twins).lower()}\n")
    out = []
    for spec in expand(sweep, "r").tasks:
        r = syn.task(spec.task_id, spec.pair_id, spec.kind, rate=1000.0, eff=100.0, total=1000, active=500,
                     impl=spec.impl, match=spec.match)
        out.append(replace(r, spec=spec))
    return out


@pytest.mark.parametrize("share_twins", [False, True])
def test_a_named_custom_model_shows_its_name(share_twins: bool) -> None:
    agg = aggregate(_custom_results(share_twins))
    assert {model_name(s.spec) for s in agg.tasks} == {"tiny-e16"}
    f = frames(agg)
    assert set(f.tasks["model"]) == set(f.pairs["model"]) == set(f.normalisations["model"]) == {"tiny-e16"}
    assert f.tasks["preset"].isna().all() and f.pairs["preset"].isna().all()  # not a preset: no preset column value
    rows = [row[0] for row, style in zip(pairs_table(agg).rows, pairs_table(agg).row_styles) if style != "group"]
    assert rows and all(r.startswith("tiny-e16") for r in rows)
    assert "E16 k2" not in _text(agg)
    nameless = replace(next(s.spec for s in agg.tasks if s.spec.kind == "moe"), pair_id="hand-made", model_name=None)
    assert model_name(nameless) == "E16 k2 h128×2"
    # a task planned before tasks recorded the name: read back from its pair id
    legacy = replace(next(s.spec for s in agg.tasks if s.spec.kind == "moe"), model_name=None)
    assert model_name(legacy) == "tiny-e16"


def test_a_modified_preset_is_not_shown_as_the_preset() -> None:
    sweep = parse_sweep("name: m\nmodels:\n  - preset: medium\n  - {preset: small, num_experts: 16}\n"
                        "match: [total]\nbatch_size: [4]\nreplicates: 1\n")
    specs = [t for t in expand(sweep, "r").tasks if t.kind == "moe"]
    assert [(s.preset, model_name(s)) for s in specs] == [("medium", "medium"), (None, "small (modified)")]


def test_exports_write_only_tables_with_rows_and_say_which(tmp_path: Path) -> None:
    syn.write_run(tmp_path, "plain", syn.preset_pair("small", 700.0, 5000.0) + syn.preset_pair("large", 900.0, 800.0))
    proc = subprocess.run([sys.executable, "-c", "from moecluster.cli import main; main()", "report",
                           "plain", "--runs-dir",
                           str(tmp_path), "--format", "csv", "json", "--out", str(tmp_path / "out"), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.stem for p in (tmp_path / "out").glob("*.csv"))
    assert {"tasks", "pairs", "windows"} <= set(written) and not {"ep", "failed", "llm"} & set(written)
    for path in (tmp_path / "out").glob("*.csv"):
        assert len(pd.read_csv(path)) > 0, path.name  # never a header alone
    said = re.search(r"not written, no rows: (.+)", proc.stdout)
    assert said is not None and {"ep", "failed", "llm"} <= set(said.group(1).split(", "))
    assert not set(said.group(1).split(", ")) & set(written)
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert all(doc["tables"][name] for name in doc["tables"]) and "ep" in doc["tables_without_rows"]


def test_no_interval_repeats_its_value(llm: Aggregate) -> None:
    assert fmt.est(Estimate(3.0, 3.0, 3.0, 3)) == "3"
    assert fmt.est(Estimate(3.0001, 2.96, 3.04, 3)) == "3.000 [2.960, 3.040]"  # was "3 [3, 3]"
    assert fmt.est(Estimate(16693, 16544, 16842, 3)) == "16,693 [16,544, 16,842]"
    assert fmt.ratio(Estimate(1.5, 1.5, 1.5, 3)) == "1.500"
    html = page(llm, "r", {})
    assert not re.search(r'>([^<>]+)<br><span class="ci">\[\1, \1\]', html)
    assert not re.search(r"(\S+) \[\1, \1\]", _text(llm))


def test_the_llm_page_leads_with_its_headline_figure_and_draws_no_lone_points(llm: Aggregate) -> None:
    html = page(llm, "r", {})
    assert 'id="fig-efficiency"' not in html and efficiency_vs_params(llm) is None  # 8 one-point panels before
    assert html.index('id="fig-llm"') < html.index('id="fig-pairs"') < html.index('id="fig-roofline"')
    assert re.search(r'id="fig-llm".*?<b>Figure 1\.</b>', html, re.S)
    assert html.index("<h2>1. LLMs: tokens per joule") < html.index("<h2>2. MoE beside dense")
    assert len(llm_panels(llm)) == 2  # the decode series and the prefill series, two points each at least
    titles = [llm_title(s, False) for s in llm_panels(llm)]
    assert len(set(titles)) == len(titles) and all("bfloat16" in t and H100 in t for t in titles)
    lone = aggregate(llm_pair("decode", 8, 512, 10.0, 5.0, 12.0) + syn.preset_pair("small", 700.0, 5000.0))
    assert llm_panels(lone) == [] and efficiency_vs_params(lone) is None  # one size, one batch: tables only
    assert "Figure 1 absent: no series sweeps two or more model sizes" in page(lone, "r", {})


def test_figures_keep_legends_off_the_data_and_name_dtype_batch_and_gpu(llm: Aggregate) -> None:
    for fig in (llm_figure(llm), pairs_figure(llm)):
        assert fig is not None
        fig.canvas.draw()
        assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
        legend = fig.legends[0].get_window_extent()
        assert all(legend.y1 <= ax.get_tightbbox().y0 + 1 for ax in fig.axes if ax.get_visible())
        title = fig.get_suptitle()
        assert "bfloat16" in title and "batch 1–256" in title and H100 in title
    plt.close("all")


def test_one_colour_per_implementation_in_every_figure() -> None:
    assert color("sorted") != color("grouped") and color("dense") == "#222222"
    assert color("moe/grouped[fused_triton]") == color("moe/grouped[fused_triton]")
    seen: dict[str, str] = {}
    lines = [_color(name, seen) for name in ("E32 k8 grouped d2", "E64 k8 grouped d2", "sorted", "E8 k2 naive d4")]
    assert len(set(lines)) == 4 and lines[2] == color("sorted")  # distinct in one figure, implementations fixed
    path = ROOT / "benchmarks" / "moe_kernels.py"
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location("moe_kernels_under_test", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    rows = [{"dtype": d, "batch": b, "model": m, "ms": 1.0, "hbm_frac": 0.5, "gemm_frac": 0.1}
            for d, models in (("bfloat16", ["moe/sorted", "moe/grouped[a]", "moe/grouped[b]"]),
                              ("float32", ["moe/grouped[b]", "moe/sorted", "moe/grouped[c]", "moe/grouped[a]"]))
            for m in models for b in (128, 8192)]
    colors = module.model_colors(rows)
    assert len(set(colors.values())) == len(colors) and colors["moe/sorted"] == color("sorted")
