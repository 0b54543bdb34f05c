"""Workloads as plug-ins, one folder each (`mlp/`, `llm/`, `serve/`), listed once in `registry.PLUGINS`.

Each folder holds both sides of its workload: the head side (`plugin`: sweep checks, expansion into
pairs, accounting, report labels, behind `base.WorkloadPlugin`) and the node side (models, forms,
`workload`: what a task builds and measures, behind `workload.Workload`, torch imported lazily).
Top-level modules here are shared by the node sides: `forms` (choosing the fastest form by
measurement), `graphs`, `race`, `timing`.

The head never tests a workload's name: it looks the task's or the sweep's plug-in up in the registry
and asks it. Adding a workload is its own folder here plus one line in `registry.py`.
This package's `__init__` imports nothing, so importing one workload does not load the others.
"""
