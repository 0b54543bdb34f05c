"""Fixtures for the dashboards tests: the generated dashboards, and Grafana's HTTP API stand-in."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from grafana_api import GrafanaApi


@pytest.fixture(scope="session")
def dashboards() -> dict[str, dict[str, Any]]:
    from moecluster.report.dashboards.export import build_all

    return build_all()


@pytest.fixture
def grafana() -> Iterator[GrafanaApi]:
    with GrafanaApi(token="glsa_stand-in-token-0123456789abcdef") as api:
        yield api
