"""The parts of grafana-foundation-sdk the dashboards use, imported in one place.

The SDK is the `grafana` extra: a missing one is named in one line (`MissingExtra`). Its
generated modules warn on import that the v1 dashboard model has a v2 successor; these
dashboards use v1 (the classic JSON model) on purpose: Grafana 10, 11 and 12 import and
provision it, while the v2 model needs Grafana 12 with its new dashboard APIs switched on.
"""
from __future__ import annotations

import sys
import warnings

from moecluster.spec.extras import MissingExtra, require


def _python_supported() -> bool:
    """The SDK's own floor: it uses enum.StrEnum and typing.Self (a function, so that mypy, which checks
    this package as Python 3.10, still checks the module below)."""
    return sys.version_info >= (3, 11)


if not _python_supported():
    raise MissingExtra(f"Grafana dashboards need Python >= 3.11 (grafana-foundation-sdk 0.0.21 requires it);"
                       f" this is Python {sys.version_info.major}.{sys.version_info.minor}")
require("grafana_foundation_sdk", extra="grafana", feature="Grafana dashboards (moecluster dashboards)")

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"grafana_foundation_sdk\..*")
    warnings.filterwarnings("ignore", message="Prefer using dashboardv2", category=DeprecationWarning)
    from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, table, timeseries
    from grafana_foundation_sdk.builders.common import ReduceDataOptions, VizLegendOptions
    from grafana_foundation_sdk.builders.dashboard import (
        AnnotationQuery,
        Dashboard,
        DashboardLink,
        DatasourceVariable,
        QueryVariable,
        Row,
        ThresholdsConfig,
    )
    from grafana_foundation_sdk.builders.prometheus import Dataquery as PromQuery
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models import common as common_models
    from grafana_foundation_sdk.models import dashboard as dashboard_models
    from grafana_foundation_sdk.models import prometheus as prometheus_models
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat

__all__ = [
    "AnnotationQuery", "Dashboard", "DashboardLink", "DatasourceVariable", "JSONEncoder", "PromQuery",
    "PromQueryFormat", "QueryVariable", "ReduceDataOptions", "Row", "ThresholdsConfig", "VizLegendOptions", "bargauge",
    "common_models", "dashboard_models", "prometheus_models", "register_default_plugins", "stat", "statetimeline",
    "table", "timeseries",
]
