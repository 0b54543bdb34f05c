"""Workloads: the models a task measures, behind one interface (see `base.Workload`)."""
