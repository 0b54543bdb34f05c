"""The report's tables as plain cells (`TableData`), rendered by rich in the terminal and as HTML.

Both renderings share the cells, so the terminal and the page always say the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from moecluster.orchestrator.aggregate import Aggregate, Estimate, TaskStats
from moecluster.orchestrator.estimate.measured import compare, task_comm_share

from . import fmt
from .labels import model_name, pair_order, series_title, setting, task_names, task_order

DAGGER = "† the 95 % CI of the ratio contains 1: the repeats cannot tell which side is better."


@dataclass
class TableData:
    """A titled table of formatted cells; the first `left` columns are text (left-aligned)."""

    title: str
    columns: list[str]
    left: int = 1
    rows: list[list[str]] = field(default_factory=list)
    caption: str = ""
    row_styles: list[str] = field(default_factory=list)
    text_columns: tuple[int, ...] = ()  # further text columns beyond the first `left`

    def add_row(self, *cells: str, style: str = "") -> None:
        self.rows.append([str(c) for c in cells])
        self.row_styles.append(style)

    def group(self, title: str) -> None:
        """A row spanning the table that heads the rows after it (style "group")."""
        self.rows.append([title] + [""] * (len(self.columns) - 1))
        self.row_styles.append("group")

    def _rich_table(self, title: str | None, caption: str | None) -> Table:
        t = Table(title=title, title_justify="left", title_style="bold", pad_edge=False, caption=caption,
                  caption_justify="left")
        for i, c in enumerate(self.columns):
            text = i < self.left or i in self.text_columns
            t.add_column(c, justify="left" if text else "right", overflow="fold")
        return t

    def to_rich(self) -> RenderableType:
        """One rich table, or one per group (a terminal table cannot span a row across columns)."""
        if "group" not in self.row_styles:
            t = self._rich_table(self.title, self.caption or None)
            for row, style in zip(self.rows, self.row_styles):
                t.add_row(*row, style=style or None)
            return t
        tables: list[RenderableType] = [Text(self.title, style="bold")]
        current: Table | None = None
        for row, style in zip(self.rows, self.row_styles):
            if style == "group":
                current = self._rich_table(f"  {row[0]}", None)
                current.title_style = "italic"
                tables.append(current)
            elif current is not None:
                current.add_row(*row, style=style or None)
        if self.caption:
            tables.append(Text(self.caption, style="dim"))
        return Group(*tables)


def _table(title: str, columns: list[str], left: int = 1, text: tuple[int, ...] = ()) -> TableData:
    return TableData(title, columns, left, text_columns=text)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "?"


Line = tuple[str, str]  # (text, style: "" | "bold" | "dim" | "ok" | "bad" | "warn")
STYLES = {"": None, "bold": "bold", "dim": "dim", "ok": "green", "bad": "bold red", "warn": "yellow"}


def header(agg: Aggregate, run_id: str, meta: Mapping[str, Any]) -> list[Line]:
    ok = [r for r in agg.results if r.status == "ok"]
    sources = sorted({r.energy_source or "unavailable" for r in ok})
    gpus = sorted({g.name for r in ok for g in r.gpus}) or sorted({r.spec.device for r in ok})
    nodes = sorted({r.node for r in ok})
    start = min((r.started_at for r in agg.results if r.started_at), default=0.0)
    end = max((r.finished_at for r in agg.results if r.finished_at), default=0.0)
    lines: list[Line] = [
        (f"moecluster report — run {run_id}", "bold"),
        (f"{len(ok)} tasks ok, {len(agg.failed)} failed; {len(agg.pairs)} MoE/dense comparisons"
         f" in {len({p.pair_id for p in agg.pairs})} pairs; nodes: {', '.join(nodes) or '-'}", ""),
        (f"devices: {', '.join(gpus) or '-'}; energy: {', '.join(sources) or '-'};"
         f" {_when(start)} – {_when(end)}", "")]
    lines += [(f"{k}: {v}", "dim") for k, v in meta.items()]
    return lines


def _m(e: Estimate | None) -> str:
    return fmt.num(e.mean if e else None)


def pairs_table(agg: Aggregate) -> TableData:
    t = _table("MoE beside its dense twin (ratio = MoE / dense, mean [95 % CI])",
               ["model", "params MoE / dense", "inf/s MoE", "inf/s dense", "ratio", "W MoE", "W dense", "ratio",
                "inf/J MoE", "inf/J dense", "ratio", "ratio above idle"], left=1)
    current = None
    for p in sorted(agg.pairs, key=pair_order):
        m, d = p.moe, p.dense
        head = series_title(p)
        if head != current:
            t.group(head)
            current = head
        note = m.energy_note or d.energy_note
        t.add_row(model_name(m.spec), f"{fmt.params(m.total_params)} / {fmt.params(d.total_params)}",
                  _m(m.inferences_per_s), _m(d.inferences_per_s), fmt.ratio(p.inferences_per_s),
                  _m(m.power_w), _m(d.power_w), fmt.ratio(p.power_w),
                  _m(m.inferences_per_j), _m(d.inferences_per_j),
                  fmt.ratio(p.inferences_per_j) if p.inferences_per_j else (note or "n/a"),
                  fmt.ratio(p.inferences_per_j_above_idle))
    if agg.incomplete:
        t.group("incomplete pairs")
        for ip in agg.incomplete:
            t.add_row(ip.pair_id, ip.reason, *[""] * 10)
    t.caption = DAGGER
    return t


def _task_rows(agg: Aggregate) -> list[tuple[str, str, TaskStats]]:
    """(setting, name, stats) of every task, in reading order."""
    names = task_names(agg)
    order = task_order(agg)
    return [(setting(s.spec), names[s.task_id], s) for s in sorted(agg.tasks, key=order)]


def tasks_table(agg: Aggregate) -> TableData:
    t = _table("Tasks (mean [95 % CI] over measurement windows)",
               ["task", "params total / active", "win", "inferences/s", "avg W", "J / window", "inferences/J",
                "inf/J above idle", "idle W", "energy source"], text=(9,))
    current = None
    for head, name, s in _task_rows(agg):
        if head != current:
            t.group(head)
            current = head
        r = s.result
        t.add_row(name, f"{fmt.params(s.total_params)} / {fmt.params(s.active_params)}", str(s.n_windows),
                  fmt.est(s.inferences_per_s), fmt.est(s.power_w), fmt.est(s.energy_j), fmt.est(s.inferences_per_j),
                  fmt.est(s.inferences_per_j_above_idle) if s.inferences_per_j_above_idle else (s.idle_note or "n/a"),
                  fmt.num(r.idle_power_w), r.energy_source or (s.energy_note or ""))
    return t


def normalisations_table(agg: Aggregate) -> TableData:
    t = _table("Seed 000's normalisations (watt-seconds = J; one MLP inference routes one token;"
               " above-idle figures in the CSV/JSON export)",
               ["task", "Ws / inference", "Ws / inference / total param", "Ws / inference / active param",
                "Ws / token / active param", "tokens / Ws"])
    current = None
    for head, name, s in _task_rows(agg):
        if head != current:
            t.group(head)
            current = head
        if s.energy_note:
            t.add_row(name, s.energy_note, *[""] * 4)
            continue
        t.add_row(name, fmt.est(s.j_per_inference, fmt.sci), fmt.est(s.j_per_inference_per_total_param, fmt.sci),
                  fmt.est(s.j_per_inference_per_active_param, fmt.sci),
                  fmt.est(s.j_per_token_per_active_param, fmt.sci), fmt.est(s.tokens_per_j))
    return t


def breakeven_table(agg: Aggregate) -> TableData:
    t = _table("Break-even: where MoE inferences/J overtakes dense (interpolated in log10 total parameters)",
               ["series", "energy", "sizes", "swept", "break-even", "95 % CI", "verdict"], left=2, text=(6,))
    for label, bes in (("total", agg.break_evens), ("above idle", agg.break_evens_above_idle)):
        for b in bes:
            t.add_row(b.key.label(), label, str(len(b.points)),
                      f"{fmt.params(b.min_params)} – {fmt.params(b.max_params)}",
                      fmt.params(b.params) if b.params else "none", b.interval_text, b.verdict)
    if not agg.break_evens and not agg.break_evens_above_idle:
        t.add_row("no series sweeps two or more sizes with energy", *[""] * 6)
    return t


def roofline_table(agg: Aggregate) -> TableData:
    t = _table("Measured vs roofline, per inference (roofline: peaks measured on the device; datasheet where known)",
               ["task", "GPU", "measured", "roofline", "of roofline", "bound", "of datasheet", "measured J",
                "roofline J", "× roofline J", "reference power"], left=2, text=(5, 10))
    current = None
    for head, name, s in _task_rows(agg):
        c = compare(s.result)
        if c is None:
            continue
        if head != current:
            t.group(head)
            current = head
        t.add_row(name, c.gpu_name, fmt.seconds(c.measured_s_per_inference),
                  fmt.seconds(c.roofline_s_per_inference), fmt.pct(c.roofline_fraction), c.bound,
                  fmt.pct(c.datasheet_fraction), fmt.si(c.measured_j_per_inference, "J"),
                  fmt.si(c.roofline_j_per_inference, "J"), fmt.num(c.energy_over_roofline, 3), c.power_ref_source)
    return t


def ep_table(agg: Aggregate) -> TableData:
    t = _table("Expert parallelism (against the same MoE on one GPU)",
               ["task", "EP degree", "against", "speedup", "scaling loss 1 − S/d", "inf/J vs EP 1",
                "comm share (analytic)"], left=1, text=(2,))
    names = task_names(agg)
    for p in agg.ep:
        t.add_row(f"{names.get(p.stats.task_id, p.stats.task_id)} · {setting(p.stats.spec)}", str(p.degree),
                  p.baseline.task_id if p.baseline else "no EP 1 task",
                  fmt.est(p.speedup), fmt.est(p.scaling_loss, fmt.pct), fmt.ratio(p.energy_ratio),
                  fmt.pct(task_comm_share(p.stats.result)))
    return t


def cluster_section(agg: Aggregate) -> tuple[TableData | None, list[Line]]:
    """The per-node energy table (None without Prometheus) and the summary lines."""
    c = agg.cluster
    task_j = sum(s.total_energy_j or 0.0 for s in agg.tasks if s.energy_note is None)
    task_inf = sum(s.inferences for s in agg.tasks if s.energy_note is None)
    own: Line = ((f"tasks' own counters: {task_inf:,} inferences / {fmt.si(task_j, 'J')} over their windows"
                  f" = {fmt.num(task_inf / task_j if task_j else None)} inferences/J") if task_inf
                 else "tasks' own counters: no task has energy", "")
    if c is None:
        return None, [(f"cluster-wide: {agg.cluster_note}", "warn"), own]
    t = _table(f"Cluster-wide energy over the run ({fmt.seconds(c.duration_s)}; {agg.cluster_note})",
               ["node", "GPUs", "ran tasks", "energy"])
    for node, v in c.by_node().items():
        t.add_row(node, str(v["gpus"]), str(v["task_gpus"]), fmt.si(v["energy_j"], "J"))  # type: ignore[arg-type]
    t.add_row("all", str(len(c.gpus)), str(sum(g.ran_tasks for g in c.gpus)), fmt.si(c.total_j, "J"), style="bold")
    lines: list[Line] = [
        (f"cluster: {c.inferences:,} inferences / {fmt.si(c.total_j, 'J')} = {fmt.num(c.inferences_per_j)}"
         f" inferences/J (GPUs that ran tasks {fmt.si(c.task_gpus_j, 'J')}, GPUs that ran none"
         f" {fmt.si(c.idle_gpus_j, 'J')})", "bold"), own]
    chk = c.check
    if chk is None:
        lines.append(("check against the tasks' counters: no task with energy could be matched", "warn"))
    elif chk.rel_diff is None:
        lines.append(("check against the tasks' counters: not possible, no task's windows could be placed"
                      " on the clock", "warn"))
        lines += [(f"left out of the check: {s}", "dim") for s in chk.skipped]
    else:
        lines.append((f"check over the tasks' windows on their GPUs: Prometheus {fmt.si(chk.prometheus_j, 'J')}"
                      f" vs tasks {fmt.si(chk.tasks_j, 'J')}: {chk.rel_diff:+.2%}"
                      f" ({'within' if chk.ok else 'OUTSIDE'} ±{chk.tolerance:.0%}; {len(chk.tasks)} tasks;"
                      f" windows {chk.placement})", "ok" if chk.ok else "bad"))
        lines += [(f"left out of the check: {s}", "dim") for s in chk.skipped]
    lines += [(f"note: {n}", "warn") for n in c.notes]
    return t, lines


def failed_table(agg: Aggregate) -> TableData:
    t = _table("Failed tasks", ["task", "node", "error"], left=3)
    for r in agg.failed:
        t.add_row(r.spec.task_id, r.node, r.error or "")
    return t


def sections(agg: Aggregate) -> list[TableData]:
    """The tables with something to show, in reading order (the cluster section is apart)."""
    out: list[TableData] = []
    if agg.pairs or agg.incomplete:
        out.append(pairs_table(agg))
    if agg.tasks:
        out += [tasks_table(agg), normalisations_table(agg)]
    out.append(breakeven_table(agg))
    if any(compare(r) for r in agg.results):
        out.append(roofline_table(agg))
    if agg.ep:
        out.append(ep_table(agg))
    return out


def _text(line: Line) -> Text:
    return Text(line[0], style=STYLES.get(line[1]) or "")


def render(agg: Aggregate, run_id: str, meta: Mapping[str, Any]) -> list[RenderableType]:
    """Everything for the terminal, in reading order."""
    out: list[RenderableType] = [_text(line) for line in header(agg, run_id, meta)]
    out += [t.to_rich() for t in sections(agg)]
    table, lines = cluster_section(agg)
    out.append(Text("Cluster-wide energy", style="bold"))
    if table is not None:
        out.append(table.to_rich())
    out += [_text(line) for line in lines]
    if agg.failed:
        out.append(failed_table(agg).to_rich())
    return out
