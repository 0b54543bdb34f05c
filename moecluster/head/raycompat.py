"""The Ray this package needs (>= 2.52: token authentication), and the one door to its private parts.

Ray's token authentication arrived in 2.52; pyproject.toml asks for it, but a Ray installed
by other means (a cluster image, `pip install --no-deps`) may be older. Every use of a private
Ray module goes through `private_raylet()`, which names the installed version and the one
needed in a single line instead of an AttributeError deep inside a sweep, or through a function
here that does without it where Ray changed (`mute_cluster_messages`).
"""
from __future__ import annotations

import importlib
from importlib import metadata
from types import ModuleType

MIN_RAY = (2, 52)
#: what moecluster uses of `ray._raylet` (compiled; its stubs declare none of it)
RAYLET_NAMES = ("Config", "AuthenticationTokenLoader", "AuthenticationMode", "get_authentication_mode",
                "InnerGcsClient")


class RayTooOld(ValueError):
    """The installed Ray lacks what moecluster needs; the message names both versions."""


def ray_version() -> str:
    try:
        return metadata.version("ray")
    except metadata.PackageNotFoundError:
        return "not installed"


def _parse(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def require_ray(feature: str = "token authentication") -> None:
    """RayTooOld unless the installed Ray is at least `MIN_RAY`."""
    version = ray_version()
    if version == "not installed" or _parse(version) < MIN_RAY:
        need = ".".join(map(str, MIN_RAY))
        raise RayTooOld(f"Ray {version} found; moecluster needs Ray >= {need} ({feature}):"
                        f" pip install 'ray>={need},<3'")


def private_raylet() -> ModuleType:
    """`ray._raylet`, checked to hold what moecluster uses; RayTooOld naming the version otherwise."""
    require_ray()
    try:
        raylet = importlib.import_module("ray._raylet")
    except ImportError as exc:
        raise RayTooOld(f"Ray {ray_version()}: its ray._raylet cannot be imported ({exc})") from None
    absent = [n for n in RAYLET_NAMES if not hasattr(raylet, n)]
    if absent:
        raise RayTooOld(f"Ray {ray_version()} has no ray._raylet.{', '.join(absent)}: moecluster needs Ray >= "
                        f"{'.'.join(map(str, MIN_RAY))} with token authentication")
    return raylet


def mute_cluster_messages(mute: bool) -> None:
    """Whether this driver leaves unprinted what Ray's error listener receives from the cluster's processes
    (`(raylet) ...`: a dead raylet's last log lines with its stack trace, worker crashes) — Ray's own switch
    for it, `ray._private.worker._worker_logs_enabled`, which its debugger turns off the same way. The
    messages stay in each node's Ray logs. A Ray without the switch prints them, as before."""
    worker = importlib.import_module("ray._private.worker")
    if hasattr(worker, "_worker_logs_enabled"):
        setattr(worker, "_worker_logs_enabled", not mute)  # noqa: B010 - a module, not a typed object
