"""Expert parallelism on a gang of N ranks (node side; no Ray here).

- `group`: who a rank is (`GangContext`), the process group's set-up and teardown on every exit
  path (`process_group`), the few collectives the gang agrees with, and a failure side channel;
- `ep_moe`: the expert-parallel MoE (router replicated, experts split over ranks, tokens
  dispatched and combined with `all_to_all_single`), the same function as the one-device `MoEMLP`;
- `phases`: per-phase step timing (CUDA events on a GPU, the host clock on a CPU) and bytes sent;
- `alltoall`: the raw `all_to_all_single` at the task's message sizes, and its energy;
- `lockstep`: warm-up and step counts that every rank agrees on, so windows hold the same steps;
- `tasks`: a task built for this rank (MoE expert parallel, dense data parallel);
- `merge`: per-rank readings into one gang record (pure functions);
- `roofline`: the gang's roofline over the N GPUs' summed peaks;
- `gang`: `run_gang_rank`, the body each rank runs.
"""
