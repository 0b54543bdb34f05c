"""The seed's MLPs: a dense MLP and MoEs of MLP experts (naive, sorted, grouped); `plugin.MlpWorkload`
is the head side, `workload` the node side."""
