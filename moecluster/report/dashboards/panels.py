"""Building blocks shared by the three dashboards: queries, panels, variables, the finished JSON.

Every panel reads Prometheus through the `datasource` variable, every query is PromQL the tests
run against a real Prometheus, and every unit is Grafana's unit id (W: `watt`, J: `joule`, ...).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from moecluster.report.dashboards import DATASOURCE_NAME, DATASOURCE_UID
from moecluster.report.dashboards.sdk import (
    AnnotationQuery,
    Dashboard,
    DashboardLink,
    DatasourceVariable,
    JSONEncoder,
    PromQuery,
    PromQueryFormat,
    QueryVariable,
    ReduceDataOptions,
    ThresholdsConfig,
    VizLegendOptions,
    bargauge,
    common_models,
    dashboard_models,
    stat,
    table,
    timeseries,
)

DS = common_models.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "moecluster"
REFRESH = "10s"
INFERENCES_PER_S = "suffix: inf/s"
INFERENCES_PER_J = "suffix: inf/J"
TIMES = "suffix:×"

Panel = Any  # one of the SDK's panel builders


def prom(expr: str, legend: str | None = None, *, instant: bool = False, table_format: bool = False,
         ref: str = "A") -> PromQuery:
    """One Prometheus query; `instant` for the value now, `table_format` for a table's rows."""
    q = PromQuery().expr(expr).ref_id(ref)
    if legend is not None:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    if table_format:
        q = q.format(PromQueryFormat.TABLE)
    return q


def _legend() -> VizLegendOptions:
    return (VizLegendOptions().show_legend(True).display_mode(common_models.LegendDisplayMode.TABLE)
            .placement(common_models.LegendPlacement.RIGHT).calcs(["lastNotNull", "mean", "max"]))


def _with(panel: Panel, queries: Sequence[PromQuery]) -> Panel:
    for i, q in enumerate(queries):
        panel = panel.with_target(q.ref_id(chr(ord("A") + i)))
    return panel


def timeseries_panel(title: str, description: str, unit: str, *queries: PromQuery, span: int = 12,
                     height: int = 8, min_val: float | None = 0.0, max_val: float | None = None) -> Panel:
    p = (timeseries.Panel().title(title).description(description).datasource(DS).unit(unit).span(span)
         .height(height).legend(_legend()).fill_opacity(10).line_width(1))
    if min_val is not None:
        p = p.min(min_val)
    if max_val is not None:
        p = p.max(max_val)
    return _with(p, queries)


def stat_panel(title: str, description: str, unit: str, *queries: PromQuery, span: int = 6, height: int = 4,
               no_value: str | None = None, decimals: float | None = None) -> Panel:
    p = (stat.Panel().title(title).description(description).datasource(DS).unit(unit).span(span).height(height)
         .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
         .graph_mode(common_models.BigValueGraphMode.NONE))
    if no_value is not None:
        p = p.no_value(no_value)
    if decimals is not None:
        p = p.decimals(decimals)
    return _with(p, queries)


def threshold_at_one() -> ThresholdsConfig:
    """Red below 1, green from 1: for ratios where above 1 favours MoE (or the larger degree)."""
    return ThresholdsConfig().mode(dashboard_models.ThresholdsMode("absolute")).steps([
        dashboard_models.Threshold(value=None, color="red"), dashboard_models.Threshold(value=1.0, color="green")])


def bars_panel(title: str, description: str, unit: str, *queries: PromQuery, span: int = 12, height: int = 9,
               thresholds: ThresholdsConfig | None = None, min_val: float | None = 0.0,
               max_val: float | None = None) -> Panel:
    """Horizontal bars, one per series (the value now)."""
    p = (bargauge.Panel().title(title).description(description).datasource(DS).unit(unit).span(span).height(height)
         .orientation(common_models.VizOrientation.HORIZONTAL)
         .display_mode(common_models.BarGaugeDisplayMode.BASIC)
         .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if thresholds is not None:
        p = p.thresholds(thresholds)
    if min_val is not None:
        p = p.min(min_val)
    if max_val is not None:
        p = p.max(max_val)
    return _with(p, queries)


def transformation(kind: str, options: dict[str, Any] | None = None) -> Any:
    return dashboard_models.DataTransformerConfig(id_val=kind, options=options or {})


def organize(exclude: Sequence[str] = (), rename: dict[str, str] | None = None) -> Any:
    """Hide and rename table columns (Grafana's `organize` transformation)."""
    return transformation("organize", {"excludeByName": {c: True for c in exclude}, "renameByName": rename or {},
                                       "indexByName": {}})


def table_panel(title: str, description: str, *queries: PromQuery, span: int = 24, height: int = 8,
                transformations: Sequence[Any] = (), unit: str | None = None) -> Panel:
    p = table.Panel().title(title).description(description).datasource(DS).span(span).height(height)
    if unit is not None:
        p = p.unit(unit)
    for t in transformations:
        p = p.with_transformation(t)
    return _with(p, queries)


def datasource_variable() -> DatasourceVariable:
    """The Prometheus the panels read; the one `push`/provisioning create by default."""
    return (DatasourceVariable("datasource").label("Prometheus").type("prometheus")
            .current(dashboard_models.VariableOption(selected=True, text=DATASOURCE_NAME, value=DATASOURCE_UID)))


def label_variable(name: str, label: str, metric: str, *, title: str, multi: bool = True) -> QueryVariable:
    """A variable listing the values of `label` on `metric` (a selector) over the dashboard's range;
    "All" matches every value (`.*`)."""
    query = f"label_values({metric}, {label})"
    return (QueryVariable(name).label(title).datasource(DS)
            .query({"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1})
            .definition(query).multi(multi).include_all(True).all_value(".*")
            .current(dashboard_models.VariableOption(selected=True, text="All", value="$__all"))
            .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC))


def new_dashboard(title: str, uid: str, description: str, time_from: str = "now-1h") -> Dashboard:
    link = (DashboardLink("moecluster").type(dashboard_models.DashboardLinkType("dashboards")).tags([TAG])
            .as_dropdown(True).include_vars(False).keep_time(True))
    # Grafana's own annotations (the built-in query every dashboard it saves carries)
    builtin = (AnnotationQuery().name("Annotations & Alerts").built_in(1).enable(True).hide(True)
               .icon_color("rgba(0, 211, 255, 1)").type("dashboard")
               .datasource(common_models.DataSourceRef(type_val="grafana", uid="-- Grafana --")))
    return (Dashboard(title).uid(uid).description(description).tags([TAG]).refresh(REFRESH)
            .time(time_from, "now").timezone("browser").link(link).annotation(builtin)
            .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR).with_variable(datasource_variable()))


def finish(builder: Dashboard) -> dict[str, Any]:
    """The dashboard's JSON (a dict), with unique panel ids in layout order."""
    model = builder.build()
    next_id = 1
    for panel in model.panels or []:
        panel.id_val = next_id
        next_id += 1
        for inner in getattr(panel, "panels", None) or []:
            inner.id_val = next_id
            next_id += 1
    data: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(model))
    return data


__all__ = ["DS", "bars_panel", "finish", "label_variable", "new_dashboard", "organize", "prom",
           "stat_panel", "table_panel", "threshold_at_one", "timeseries_panel", "transformation"]
