"""Everything said about results: `aggregate` (intervals, break-even, normalisations), terminal tables
(rich), exports (CSV, Parquet, JSON), a self-contained HTML page and plots, the results exporter for
Prometheus (`results_exporter`) and the Grafana dashboards as code (`dashboards`).

The tables and pages only format what `aggregate` computed. This `__init__` imports nothing, so the
results exporter and the dashboards do not load the report's tables.
"""
