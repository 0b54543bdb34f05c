"""The dashboards as Grafana JSON: built, checked against the SDK's own model, written to files."""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from moecluster.report.dashboards import cluster, results, sweep
from moecluster.report.dashboards.sdk import JSONEncoder, dashboard_models, prometheus_models, register_default_plugins

#: uid -> builder, in the order Grafana's dashboard list shows them
BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    cluster.UID: cluster.build,
    sweep.UID: sweep.build,
    results.UID: results.build,
}


class DashboardModelError(ValueError):
    """A dashboard JSON the SDK's model does not read back unchanged; the message names the first difference."""


def _first_difference(a: Any, b: Any, path: str = "$") -> str | None:
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}: only in {'the JSON' if key in a else 'the model'}"
            diff = _first_difference(a[key], b[key], f"{path}.{key}")
            if diff:
                return diff
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            diff = _first_difference(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def check_model(data: Mapping[str, Any]) -> Any:
    """The SDK's `Dashboard` read from `data`; DashboardModelError unless it writes `data` back unchanged,
    every query decodes into the SDK's Prometheus query model and every panel's options into its panel
    plugin's typed options (not the SDK's untyped bags)."""
    register_default_plugins()
    model = dashboard_models.Dashboard.from_json(dict(data))
    again = json.loads(JSONEncoder(sort_keys=True).encode(model))
    diff = _first_difference(json.loads(json.dumps(data)), again)
    if diff:
        raise DashboardModelError(f"dashboard {data.get('uid')!r} does not round-trip through the SDK model: {diff}")
    for panel in model.panels or []:
        if isinstance(panel, dashboard_models.RowPanel):
            continue
        for target in panel.targets or []:
            if not isinstance(target, prometheus_models.Dataquery):
                raise DashboardModelError(f"panel {panel.title!r}: a query the SDK reads as {type(target).__name__}"
                                          f" from {type(target).__module__}, not as a Prometheus query")
        if isinstance(panel.options, dict) and panel.options:
            raise DashboardModelError(f"panel {panel.title!r} ({panel.type_val}): options the SDK does not type")
    return model


def build_all() -> dict[str, dict[str, Any]]:
    """uid -> dashboard JSON, each checked against the SDK's model."""
    out = {}
    for uid, build in BUILDERS.items():
        data = build()
        check_model(data)
        out[uid] = data
    return out


def render(data: Mapping[str, Any]) -> str:
    """The JSON as written to files: stable key order and indentation, so a diff shows what changed."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export(directory: Path) -> list[Path]:
    """Write `<uid>.json` for every dashboard into `directory` (created if needed); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for uid, data in build_all().items():
        path = directory / f"{uid}.json"
        path.write_text(render(data))
        paths.append(path)
    return paths
