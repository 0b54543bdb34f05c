"""moecluster: when is a Mixture-of-Experts model more energy-efficient than a dense one, measured.

`moecluster.cli` is the command line; `head` plans, schedules and stores runs; `report` aggregates and
shows them (tables, exports, the results exporter, Grafana dashboards); `node` is what runs on a node
(Ray's task bodies and the Prometheus agent), `measure` the engine that measures a task, `workloads` the
models (one folder each), `devices` the GPUs, and `spec` the contract they all share. Node code never
imports head code (docs/architecture.md).
"""
