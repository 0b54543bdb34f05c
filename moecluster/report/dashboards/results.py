"""The Results dashboard: finished tasks as the report computes them, from the head's results exporter.

The head's `moecluster dashboards serve-results` exports what `moecluster.report.aggregate`
computes from the run stores (estimates with 95 % intervals); the panels only select and lay
them out, so Grafana and `moecluster report` show the same numbers.
"""
from __future__ import annotations

from typing import Any

from moecluster.report.dashboards.panels import (
    INFERENCES_PER_J, INFERENCES_PER_S, TIMES, bars_panel, finish, label_variable, new_dashboard, organize, prom,
    table_panel, threshold_at_one, transformation
)
from moecluster.report.dashboards.sdk import Row

UID = "moecluster-results"
TITLE = "moecluster / Results"
RUN = 'run=~"$run"'
TASK = "{{preset}} {{kind}} {{impl}} b{{batch_size}} EP{{ep}}"
PAIR = "{{preset}} {{impl}} b{{batch_size}} EP{{ep}} vs dense/{{match}}"
EP = "{{preset}} {{impl}} b{{batch_size}} EP{{ep}}"
HIDDEN = ["Time", "__name__", "job", "instance"]


def _estimate_table(title: str, description: str, metric: str, unit_names: tuple[str, str, str],
                    extra: tuple[tuple[str, str], ...] = ()) -> Any:
    """A table of `metric` with its 95 % interval (and `extra` metrics), one row per series."""
    queries = [prom(f"{metric}{{{RUN}}}", instant=True, table_format=True),
               prom(f"{metric}_ci95_low{{{RUN}}}", instant=True, table_format=True),
               prom(f"{metric}_ci95_high{{{RUN}}}", instant=True, table_format=True)]
    names = list(unit_names)
    for m, label in extra:
        queries.append(prom(f"{m}{{{RUN}}}", instant=True, table_format=True))
        names.append(label)
    rename = {f"Value #{chr(ord('A') + i)}": n for i, n in enumerate(names)}
    return table_panel(title, description, *queries,
                       transformations=[transformation("merge"), organize(exclude=HIDDEN, rename=rename)], height=9)


def build() -> dict[str, Any]:
    d = (new_dashboard(TITLE, UID, "Finished tasks: inferences per joule, MoE/dense ratios and expert-parallel "
                       "costs, with 95 % intervals, as `moecluster report` computes them.", time_from="now-6h")
         .with_variable(label_variable("run", "run", "moecluster_run_info", title="Run")))
    d = (d.with_row(Row("Runs"))
         .with_panel(table_panel(
             "Runs", "Each run's tasks by state (moecluster_run_tasks) and its state (moecluster_run_info).",
             prom(f"moecluster_run_tasks{{{RUN}}}", instant=True, table_format=True),
             transformations=[transformation("groupingToMatrix", {"columnField": "state", "rowField": "run",
                                                                  "valueField": "Value"})], height=6)))
    d = (d.with_row(Row("Efficiency of finished tasks"))
         .with_panel(bars_panel(
             "Inferences per joule", "Each finished task's inferences per joule of GPU energy over its measurement "
             "windows (geometric mean of the windows). Tasks without measured energy have no bar.",
             INFERENCES_PER_J, prom(f"moecluster_result_inferences_per_joule{{{RUN}}}", TASK, instant=True),
             height=10))
         .with_panel(bars_panel(
             "Inferences per second", "Each finished task's throughput over its measurement windows.",
             INFERENCES_PER_S, prom(f"moecluster_result_inferences_per_second{{{RUN}}}", TASK, instant=True),
             height=10))
         .with_panel(_estimate_table(
             "Tasks with 95 % intervals", "Inferences per joule with its 95 % interval over the windows, "
             "throughput and mean power; energy_source says which meter measured it.",
             "moecluster_result_inferences_per_joule", ("inferences/J", "95 % low", "95 % high"),
             extra=(("moecluster_result_inferences_per_second", "inferences/s"),
                    ("moecluster_result_power_watts", "W")))))
    d = (d.with_row(Row("MoE against its dense twin"))
         .with_panel(bars_panel(
             "MoE / dense inferences per joule", "Each MoE task over its dense twin (same GPUs, same batch, twin sized "
             "by `match`): above 1 the MoE does more inferences per joule.", TIMES,
             prom(f"moecluster_pair_inferences_per_joule_ratio{{{RUN}}}", PAIR, instant=True),
             thresholds=threshold_at_one(), height=10))
         .with_panel(bars_panel(
             "MoE / dense inferences per second", "Each MoE task's throughput over its dense twin's.", TIMES,
             prom(f"moecluster_pair_inferences_per_second_ratio{{{RUN}}}", PAIR, instant=True),
             thresholds=threshold_at_one(), height=10))
         .with_panel(_estimate_table(
             "Ratios with 95 % intervals", "MoE/dense inferences per joule with its 95 % interval; an interval "
             "containing 1 cannot tell which side is better.", "moecluster_pair_inferences_per_joule_ratio",
             ("MoE/dense inf/J", "95 % low", "95 % high"),
             extra=(("moecluster_pair_inferences_per_second_ratio", "MoE/dense inf/s"),))))
    d = (d.with_row(Row("Expert parallelism"))
         .with_panel(bars_panel(
             "Communication share of a step", "Dispatch + combine time over the step time, from the gang's measured "
             "phases (expert-parallel tasks of degree above 1).", "percentunit",
             prom(f"moecluster_ep_comm_time_ratio{{{RUN}}}", EP, instant=True), max_val=1.0))
         .with_panel(bars_panel(
             "Dispatch share of the window energy", "The energy of the dispatch all-to-all per step over the window "
             "energy per step: a lower bound on the communication's share of the energy.", "percentunit",
             prom(f"moecluster_ep_dispatch_energy_ratio{{{RUN}}}", EP, instant=True)))
         .with_panel(bars_panel(
             "Speedup over one GPU", "Inferences per second at the degree over the same configuration at degree 1.",
             TIMES, prom(f"moecluster_ep_speedup_ratio{{{RUN}}}", EP, instant=True), thresholds=threshold_at_one()))
         .with_panel(bars_panel(
             "Inferences per joule against one GPU", "Inferences per joule at the degree over the same configuration "
             "at degree 1: below 1, spreading the experts costs energy.", TIMES,
             prom(f"moecluster_ep_inferences_per_joule_vs_ep1_ratio{{{RUN}}}", EP, instant=True),
             thresholds=threshold_at_one())))
    return finish(d)
