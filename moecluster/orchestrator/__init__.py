"""Head side of moecluster: the CLI, sweeps, scheduling on Ray, the result store, aggregation."""
