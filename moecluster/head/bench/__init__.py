"""The `moecluster bench` use case: one dense/MoE pair measured on this machine, without Ray.

One module per workload builds the pair's tasks from the options and refuses bad input
(`InputError`, one line naming the culprit) before anything is built: `mlp`, `llm`, `serve`. `pair`
runs the tasks in counterbalanced windows holding the devices, as a scheduled pair does. What the
results say (their ratios and intervals) is the report's (`report.aggregate.bench`); the CLI prints.
"""
