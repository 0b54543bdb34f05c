"""What a run ran on: software versions, GPUs, the project's git revision, the Ray cluster.

Written once per run to `environment.json`. The head's own facts come from this process;
each node's (GPU names and UUIDs, driver, torch and CUDA versions) from a tiny zero-resource
probe task pinned to the node (see `schedule.cluster.probe_nodes`), so a mixed cluster is
described as it is, not as the head sees itself.
"""
from __future__ import annotations

import platform
import socket
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from moecluster.devices import open_devices
from moecluster.node.raycfg import ray_settings


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_revision(path: Path | None = None) -> dict[str, Any] | None:
    """The commit and dirtiness of the project checkout holding this package (None if not a checkout)."""
    here = path or Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        revision = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"revision": revision, "dirty": dirty}


def local_facts() -> dict[str, Any]:
    """This machine: host, Python, torch/CUDA/driver versions and its GPUs (by NVML, if any)."""
    import torch

    facts: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {"torch": torch.__version__, "cuda": torch.version.cuda, "moecluster": _version("moecluster"),
                     "ray": _version("ray"), "nvidia-ml-py": _version("nvidia-ml-py")},
        "ray_config": ray_settings(),  # how fast Ray notices a lost node, as this machine's processes see it
    }
    with open_devices("auto") as devices:
        facts["versions"]["driver"] = devices.driver_version()
        facts["gpus"] = [{"index": g.info.index, "uuid": g.info.uuid, "name": g.info.name} for g in devices.gpus]
        if devices.unavailable_reason:
            facts["gpus_unavailable_reason"] = devices.unavailable_reason
    return facts


def collect_environment(cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's environment: the head's facts, the git revision and `cluster` (nodes, GPUs)."""
    return {
        "collected_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "head": local_facts(),
        "git": git_revision(),
        "cluster": cluster,
    }
