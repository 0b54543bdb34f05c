"""Ray's failure detection: what moecluster sets, what it asks of a joined cluster, what it warns about."""
from __future__ import annotations

import json

from moecluster.node.raycfg import FAILURE_DETECTION_NAMES, ray_settings
from moecluster.head.schedule.raysettings import FAST_FAILURE_DETECTION, NODE_LOSS_TARGET_S, \
    check_cluster, check_probed, connection_loss_s, node_loss_s, ray_start_hint

RAY_DEFAULTS = {"health_check_initial_delay_ms": 5000, "health_check_period_ms": 3000,
                "health_check_timeout_ms": 10000, "health_check_failure_threshold": 5,
                "grpc_client_keepalive_time_ms": 300000, "grpc_client_keepalive_timeout_ms": 120000}
FAST = {**RAY_DEFAULTS, **FAST_FAILURE_DETECTION}


def test_every_setting_is_one_this_ray_knows_and_reads() -> None:
    assert set(FAST_FAILURE_DETECTION) <= set(FAILURE_DETECTION_NAMES)
    assert set(ray_settings()) == set(FAILURE_DETECTION_NAMES)  # each exposed by the installed Ray


def test_the_settings_notice_a_partition_within_the_target_and_ray_defaults_do_not() -> None:
    assert node_loss_s(FAST) <= NODE_LOSS_TARGET_S / 2 and connection_loss_s(FAST) <= NODE_LOSS_TARGET_S / 2
    assert node_loss_s(RAY_DEFAULTS) == 65.0 and connection_loss_s(RAY_DEFAULTS) == 420.0


def test_the_ray_start_hint_carries_the_settings_as_json() -> None:
    hint = ray_start_hint()
    assert hint.startswith("ray start --head --system-config='")
    assert json.loads(hint.split("'")[1]) == FAST_FAILURE_DETECTION


def test_a_cluster_with_the_settings_gives_no_warning() -> None:
    assert check_cluster({"head": FAST, "w1": FAST}, "head", FAST) == []


def test_a_cluster_with_ray_defaults_is_named_with_its_numbers_and_the_fix() -> None:
    (line,) = check_cluster({"head": RAY_DEFAULTS, "w1": RAY_DEFAULTS}, "head", RAY_DEFAULTS)
    assert "after about 65 s" in line and "health_check_period_ms=3000" in line and ray_start_hint() in line


def test_a_driver_pinging_faster_than_the_nodes_allow_is_warned_about() -> None:
    warnings = check_cluster({"head": FAST, "w1": RAY_DEFAULTS}, "head", FAST)
    assert len(warnings) == 1 and "w1" in warnings[0] and "too_many_pings" in warnings[0]


def test_settings_that_cannot_be_read_are_said_so() -> None:
    (line,) = check_cluster({"head": "no answer within 60 s"}, "head", FAST)
    assert line.startswith("cannot check how fast this cluster notices a lost node (no answer within 60 s)")
    probe = {"nodes": [{"name": "h", "is_head": True, "facts": {"error": "TimeoutError: x"}},
                       {"name": "w", "is_head": False, "facts": {"ray_config": FAST}}]}
    first = check_probed(probe)[0]
    assert first.startswith("cannot check how fast this cluster notices a lost node (TimeoutError: x)")


def test_the_cluster_docs_ask_ray_start_for_exactly_these_settings() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "docs" / "cluster.md").read_text()
    start = readme.index("ray start --head --system-config='") + len("ray start --head --system-config='")
    assert json.loads(readme[start:readme.index("'", start)]) == FAST_FAILURE_DETECTION
