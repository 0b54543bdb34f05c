"""The Sweep (live) dashboard: what runs now, how fast and how efficiently, and how far the run is.

Live figures come from the node agents: the running task's labels (`moecluster_task_info`), its
inference count (`moecluster_task_inferences_total`) and its energy
(`moecluster_task_energy_joules_total`: the GPU's energy counter over the intervals the task held
it, so a pair's tasks alternating on one GPU never borrow each other's watts). They include
warm-up and settling between windows: the measured figure of a finished task is in Results.
Progress comes from the head's results exporter (`moecluster_run_tasks`).
"""
from __future__ import annotations

from typing import Any

from moecluster.report.dashboards.panels import (
    INFERENCES_PER_J, INFERENCES_PER_S, bars_panel, finish, label_variable, new_dashboard, organize, prom,
    stat_panel, table_panel, timeseries_panel
)
from moecluster.report.dashboards.sdk import Row

UID = "moecluster-sweep"
TITLE = "moecluster / Sweep (live)"
RUN = 'run=~"$run"'
#: the labels of each running task, one row per (run, task), restricted to the selected pairs
TASK_LABELS = f'max by (run, task, pair, kind, impl) (moecluster_task_info{{{RUN}, pair=~"$pair"}})'
RECENT = "5m"  # how far back "the latest" of a pair's two tasks may lie


def _labelled(expr: str, labels: str = TASK_LABELS) -> str:
    """`expr` (one series per run and task) with the task's pair, kind and impl, selected pairs only."""
    return f"({expr}) * on (run, task) group_left (pair, kind, impl) {labels}"


def _inferences_rate(window: str) -> str:
    # a task on several GPUs (a gang) exports its count on each: take one
    return f"max by (run, task) (rate(moecluster_task_inferences_total{{{RUN}}}[{window}]))"


def _energy_rate(window: str) -> str:
    return f"sum by (run, task) (rate(moecluster_task_energy_joules_total{{{RUN}}}[{window}]))"


def build() -> dict[str, Any]:
    recent_labels = (f'max by (run, task, pair, kind, impl) (last_over_time(moecluster_task_info{{{RUN}, '
                     f'pair=~"$pair"}}[{RECENT}]))')
    d = (new_dashboard(TITLE, UID, "The running sweep: tasks, live inferences/s, inferences/J and watts per "
                       "task, progress of each run.", time_from="now-30m")
         .with_variable(label_variable("run", "run", "moecluster_task_info", title="Run"))
         .with_variable(label_variable("pair", "pair", f"moecluster_task_info{{{RUN}}}", title="Pair")))
    d = (d.with_row(Row("Progress"))
         .with_panel(bars_panel(
             "Progress per run", "Tasks stored (ok or failed) over tasks planned, from the head's results exporter "
             "(moecluster_run_tasks).", "percentunit",
             prom(f'sum by (run) (moecluster_run_tasks{{{RUN}, state=~"ok|failed"}}) / sum by (run) '
                  f'(moecluster_run_tasks{{{RUN}, state="planned"}})', "{{run}}", instant=True),
             span=12, height=6, max_val=1.0))
         .with_panel(stat_panel(
             "Tasks", "Tasks of the selected runs stored ok, failed, and still missing (planned, not stored).",
             "short", prom(f'sum by (state) (moecluster_run_tasks{{{RUN}, state!="planned"}})', "{{state}}",
                           instant=True), span=8, height=6, decimals=0))
         .with_panel(stat_panel(
             "Running now", "Tasks whose labels the agents export now (one per task, whatever its GPUs).", "short",
             prom(f"count(count by (run, task) (moecluster_task_info{{{RUN}}}))", "running", instant=True),
             span=4, height=6, no_value="0", decimals=0)))
    d = (d.with_row(Row("Tasks running now"))
         .with_panel(table_panel(
             "Running tasks", "moecluster_task_info: the task on each GPU, as its runner published it.",
             prom(f'moecluster_task_info{{{RUN}, pair=~"$pair"}}', instant=True, table_format=True),
             transformations=[organize(exclude=["Time", "Value", "__name__", "job", "instance", "uuid"])],
             height=6))
         .with_panel(timeseries_panel(
             "Inferences per second", "Rate of each running task's inference count (live; includes warm-up).",
             INFERENCES_PER_S,
             prom(_labelled(_inferences_rate("$__rate_interval")), "{{kind}} {{impl}} ({{task}})"), span=8))
         .with_panel(timeseries_panel(
             "Inferences per joule", "Each running task's inference rate over its energy rate "
             "(moecluster_task_energy_joules_total: its GPUs' counters while it held them).", INFERENCES_PER_J,
             prom(_labelled(f"{_inferences_rate('$__rate_interval')} / {_energy_rate('$__rate_interval')}"),
                  "{{kind}} {{impl}} ({{task}})"), span=8))
         .with_panel(timeseries_panel(
             "Power per task", "Rate of each running task's energy: its GPUs' power while it held them.", "watt",
             prom(_labelled(_energy_rate("$__rate_interval")), "{{kind}} {{impl}} ({{task}})"), span=8)))
    d = (d.with_row(Row(f"Dense and MoE side by side (each pair's latest windows, last {RECENT})"))
         .with_panel(bars_panel(
             "Inferences per joule, dense vs MoE", f"Per pair, each task's inferences over its energy across its "
             f"windows of the last {RECENT} (both counters only advance while the task runs, so the ratio is the "
             f"task's own even when the pair alternates on one GPU).", INFERENCES_PER_J,
             prom(_labelled(f"{_inferences_rate(RECENT)} / {_energy_rate(RECENT)}", recent_labels),
                  "{{pair}} · {{kind}} {{impl}}", instant=True)))
         .with_panel(bars_panel(
             "Inferences per second, dense vs MoE", "Per pair, each task's inference rate in its latest scrape "
             f"interval while running (the last value within {RECENT}).", INFERENCES_PER_S,
             prom(_labelled(f"max by (run, task) (last_over_time(irate(moecluster_task_inferences_total{{{RUN}}}"
                            f"[1m])[{RECENT}:]))", recent_labels), "{{pair}} · {{kind}} {{impl}}", instant=True))))
    return finish(d)
