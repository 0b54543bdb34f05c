"""One cluster of separate hosts (network namespaces) for the fault scenarios, or a clear skip."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from netns import NetnsCluster, unavailable

INJECT = Path(__file__).resolve().parent / "inject"


@pytest.fixture(scope="module")
def hosts() -> Iterator[NetnsCluster]:
    """Three hosts: the head (no GPUs; the driver runs there) and two workers with two fake GPUs
    and one CPU each. Ray on every host has moecluster's failure-detection settings (the head's
    system config). The workers' task labels go to `<root>/labels-h<i>`; worker 2 can be armed
    to put one process on the wrong GPUs (`inject/sitecustomize.py`, file `<root>/stale-cuda`)."""
    why = unavailable()
    if why is not None:
        pytest.skip(f"separate hosts need network namespaces: {why}")
    from moecluster.head.schedule.raysettings import FAST_FAILURE_DETECTION

    cluster = NetnsCluster(3, gpus=2, cpus=1, system_config=dict(FAST_FAILURE_DETECTION))
    cluster.worker_env = {i: {"MOECLUSTER_STATE_DIR": str(cluster.root / f"labels-h{i}")} for i in (1, 2)}
    cluster.worker_env[2].update(PYTHONPATH=str(INJECT), MOECLUSTER_TEST_STALE_CUDA=str(cluster.root / "stale-cuda"))
    try:
        yield cluster.build()
    finally:
        cluster.close()
