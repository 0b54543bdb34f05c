"""Served models as a workload plug-in (`plugin.ServeWorkload`)."""
