"""A real multi-node Ray cluster on this machine whose nodes advertise fake GPUs (a test double,
for the tests and `benchmarks/orchestration_overhead.py`; sweeps on it use `device: cpu`,
`meter: fake`). Loaded as the module `moecluster_fakecluster` (tests/conftest.py).

Each node gets `num_gpus` fake GPUs and a GPU model (`accelerator_type:<model>` resource and
the `ray.io/accelerator-type` label, as Ray sets them on real GPU nodes). Token auth is on:
the cluster and every client read a fresh random token from `RAY_AUTH_TOKEN`.
"""
from __future__ import annotations

import secrets
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from moecluster.head.raycompat import private_raylet
from moecluster.head.schedule.envvars import scoped_environ
from moecluster.head.schedule.raysettings import FAST_FAILURE_DETECTION

# Node deaths noticed within seconds, as on a cluster set up as the README says; idle workers
# kept (up to 4 per node) rather than killed after a second, so CPU tasks holding a fraction of
# a node's one CPU do not pay a fresh worker (Python, torch, moecluster imports) each time.
SYSTEM_CONFIG = {**FAST_FAILURE_DETECTION, "num_workers_soft_limit": 4}


def node_args(model: str, gpus: int = 2, cpus: int = 1) -> dict:
    # An integer: a node started with num_cpus=2.0 never registered on the GPU machine.
    return {"num_cpus": int(cpus), "num_gpus": gpus, "resources": {f"accelerator_type:{model}": 1},
            "labels": {"ray.io/accelerator-type": model}}


@contextmanager
def auth_env() -> Iterator[dict[str, str]]:
    """RAY_AUTH_MODE=token with a fresh token, for this process (Ray's cached config refreshed)
    and its children; restored afterwards."""
    # private Ray (>= 2.52) classes that its stubs do not declare
    raylet = private_raylet()
    Config, AuthenticationTokenLoader = raylet.Config, raylet.AuthenticationTokenLoader

    def refresh() -> None:  # Ray caches both the mode and the token per process
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()

    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    try:
        with scoped_environ(env):
            refresh()
            yield env
    finally:
        refresh()


@contextmanager
def fake_gpu_cluster(models: Sequence[str] = ("FAKE-A", "FAKE-A", "FAKE-B"), gpus: int = 2,
                     cpus: int = 1) -> Iterator[Any]:
    """A started `ray.cluster_utils.Cluster`, one node per entry of `models` (the first is the
    head), each with `gpus` fake GPUs of that model and `cpus` CPUs. Node deaths are noticed
    within seconds (`raysettings.FAST_FAILURE_DETECTION`)."""
    from ray.cluster_utils import Cluster

    head = {**node_args(models[0], gpus, cpus), "include_dashboard": False, "_system_config": SYSTEM_CONFIG}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        for model in models[1:]:
            cluster.add_node(**node_args(model, gpus, cpus))
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
