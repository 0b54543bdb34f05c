"""moecluster: when is a Mixture-of-Experts model more energy-efficient than a dense one, measured.

`moecluster.node` runs on the nodes (workloads, meters, the Prometheus agent), `moecluster.head`
on the head (sweeps, scheduling, the store, reports, the CLI), `moecluster.report.dashboards` builds the Grafana
dashboards; node code never imports head code (docs/architecture.md).
"""
