"""Every PromQL expression of the generated dashboards, and Grafana's variable expansion for running
them against a real Prometheus."""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$")
METRIC = re.compile(r"\bmoecluster_[a-zA-Z0-9_]+\b")
VARIABLE = re.compile(r"\$(?:\{(?P<braced>[a-zA-Z_][a-zA-Z0-9_]*)\}|(?P<plain>[a-zA-Z_][a-zA-Z0-9_]*))")
REGEX_SPECIAL = set(r".+*?()|[]{}^$\\")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str
    instant: bool

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}: {self.expr}"


@dataclass(frozen=True)
class VariableQuery:
    dashboard: str
    name: str
    selector: str
    label: str


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    out = []
    for p in _panels(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            out.append(PanelQuery(dashboard["uid"], p["title"], t["refId"], t["expr"], bool(t.get("instant"))))
    return out


def variable_queries(dashboard: Mapping[str, Any]) -> list[VariableQuery]:
    out = []
    for v in dashboard["templating"]["list"]:
        if v["type"] != "query":
            continue
        query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = LABEL_VALUES.match(query)
        assert m, f"{dashboard['uid']}: variable {v['name']}: not a label_values() query: {query}"
        out.append(VariableQuery(dashboard["uid"], v["name"], m["selector"].strip(), m["label"]))
    return out


def metrics_named(expr: str) -> set[str]:
    return set(METRIC.findall(expr))


def regex_value(value: str) -> str:
    """`value` as a regex inside a PromQL string literal (Grafana escapes a variable's value so)."""
    return "".join("\\\\" + ch if ch in REGEX_SPECIAL else ch for ch in value)


def expand(expr: str, values: Mapping[str, str], *, rate_interval: str, range_: str, interval: str) -> str:
    """`expr` as Grafana sends it: its built-in interval variables and the dashboard's variables
    replaced (`values[name]` is a regex already: `.*` for All, or `regex_value(v)`)."""
    expr = (expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
            .replace("$__interval", interval))

    def sub(m: re.Match[str]) -> str:
        name = m["braced"] or m["plain"]
        if name not in values:
            raise KeyError(f"variable ${name} has no value in {expr}")
        return values[name]

    return VARIABLE.sub(sub, expr)
