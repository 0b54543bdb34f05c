"""Run a function on N ranks, each in its own spawned process, for the gang tests (gloo on the CPU).

`run_ranks(fn, n, *args)` starts `fn(ctx, *args)` on ranks 0..n-1 with a `GangContext` on a free
local port, and returns their results in rank order. A rank that raises fails the call with its
traceback; ranks that do not finish within `timeout_s` are killed and the call fails. Functions
must be importable (module level) for spawned processes to find them.
"""
from __future__ import annotations

import multiprocessing as mp
import queue
import traceback
from collections.abc import Callable
from typing import Any

from moecluster.measure.parallel.group import GangContext, free_port

GANG_TIMEOUT_S = 20.0  # collectives give up after this: a stuck test fails instead of hanging


def _entry(fn: Callable[..., Any], ctx: GangContext, out: Any, args: tuple[Any, ...]) -> None:
    import torch

    torch.set_num_threads(1)  # the machine's cores are shared: one thread per rank
    try:
        out.put((ctx.rank, True, fn(ctx, *args)))
    except BaseException:  # noqa: BLE001 - report everything to the parent
        out.put((ctx.rank, False, traceback.format_exc()))


def run_ranks(fn: Callable[..., Any], world_size: int, *args: Any, timeout_s: float = 90.0,
              gang_timeout_s: float = GANG_TIMEOUT_S) -> list[Any]:
    """`fn(ctx, *args)` on every rank of a gloo gang of `world_size` processes; results in rank order."""
    spawn = mp.get_context("spawn")
    out = spawn.Queue()
    port = free_port()
    procs = []
    for rank in range(world_size):
        ctx = GangContext(rank=rank, world_size=world_size, master_addr="127.0.0.1", master_port=port,
                          backend="gloo", device="cpu", local_rank=rank, timeout_s=gang_timeout_s)
        procs.append(spawn.Process(target=_entry, args=(fn, ctx, out, args), daemon=True))
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    failures: list[str] = []
    try:
        for _ in range(world_size):
            rank, ok, value = out.get(timeout=timeout_s)
            if ok:
                results[rank] = value
            else:
                failures.append(f"rank {rank}:\n{value}")
    except queue.Empty:
        failures.append(f"ranks {sorted(set(range(world_size)) - set(results))} did not finish in {timeout_s} s")
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    if failures:
        raise AssertionError("\n".join(failures))
    return [results[r] for r in range(world_size)]
