"""The report's tables as plain cells (`TableData`), rendered by rich in the terminal and as HTML.

Both renderings share the cells, so the terminal and the page always say the same thing. What
would repeat in every row (why energy is unavailable, a task's warnings, a long reason) is said
once, as a numbered footnote under the table, and marked in the cells (¹, ², ...).

Every table with intervals says what they cover (`TableData.covered`): "3 replicates on 2 GPUs of 1
node, 3 windows each" (an interval over independent processes) or "3 windows, 1 process" (over one
process's windows only): under the table when every row's is the same, else marked row by row.

Total energy is the headline; the above-idle view stands beside it (its own column, its own
break-even row under each series' total one), marked where the two disagree
(`aggregate.views`), and the header counts the disagreements.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from moecluster.report.aggregate import Aggregate, Estimate, TaskStats
from moecluster.report.aggregate.bootstrap import RESAMPLES, RNG_SEED
from moecluster.report.aggregate.bootstrap import METHOD as BOOTSTRAP
from moecluster.report.aggregate.breakeven import SEEDS_METHOD
from moecluster.report.aggregate.checks import MIN_WINDOWS
from moecluster.report.aggregate.ep import ep_left_out
from moecluster.report.aggregate.views import break_even_disagreement, by_series, pair_disagreement
from moecluster.head.items import MIXED_ITEMS, item_names
from moecluster.head.estimate.measured import compare
from moecluster.workloads.registry import workload

from moecluster.report import fmt
from moecluster.report.cells import TableData, mean_over
from moecluster.report.ep import ep_table as _ep_table
from moecluster.report.howran import choice_text, device_text, drift_text, form_text, idle_text
from moecluster.report.labels import model_name, pair_order, series_title, setting, task_names, task_order
from moecluster.report.llm import tables as llm_tables
from moecluster.report.serve import tables as serve_tables
from moecluster.report.terminal import FittedTable

DAGGER = "† the 95 % CI of the ratio contains 1: the repeats cannot tell which side is better."
VIEWS = ("above idle, the side that wins is not the one that wins in total energy (the headline): idle power"
         " weighs differently on the two sides")


def _table(title: str, columns: list[str], left: int = 1, text: tuple[int, ...] = ()) -> TableData:
    return TableData(title, columns, left, text_columns=text)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "?"


Line = tuple[str, str]  # (text, style: "" | "bold" | "dim" | "ok" | "bad" | "warn")
STYLES = {"": None, "bold": "bold", "dim": "dim", "ok": "green", "bad": "bold red", "warn": "yellow"}


def warning_lines(agg: Aggregate) -> list[Line]:
    """The run's warnings in brief: tasks with fewer than `MIN_WINDOWS` windows (or, measured by several
    processes, replicates), and how many tasks
    carry any warning (listed with the table "Tasks: how each ran")."""
    names = task_names(agg)
    few_tasks = [s for s in agg.tasks if s.few()]
    few = [names[s.task_id] for s in few_tasks]
    lines: list[Line] = []
    if few:
        what = " or ".join(sorted({"replicates" if s.replicates else "windows" for s in few_tasks}))
        lines.append((f"warning: {len(few)} of {len(agg.tasks)} tasks measured over fewer than {MIN_WINDOWS} {what},"
                      f" so their intervals are very wide or absent: {', '.join(few)}", "warn"))
    warned = sum(1 for s in agg.tasks if s.warnings)
    if warned:
        lines.append((f"warning: {warned} of {len(agg.tasks)} tasks carry warnings (see \"Tasks: how each ran\")",
                      "warn"))
    return lines + views_lines(agg)


def views_lines(agg: Aggregate) -> list[Line]:
    """One line counting where the above-idle view disagrees with the total-energy headline (none if nowhere)."""
    pairs = sum(1 for p in agg.pairs if pair_disagreement(p))
    bes = sum(1 for _, t, a in by_series(agg.break_evens, agg.break_evens_above_idle)
              if break_even_disagreement(t, a))
    if not pairs and not bes:
        return []
    where = " and ".join(filter(None, [f"{pairs} of {len(agg.pairs)} comparisons" if pairs else "",
                                       f"{bes} break-even(s)" if bes else ""]))
    return [(f"note: total energy is the headline; the above-idle view disagrees with it on {where} (marked in"
             " the tables)", "warn")]


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
    return lines + warning_lines(agg)


def _m(e: Estimate | None) -> str:
    return fmt.num(e.mean if e else None)


def _fig(t: TableData, e: Estimate | None, show: Callable[[Estimate | None], str], why: str | None) -> str:
    """`e` shown by `show`, else "n/a" with the footnote mark of why it is missing (when known)."""
    if e is not None:
        return show(e)
    return f"n/a{t.note(why)}" if why else "n/a"


def items(stats: Iterable[TaskStats]) -> tuple[str, str, str]:
    """What these tasks' throughput counts (`head.items.item_names`): tokens for LLM tasks."""
    return item_names(s.spec.workload for s in stats)


def _items_caption(stats: Iterable[TaskStats]) -> str:
    """The sentence that says what "items" are where a table mixes workloads; "" otherwise."""
    return f" {MIXED_ITEMS}." if items(stats)[2] == "items" else ""


def _windows(s: TaskStats) -> str:
    """The windows of a task: "3", or "3 × 2" for 3 replicates of 2 windows each ("3 × 2–3" where they differ)."""
    if not s.replicates:
        return str(s.n_windows)
    counts = sorted({p.n_windows for p in s.replicates})
    each = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return f"{len(s.replicates)} × {each}"


def pairs_table(agg: Aggregate) -> TableData:
    u = items(p.moe for p in agg.pairs)[2]
    over = mean_over(p.moe for p in agg.pairs)
    t = _table(f"MoE beside its dense twin (geometric mean over {over}; ratio = MoE / dense [95 % CI])",
               ["model", "params MoE / dense", f"{u}/s MoE", f"{u}/s dense", f"{u}/s ratio", "W MoE", "W dense",
                "W ratio", f"{u}/J MoE", f"{u}/J dense", f"{u}/J ratio", f"{u}/J ratio above idle"], left=1)
    current = None
    seeds = len({s.spec.seed for s in agg.tasks}) > 1
    mark = t.covered(p.ci_covers for p in agg.pairs)
    for p in sorted(agg.pairs, key=pair_order):
        m, d = p.moe, p.dense
        head = series_title(p)
        if head != current:
            t.group(head)
            current = head
        note = m.energy_note or d.energy_note
        above = m.above_idle_note or d.above_idle_note
        name = f"{model_name(m.spec)} seed {m.spec.seed}" if seeds else model_name(m.spec)
        t.add_row(f"{name} {t.marks(p.warnings)} {mark(p.ci_covers)}".rstrip(),
                  f"{fmt.params(m.total_params)} / {fmt.params(d.total_params)}",
                  _m(m.inferences_per_s), _m(d.inferences_per_s), fmt.ratio(p.inferences_per_s),
                  _fig(t, m.power_w, _m, note), _fig(t, d.power_w, _m, note), _fig(t, p.power_w, fmt.ratio, note),
                  _fig(t, m.inferences_per_j, _m, note), _fig(t, d.inferences_per_j, _m, note),
                  _fig(t, p.inferences_per_j, fmt.ratio, note),
                  _fig(t, p.inferences_per_j_above_idle, fmt.ratio, above)
                  + (t.note(VIEWS) if pair_disagreement(p) else ""))
    if agg.incomplete:
        t.group("incomplete pairs")
        for ip in agg.incomplete:
            t.add_row(ip.pair_id, ip.reason, *[""] * 10)
    t.caption = DAGGER + _items_caption(p.moe for p in agg.pairs)
    return t


def _task_rows(agg: Aggregate) -> list[tuple[str, str, TaskStats]]:
    """(setting, name, stats) of every task, in reading order."""
    names = task_names(agg)
    order = task_order(agg)
    return [(setting(s.spec), names[s.task_id], s) for s in sorted(agg.tasks, key=order)]


def tasks_table(agg: Aggregate) -> TableData:
    _, many, u = items(agg.tasks)
    over = mean_over(agg.tasks, "measurement windows")
    t = _table(f"Tasks: throughput and energy (geometric mean [95 % CI] over {over})",
               ["task", "windows", f"{many}/s", "W", "J / window", f"{many}/J", f"{u}/J above idle"])
    t.caption = _items_caption(agg.tasks).strip()
    mark = t.covered(s.ci_covers for s in agg.tasks)
    current = None
    for head, name, s in _task_rows(agg):
        if head != current:
            t.group(head)
            current = head
        few = s.few()
        note = s.energy_note
        t.add_row(f"{name} {mark(s.ci_covers)}".rstrip(), f"{_windows(s)}{t.note(few) if few else ''}",
                  fmt.est(s.inferences_per_s),
                  _fig(t, s.power_w, fmt.est, note), _fig(t, s.energy_j, fmt.est, note),
                  _fig(t, s.inferences_per_j, fmt.est, note),
                  _fig(t, s.inferences_per_j_above_idle, fmt.est, s.above_idle_note))
    return t


def task_runs_table(agg: Aggregate) -> TableData:
    """How each task ran: its parameters, the form chosen for its model, drift, idle and warnings; a row per
    replicate (`r2`, and the run where `report` pooled several)."""
    t = _table("Tasks: how each ran (form chosen by measurement: layout · kernel · graph; margin: its lead over"
               " the runner-up > the noise measured while choosing; drift: last window over first − 1; device: own,"
               " or waited while another run used it)",
               ["task", "params total / active", "form", "margin", "drift", "idle", "energy source", "device",
                "warnings"], text=(2, 3, 4, 5, 6, 7, 8))
    runs = len({p.spec.run_id for s in agg.tasks for p in s.processes}) > 1
    current = None
    for head, name, pooled in _task_rows(agg):
        if head != current:
            t.group(head)
            current = head
        for s in pooled.processes:  # every replicate ran in its own process: its own form, drift and idle
            r = s.result
            form, form_notes = form_text(r.form)
            margin, margin_notes = choice_text(r.choice)
            idle = idle_text(r) + (t.note(f"idle: {r.idle_note}") if r.idle_note else "")
            source = (r.energy_source or "none") + (t.note(s.energy_note) if s.energy_note else "")
            which = f" r{s.spec.replicate}" + (f" of {s.spec.run_id}" if runs else "") if pooled.replicates else ""
            t.add_row(name + which, f"{fmt.params(s.total_params)} / {fmt.params(s.active_params)}",
                      f"{form}{t.marks(form_notes)}", f"{margin}{t.marks(margin_notes)}",
                      drift_text(r.drift, items([s])[2]), idle, source,
                      device_text(r), t.marks(s.warnings) or "none")
    return t


def normalisations_table(agg: Aggregate) -> TableData:
    t = _table("Seed 000's normalisations (watt-seconds = J; one MLP inference routes one token;"
               " above-idle figures in the CSV/JSON export)",
               ["task", "Ws / inference", "Ws / inference / total param", "Ws / inference / active param",
                "Ws / token / active param", "tokens / Ws"])
    mark = t.covered(s.ci_covers for s in agg.tasks if not workload(s.spec.workload).series_over_batch)
    current = None
    for head, name, s in _task_rows(agg):
        if workload(s.spec.workload).series_over_batch:
            continue  # in tokens and responses, with the LLM tables
        if head != current:
            t.group(head)
            current = head
        name = f"{name} {mark(s.ci_covers)}".rstrip()
        if s.energy_note:
            t.add_row(name, *[f"n/a{t.note(s.energy_note)}"] * 5)
            continue
        t.add_row(name, fmt.est(s.j_per_inference, fmt.sci), fmt.est(s.j_per_inference_per_total_param, fmt.sci),
                  fmt.est(s.j_per_inference_per_active_param, fmt.sci),
                  fmt.est(s.j_per_token_per_active_param, fmt.sci), fmt.est(s.tokens_per_j))
    return t


BREAKEVEN_METHOD = (f"95 % CI: {BOOTSTRAP} ({RESAMPLES:,} resamples, RNG seed {RNG_SEED}); ≤ / >: an end"
                    f" beyond the swept sizes. Several seeds at one size: {SEEDS_METHOD}. Total energy is the"
                    " headline; the above-idle row under it is marked where the two disagree.")


def breakeven_table(agg: Aggregate) -> TableData:
    t = _table("Break-even: where MoE inferences/J overtakes dense (interpolated in log10 total parameters)",
               ["series", "energy", "sizes swept", "break-even", "95 % CI"], left=2, text=(3, 4))
    t.covered(p.ci_covers for p in agg.pairs if not workload(p.moe.spec.workload).series_over_batch)
    for key, total, above in by_series(agg.break_evens, agg.break_evens_above_idle):
        differs = break_even_disagreement(total, above)
        for label, b in (("total", total), ("above idle", above)):
            if b is None:
                continue
            where = t.note(b.gap_note) if b.gap_note else ""
            flag = t.note(differs) if differs and b is above else ""
            t.add_row(key.label(), f"{label}{flag}",
                      f"{len(b.points)}: {fmt.params(b.min_params)} – {fmt.params(b.max_params)}",
                      (fmt.params(b.params) if b.params else b.outcome) + where, b.interval_text)
    if not agg.break_evens and not agg.break_evens_above_idle:
        t.add_row("no series sweeps two or more sizes with energy", *[""] * 4)
    t.caption = BREAKEVEN_METHOD
    return t


def roofline_table(agg: Aggregate) -> TableData:
    t = _table(f"Measured vs roofline, per {items(agg.tasks)[0]} (roofline: peaks measured on the device; datasheet"
               " where known)",
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
    """The expert-parallel table, built in `report.ep`."""
    return _ep_table(agg)


def cluster_section(agg: Aggregate) -> tuple[TableData | None, list[Line]]:
    """The per-node energy table (None without Prometheus) and the summary lines."""
    c = agg.cluster
    task_j = sum(s.total_energy_j or 0.0 for s in agg.tasks if s.energy_note is None)
    task_inf = sum(s.inferences for s in agg.tasks if s.energy_note is None)
    many = items(agg.tasks)[1]
    own: Line = ((f"tasks' own counters: {task_inf:,} {many} / {fmt.si(task_j, 'J')} over their windows"
                  f" = {fmt.num(task_inf / task_j if task_j else None)} {many}/J") if task_inf
                 else "tasks' own counters: no task has energy", "")
    if c is None:
        return None, [(f"cluster-wide: {agg.cluster_note}", "warn"), own]
    t = _table(f"Cluster-wide energy over the run ({fmt.seconds(c.duration_s)}; {agg.cluster_note})",
               ["node", "GPUs", "ran tasks", "energy"])
    for node, v in c.by_node().items():
        t.add_row(node, str(v["gpus"]), str(v["task_gpus"]), fmt.si(v["energy_j"], "J"))  # type: ignore[arg-type]
    t.add_row("all", str(len(c.gpus)), str(sum(g.ran_tasks for g in c.gpus)), fmt.si(c.total_j, "J"), style="bold")
    lines: list[Line] = [
        (f"cluster: {c.inferences:,} {many} / {fmt.si(c.total_j, 'J')} = {fmt.num(c.inferences_per_j)}"
         f" {many}/J (GPUs that ran tasks {fmt.si(c.task_gpus_j, 'J')}, GPUs that ran none"
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
    out += llm_tables(agg)
    served = serve_tables(agg)
    out += served
    if agg.tasks:
        out += [tasks_table(agg), task_runs_table(agg)]
        if any(not workload(s.spec.workload).own_report_section for s in agg.tasks):  # theirs are with their own tables
            out.append(normalisations_table(agg))
    if any(not workload(p.moe.spec.workload).own_report_section for p in agg.pairs) or agg.break_evens or \
            not (agg.llm or served):
        out.append(breakeven_table(agg))  # an LLM run's series run over the batch, not the model's size
    if any(compare(r) for r in agg.results):
        out.append(roofline_table(agg))
    if agg.ep or ep_left_out(agg.tasks):
        out.append(ep_table(agg))
    return out


def _text(line: Line) -> Text:
    return Text(line[0], style=STYLES.get(line[1]) or "")


def render(agg: Aggregate, run_id: str, meta: Mapping[str, Any]) -> list[RenderableType]:
    """Everything for the terminal, in reading order."""
    out: list[RenderableType] = [_text(line) for line in header(agg, run_id, meta)]
    out += [FittedTable(t) for t in sections(agg)]
    table, lines = cluster_section(agg)
    out.append(Text("Cluster-wide energy", style="bold"))
    if table is not None:
        out.append(FittedTable(table))
    out += [_text(line) for line in lines]
    if agg.failed:
        out.append(FittedTable(failed_table(agg)))
    return out
