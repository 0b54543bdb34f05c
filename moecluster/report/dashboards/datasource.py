"""The Prometheus datasource the dashboards default to, as Grafana's API and provisioning describe it."""
from __future__ import annotations

from typing import Any

from moecluster.report.dashboards import DATASOURCE_NAME, DATASOURCE_UID

DEFAULT_PROMETHEUS_URL = "http://localhost:9090"
DEFAULT_SCRAPE_INTERVAL = "15s"  # deploy/prometheus/prometheus.yml's scrape_interval


def prometheus_datasource(url: str = DEFAULT_PROMETHEUS_URL,
                          scrape_interval: str = DEFAULT_SCRAPE_INTERVAL) -> dict[str, Any]:
    """The datasource model (`POST /api/datasources` body). `url` is where Grafana's *server* reaches
    Prometheus; `scrape_interval` becomes `timeInterval`, from which Grafana derives `$__rate_interval`
    (at least four scrapes), so rates never span fewer than two samples."""
    return {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": "prometheus",
        "access": "proxy",
        "url": url,
        "isDefault": False,
        "jsonData": {"timeInterval": scrape_interval, "httpMethod": "POST"},
    }
