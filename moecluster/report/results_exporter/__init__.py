"""The head's results exporter: finished tasks, pairs, expert-parallel costs and run progress as
Prometheus series, read from the run stores, for the Grafana Sweep and Results dashboards.

- `collector`: `ResultsCollector`, the series of every run under a runs directory, recomputed
  only when a run's store changes;
- `server`: `serve()`, the process loop (`moecluster dashboards serve-results`).

Why Prometheus series and not a Grafana datasource over the SQLite store: Grafana then needs one
datasource (the Prometheus it already reads the agents from), the Results panels are PromQL the
tests execute against a real Prometheus like every other panel, a Grafana on another machine or
a hosted one works (a SQLite datasource plugin would need the file on Grafana's disk and a
community plugin installed), and the numbers are the report's own: this module exports what
`moecluster.report.aggregate` computes (estimates with their 95 % intervals), never a
recomputation in PromQL.
"""
from moecluster.report.results_exporter.collector import ResultsCollector, RunSeries, run_series
from moecluster.report.results_exporter.server import ResultsExporterConfig, exporting, serve

__all__ = ["ResultsCollector", "ResultsExporterConfig", "RunSeries", "exporting", "run_series", "serve"]
