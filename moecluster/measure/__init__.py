"""The measurement engine: a session (devices, meter, idle, peaks, drift), the single-GPU pair runner with
timed windows aligned to the energy counter's updates in A B B A order, and the expert-parallel gang
(`parallel`) whose ranks measure in lock-step.

- `session`: what the runner and the gang share (device set-up, idle and peak readings, warm-up
  constants, resolution warnings, failed results);
- `runner`, `pair`: one task's windows, and a pair's tasks in counterbalanced order;
- `observer`: what a running task tells the outside world (the agent's labels, progress);
- `meters`: energy over a window, idle power, peaks, rooflines, the counter's ticker;
- `parallel`: process groups, the all-to-all exchange, the expert-parallel MoE and its gang.
"""
