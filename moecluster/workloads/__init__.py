"""Workloads as plug-ins, one folder each (`mlp/`, `llm/`, `serve/`), their plug-ins listed in
`registry.PLUGINS` and their node sides in `workload.registry()`.

Each folder holds both sides of its workload: the head side (`plugin`: sweep checks, expansion into
pairs, accounting, report labels, behind `base.WorkloadPlugin`) and the node side (models, forms,
`workload`: what a task builds and measures, behind `workload.Workload`, torch imported lazily).
Top-level modules here are shared by the node sides: `forms` (choosing the fastest form by
measurement), `graphs`, `race`, `timing`.

The head never tests a workload's name: it looks the task's or the sweep's plug-in up in the registry
and asks it. Adding a workload is its own folder here plus a line in each of those two tables.
This package's `__init__` imports nothing, so importing one workload does not load the others.
"""
