"""The Ray settings a process on this node runs with (its environment and the cluster's system
config, as Ray resolved them): what the head checks about how fast a lost node is noticed."""
from __future__ import annotations

import importlib

# RayConfig names (Ray's `ray_config_def.h`) that decide how soon a lost or partitioned node is noticed.
FAILURE_DETECTION_NAMES = ("health_check_initial_delay_ms", "health_check_period_ms", "health_check_timeout_ms",
                           "health_check_failure_threshold", "grpc_client_keepalive_time_ms",
                           "grpc_client_keepalive_timeout_ms")


def ray_settings(names: tuple[str, ...] = FAILURE_DETECTION_NAMES) -> dict[str, int]:
    """Each of `names` as this process's Ray sees it (those this Ray version does not expose are left out)."""
    config = importlib.import_module("ray._raylet").Config  # compiled: no attributes for a type checker to see
    return {name: int(getattr(config, name)()) for name in names if hasattr(config, name)}
