"""Workloads as plug-ins, head side: each workload's sweep checks, expansion into pairs, accounting and
report hooks, one folder each (`mlp/`, `llm/`, `serve/`), listed once in `registry.WORKLOADS`.

The head (sweep loading, planning, aggregation, reports, the CLI) never tests a workload's name: it
looks the task's or the sweep's plug-in up in the registry and asks it (`base.WorkloadPlugin`). Adding a
workload is its own folder here (and its node side under `moecluster.agents.workloads`) plus one line
in `registry.py`.

Arrows point one way: head → `registry` → plug-ins → the sweep's leaf modules (schema, pairs, error,
estimate) and `moecluster.spec`; a plug-in never imports a head module that imports the registry.
This package's `__init__` imports nothing, so importing one plug-in does not load the others.
"""
