"""The node side's bodies as Ray remote functions and actor classes (the head only wraps them).

The bodies are plain functions and classes of `moecluster.node`, so a node process
unpickles references into `moecluster.node` and `moecluster.spec` only, never into head modules.

- `gpu_pair_task`: a single-GPU pair. `max_calls=1`: every pair gets a fresh worker process.
  Ray sets `CUDA_VISIBLE_DEVICES` per task, but a process that has initialised CUDA keeps the
  devices it saw first; with `num_gpus` given only through `.options()` Ray leaves `max_calls`
  unlimited, so a reused worker would measure the previous pair's GPU. (The body also checks,
  at its start, that its process computes on exactly Ray's GPUs.)
- `cpu_pair_task`: a pair on CPUs only (no CUDA state to leak; workers are reused).
- `GangRankActor`: one rank of an expert-parallel gang (one actor, one GPU, one call at a time).

The pair body is a generator: Ray streams its start report to the head before its results.
"""
from __future__ import annotations

import ray
from moecluster.node.gang import GangRank
from moecluster.node.task import pair_body

gpu_pair_task = ray.remote(max_calls=1)(pair_body)
cpu_pair_task = ray.remote(pair_body)
GangRankActor = ray.remote(GangRank)  # options at creation: one call at a time, no restarts (see gang.py)
