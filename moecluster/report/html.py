"""A self-contained HTML page of one run: figures embedded as base64 PNG, the tables, the method.

No external CSS, fonts, scripts or images: the file can be mailed, archived next to a paper,
or opened offline. Figures that have nothing to show are replaced by a sentence saying why.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from moecluster.spec.extras import require
from moecluster.report.aggregate import Aggregate
from moecluster.workloads.registry import workload

from moecluster.report import fmt
from moecluster.report import llm as llm_report
from moecluster.report import serve as serve_report
from moecluster.report.ep import shown as ep_shown
from moecluster.report.tables import DAGGER, Line, TableData, breakeven_table, cluster_section, ep_table, \
    failed_table, header, \
    items, normalisations_table, pairs_table, roofline_table, task_runs_table, tasks_table

CSS = """
:root { --ink:#1b1b1b; --mute:#5b5b5b; --rule:#cfcfcf; --accent:#1f4e79; --bad:#a4161a; --ok:#2d6a4f; }
* { box-sizing: border-box; }
body { font-family: "Charter", "Georgia", "DejaVu Serif", serif; color: var(--ink); background: #fff;
       max-width: 1180px; margin: 2.2em auto; padding: 0 1.6em; line-height: 1.45; font-size: 15px; }
h1 { font-size: 1.55em; margin: 0 0 .2em; font-weight: 600; }
h2 { font-size: 1.15em; margin: 2.0em 0 .5em; padding-bottom: .25em; border-bottom: 1px solid var(--rule);
     color: var(--accent); font-weight: 600; }
p.meta { color: var(--mute); margin: .15em 0; font-size: .92em; }
.findings { background: #f6f8fa; border-left: 3px solid var(--accent); padding: .6em 1em; margin: 1.2em 0; }
.findings li { margin: .2em 0; }
figure { margin: 1.2em 0 1.6em; text-align: center; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: .88em; color: var(--mute); text-align: left; margin-top: .4em; }
figcaption b { color: var(--ink); }
.absent { color: var(--mute); font-style: italic; }
table { border-collapse: collapse; margin: .6em 0 .3em; font-size: .8em; width: 100%;
        font-variant-numeric: tabular-nums; font-family: "DejaVu Sans", "Helvetica", sans-serif; }
caption { caption-side: top; text-align: left; font-family: "Charter", "Georgia", serif; font-size: 1.08em;
          padding-bottom: .35em; color: var(--ink); }
thead th { border-top: 1.5px solid var(--ink); border-bottom: 1px solid var(--ink); font-weight: 600;
           padding: .3em .5em; vertical-align: bottom; }
tbody td { padding: .22em .5em; border-bottom: 1px solid #eee; vertical-align: top; }
tbody tr:last-child td { border-bottom: 1.5px solid var(--ink); }
td.num, th.num { text-align: right; white-space: nowrap; }
td.txt, th.txt { text-align: left; }
td.txt:first-child { white-space: nowrap; }
td.wrap { white-space: normal !important; min-width: 12em; font-size: .95em; color: var(--mute); }
span.ci { font-size: .82em; color: var(--mute); }
span.dagger { color: var(--bad); padding-left: .15em; }
tr.group td { font-style: italic; font-family: "Charter", "Georgia", serif; font-size: 1.05em; padding-top: .7em;
              border-bottom: 1px solid var(--rule); color: var(--accent); white-space: normal; }
tr.bold td { font-weight: 600; }
p.note { font-size: .82em; color: var(--mute); margin: .2em 0 1em; }
.ok { color: var(--ok); } .bad { color: var(--bad); font-weight: 600; } .warn { color: #8a5a00; }
.dim { color: var(--mute); }
.scroll { overflow-x: auto; }
ol.method li { margin: .25em 0; font-size: .92em; }
"""

METHOD = [
    "Each task runs a warm-up and then fixed measurement windows (repeats); every figure is computed per window. "
    "A task's figure is the geometric mean over its windows with a 95 % log-scale t interval: exp(mean of ln x "
    "± t(n − 1) · standard error), always positive, the same read as inferences/J or J/inference. A task with "
    "fewer than 3 windows is flagged: its interval is very wide (one degree of freedom) or absent.",
    "MoE/dense ratios are ratios of geometric means; their interval is Welch's t on the log scale "
    "(Welch–Satterthwaite degrees of freedom; asymmetric, always positive). † marks a ratio whose interval "
    "contains 1.",
    "Energy is the GPUs' own counter over each window (NVML's total-energy counter where available; the source is "
    "named per task). Energy above idle subtracts the idle power of the same GPUs, measured just before the task, "
    "times the window's duration. Energy that was not measured is shown as unavailable with its reason, never as 0.",
    "Seed 000's normalisations divide the energy per inference (watt-seconds) by the total (trainable) or active "
    "parameters; one MLP inference routes exactly one token, so per-token figures equal per-inference ones here.",
    "A break-even series holds the pairs that differ only in model size and seed (every other axis, the GPU model "
    "included, is fixed). Several seeds at one size are pooled by a t over seeds: the geometric mean of their "
    "ratios with a t interval over the per-seed log ratios (seeds − 1 degrees of freedom), so seeds that disagree "
    "widen it.",
    "The break-even is where ln(MoE/dense inferences/J) first crosses zero upwards, interpolated linearly in log10 "
    "of the MoE's total parameters. Its 95 % interval is a bootstrap of each size's ratio from its own interval "
    "(t over replicates, or one process's windows): 2,000 resamples (RNG seed 0) draw every size's log ratio from "
    "its t distribution and recompute the crossing, so each size's uncertainty is carried through. Resamples with "
    "MoE (dense) ahead at every size put an end at or below (above) the swept range; the interval is undetermined "
    "when it spans the whole range or when more than 5 % of the resamples have no upward crossing, and the report "
    "says how many. A break-even between measured sizes more than 2× apart is marked: nothing was measured "
    "between them, and `moecluster refine` plans sizes there.",
    "Total energy is the headline; the above-idle view stands beside it (a column of the pairs table, a row under "
    "each break-even) and is marked where the two disagree: the views put different sides ahead, or a break-even "
    "lies outside the other view's interval.",
    "The roofline of a task is max(FLOPs / peak FLOP/s, bytes / peak bandwidth) for the work done, with peaks "
    "measured on the device (a large GEMM and a large copy) and, where the GPU is known, its datasheet; roofline "
    "energy is that time at the board's TDP (or the highest power measured when the GPU is unknown).",
    "Cluster-wide energy integrates every GPU's energy counter scraped by Prometheus over the run, busy or not, "
    "interpolating the counter between scrapes; the check compares it with the tasks' own counters over the "
    "tasks' windows on the GPUs that ran them (tolerance 2 %).",
]


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _cell(text: str, numeric: bool) -> str:
    """A cell; a figure with its interval gets the interval on a second, smaller line."""
    parts = fmt.split_interval(text) if numeric else None
    if parts:
        point, interval = parts
        mark = '<span class="dagger">†</span>' if interval.endswith(" †") else ""
        return (f'<td class="num">{_e(point)}{mark}<br><span class="ci">{_e(interval.removesuffix(" †"))}</span>'
                "</td>")
    if numeric and len(text) > 24 and " " in text:  # prose (a reason, a verdict) rather than a figure
        return f'<td class="txt wrap">{_e(text)}</td>'
    return f'<td class="{"num" if numeric else "txt"}">{_e(text)}</td>'


def table_html(t: TableData) -> str:
    def numeric(i: int) -> bool:
        return i >= t.left and i not in t.text_columns

    head = "".join(f'<th class="{"num" if numeric(i) else "txt"}">{_e(c)}</th>' for i, c in enumerate(t.columns))
    body = []
    for row, style in zip(t.rows, t.row_styles or [""] * len(t.rows)):
        if style == "group":
            body.append(f'<tr class="group"><td colspan="{len(t.columns)}">{_e(row[0])}</td></tr>')
            continue
        cells = "".join(_cell(c, numeric(i)) for i, c in enumerate(row))
        body.append(f'<tr class="{_e(style)}">{cells}</tr>')
    note = "".join(f'<p class="note">{_e(line)}</p>' for line in t.notes)
    return (f'<div class="scroll"><table><caption>{_e(t.title)}</caption><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>{note}')


def _lines(lines: list[Line]) -> str:
    return "".join(f'<p class="{_e(style)}">{_e(text)}</p>' for text, style in lines)


def figure_html(name: str, make: Callable[[Aggregate], bytes | None], agg: Aggregate, caption: str,
                absent: str, sink: dict[str, bytes] | None = None) -> str:
    """The figure embedded as base64 PNG (or why it is absent); its PNG also goes to `sink`."""
    data = make(agg)
    if data is not None and sink is not None:
        sink[name] = data
    if data is None:
        return f'<p class="absent" data-figure="{_e(name)}">{_e(absent)}</p>'
    b64 = base64.b64encode(data).decode("ascii")
    return (f'<figure id="fig-{_e(name)}"><img alt="{_e(name)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{caption}</figcaption></figure>")


def findings(agg: Aggregate) -> list[str]:
    out = [f"{b.key.label()}: {b.verdict}" for b in agg.break_evens]
    if agg.cluster is not None and agg.cluster.inferences_per_j is not None:
        many = items(agg.tasks)[1]
        out.append(f"cluster-wide: {agg.cluster.inferences_per_j:.4g} {many}/J over every GPU of the cluster")
    flagged = sum(1 for p in agg.pairs if p.inferences_per_j is not None and p.inferences_per_j.crosses_one)
    if flagged:
        many = items(p.moe for p in agg.pairs)[1]
        out.append(f"{flagged} of {len(agg.pairs)} comparisons cannot tell MoE and dense apart in {many}/J (†)")
    unavailable = sorted({s.energy_note for s in agg.tasks if s.energy_note})
    out += [f"energy {n}" for n in unavailable]
    return out


class _Numbers:
    """Sections and figures numbered in the order the page shows them."""

    def __init__(self) -> None:
        self.section = 0
        self.figure = 0

    def heading(self, title: str) -> str:
        self.section += 1
        return f"<h2>{self.section}. {_e(title)}</h2>"

    def next_figure(self) -> int:
        self.figure += 1
        return self.figure


def _efficiency_absent(agg: Aggregate) -> str:
    """Why Figure "efficiency" is absent: no pair with energy, or no series with two or more sizes."""
    energy = [p for p in agg.pairs if not workload(p.moe.spec.workload).series_over_batch
              and p.moe.inferences_per_j is not None
              and p.dense.inferences_per_j is not None]
    if not energy:
        return "no pair has energy readings on both sides."
    return "no series sweeps two or more model sizes with energy (each size is in the tables)."


def page(agg: Aggregate, run_id: str, meta: Mapping[str, Any], figures: dict[str, bytes] | None = None) -> str:
    """The whole page as one string (its figures need matplotlib: the `report` extra).

    The run's headline figure comes first: the LLM's tokens/J over the batch where the run has LLM
    pairs and no MLP ones, else inferences/J against model size; sections and figures are numbered
    in the order shown."""
    require("matplotlib", extra="report", feature="the report's HTML page (its figures)")
    from moecluster.report import plots

    n = _Numbers()

    def figure(name: str, make: Callable[[Aggregate], bytes | None], caption: str, absent: str) -> str:
        k = n.next_figure()
        return figure_html(name, make, agg, f"<b>Figure {k}.</b> {caption}", f"Figure {k} absent: {absent}", figures)

    head = header(agg, run_id, meta)
    parts = [f"<h1>{_e(head[0][0])}</h1>", *[f'<p class="meta">{_e(t)}</p>' for t, _ in head[1:]]]
    found = findings(agg)
    if found:
        parts.append('<div class="findings"><b>Findings</b><ul>' + "".join(f"<li>{_e(f)}</li>" for f in found)
                     + "</ul></div>")
    served = serve_report.tables(agg)
    mlp = any(not workload(p.moe.spec.workload).own_report_section for p in agg.pairs) or not (agg.llm or served)

    def llm_section() -> list[str]:
        if not agg.llm:
            return []
        return [n.heading("LLMs: tokens per joule over the batch, per phase"), figure(
            "llm", plots.llm_efficiency,
            "Tokens per joule against the tokens one forward processes (decode: the batch; prefill: batch × prompt"
            " length), one panel per series (model, phase, dtype, path, GPU) with two or more points, for each MoE"
            " and its dense twins matched by total and by active parameters (error bars: 95 % CI over windows);"
            " dotted: the analytic estimate at the datasheet roofline and TDP; dashed red: the GPU's critical"
            " batch size, dotted red: the MoE's (E/k times it). Every point, a series of one included, is in the"
            " table below.", "no LLM series has energy readings at two or more points (see the table)."),
            *[table_html(t) for t in llm_report.tables(agg)]]

    if not mlp:
        parts += llm_section()
    if mlp:
        parts.append(n.heading("Energy efficiency against model size"))
        parts.append(figure(
            "efficiency", plots.efficiency_vs_params,
            "Inferences per joule against the MoE's total parameters, for the dense twin and each MoE "
            "implementation (error bars: 95 % CI over windows). Dotted lines mark the break-even, the shaded band "
            "its 95 % interval.", _efficiency_absent(agg)))
        parts.append(table_html(breakeven_table(agg)))
    if agg.pairs or agg.incomplete:
        parts.append(n.heading("MoE beside dense, pair by pair"))
        parts.append(table_html(pairs_table(agg)))
        many = items(p.moe for p in agg.pairs)[1]
        parts.append(figure(
            "pairs", plots.throughput_power_per_pair,
            f"Throughput ({many}/s, log scale) and average power of each pair's MoE and dense task (error bars: "
            "95 % CI).", "no complete pair."))
    if served:
        parts.append(n.heading("Served models: MoE against dense under load"))
        parts += [table_html(t) for t in served]
    if mlp:
        parts += llm_section()
    if agg.tasks:
        # the LLM's and the served models' normalisations are with their own tables above
        mlp_tasks = any(not workload(s.spec.workload).own_report_section for s in agg.tasks)
        parts.append(n.heading("Tasks and seed 000's normalisations" if mlp_tasks else "Tasks"))
        parts.append(table_html(tasks_table(agg)))
        parts.append(table_html(task_runs_table(agg)))
        if mlp_tasks:
            parts.append(table_html(normalisations_table(agg)))
    parts.append(n.heading("Distance to the hardware's limit"))
    one = items(agg.tasks)[0]
    parts.append(figure(
        "roofline", plots.measured_vs_roofline,
        f"Measured time and energy per {one} against the roofline's (dashed: at the roofline). "
        "The vertical distance is how many times the ideal implementation's cost each task paid.",
        "no task carries a roofline."))
    if any(row for row in roofline_table(agg).rows):
        parts.append(table_html(roofline_table(agg)))
    parts.append(n.heading("Expert parallelism"))
    parts.append(figure(
        "ep", plots.ep_share,
        "Against the global batch size, per MoE and expert-parallel degree d: the share of the "
        "step's time in dispatch + combine, measured in the gang's timed pass (solid, diamonds), and the measured "
        "scaling loss 1 − speedup/d against the same MoE on one GPU (dashed, 95 % CI).",
        "this run has no task with an expert-parallel degree above 1."))
    if ep_shown(agg):
        parts.append(table_html(ep_table(agg)))
    parts.append(n.heading("Cluster-wide energy"))
    ctable, clines = cluster_section(agg)
    if ctable is not None:
        parts.append(table_html(ctable))
    parts.append(_lines(clines))
    if agg.failed:
        parts.append(n.heading("Failed tasks"))
        parts.append(table_html(failed_table(agg)))
    parts.append("<h2>Method</h2><ol class=\"method\">" + "".join(f"<li>{_e(m)}</li>" for m in METHOD) + "</ol>")
    parts.append(f'<p class="note">{_e(DAGGER)}</p>')
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>moecluster report — {_e(run_id)}</title><style>{CSS}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


def write_html(agg: Aggregate, run_id: str, meta: Mapping[str, Any], out_dir: Path) -> Path:
    """Write `out_dir/index.html` (self-contained) and each figure beside it as `figure-<name>.png`
    (for citing one figure); the page's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, bytes] = {}
    path = out_dir / "index.html"
    path.write_text(page(agg, run_id, meta, figures), encoding="utf-8")
    for name, data in figures.items():
        (out_dir / f"figure-{name}.png").write_bytes(data)
    return path
