"""The seed's MLP workloads: a dense MLP and MoEs of MLP experts (naive, sorted, grouped)."""
