"""Optional dependencies ("extras"): import one where a feature needs it, or say in one line
which extra installs it.

The required set is what every node of a cluster installs; the rest is optional and named
here, so `moecluster[report]` etc. in the README and the error a user meets agree:

| extra       | installs                      | for                                             |
| ----------- | ----------------------------- | ----------------------------------------------- |
| `dashboard` | ray[default]                  | Ray's dashboard (`submit --dashboard`)          |
| `report`    | pyarrow, matplotlib           | `report --format parquet`, `report --html`      |
| `grafana`   | grafana-foundation-sdk 0.0.21 | `dashboards export`, `dashboards push`          |
| `llm`       | transformers                  | transformer LLM workloads                       |
| `serving`   | httpx; transformers' server   | served models (`workload: serve`), `transformers serve` |

Node-side code uses it too (LLM workloads), so it lives on the node side; the head imports it.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

#: extra -> the distributions it installs (as the README and pyproject.toml name them)
EXTRAS: dict[str, str] = {
    "dashboard": "ray[default]",
    "report": "pyarrow, matplotlib",
    "grafana": "grafana-foundation-sdk==0.0.21",
    "llm": "transformers",
    "serving": "httpx, and transformers' own server (fastapi, uvicorn, openai, accelerate)",
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the feature and the extra."""


def missing_message(feature: str, extra: str, module: str) -> str:
    """One line: what needs what, and the pip command that installs it."""
    return (f"{feature} needs {module!s} (not installed): pip install 'moecluster[{extra}]'"
            f" (the {extra!r} extra: {EXTRAS[extra]})")


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """`module` imported, or MissingExtra naming `feature` and `extra` when it is not installed.

    Only a missing module is turned into MissingExtra; an installed module that fails to import
    (a broken install) keeps its own error.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r} ({', '.join(EXTRAS)})")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not (module == missing or module.startswith(missing + ".")):
            raise  # the module is there, one of *its* imports is not: a broken install, not an extra
        raise MissingExtra(missing_message(feature, extra, missing.split(".")[0] or module)) from None


#: workload -> (the module its tasks import, the extra that installs it); absent: no extra needed
WORKLOAD_EXTRAS: dict[str, tuple[str, str]] = {"llm": ("transformers", "llm"), "serve": ("httpx", "serving")}


def require_installed(module: str, *, extra: str, feature: str) -> None:
    """MissingExtra naming `feature` and `extra` unless `module` is installed; nothing is imported.

    For a check before anything starts, where importing the module itself would cost seconds
    (transformers) and is left to the code that uses it.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r} ({', '.join(EXTRAS)})")
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(missing_message(feature, extra, module))


def require_workload(workload: str, *, feature: str) -> None:
    """MissingExtra when `workload`'s tasks need an extra that is not installed here."""
    needed = WORKLOAD_EXTRAS.get(workload)
    if needed is not None:
        module, extra = needed
        require_installed(module, extra=extra, feature=feature)


def ray_dashboard_available() -> bool:
    """Whether Ray's dashboard can start: its optional dependencies (ray[default]) are installed.

    `ray.dashboard.optional_deps` is the module Ray itself imports to decide this.
    """
    try:
        importlib.import_module("ray.dashboard.optional_deps")
    except ImportError:
        return False
    return True


def require_ray_dashboard(feature: str = "Ray's dashboard (--dashboard)") -> None:
    """MissingExtra naming the `dashboard` extra when ray[default] is not installed."""
    if not ray_dashboard_available():
        raise MissingExtra(missing_message(feature, "dashboard", "ray[default]"))
