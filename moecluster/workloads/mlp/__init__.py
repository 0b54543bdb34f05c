"""The seed's MLPs as a workload plug-in (`plugin.MlpWorkload`)."""
