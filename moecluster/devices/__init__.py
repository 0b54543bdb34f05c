"""GPU devices behind one interface: `open_devices("nvml" | "fake" | "none")`."""
from __future__ import annotations

from typing import Literal

from moecluster.devices.base import DeviceError, DeviceSet, Gpu, GpuInfo, Unsupported
from moecluster.devices.fake import FakeDevices, FakeGpu
from moecluster.devices.none import NoDevices

DeviceKind = Literal["nvml", "fake", "none", "auto"]


def open_devices(kind: DeviceKind = "auto", **fake_kwargs: object) -> DeviceSet:
    """Open the node's GPUs.

    `auto` tries NVML and falls back to `none` with NVML's own error as the reason, so
    a CPU-only node reports energy as unavailable instead of failing.
    """
    if kind == "fake":
        return FakeDevices(**fake_kwargs)  # type: ignore[arg-type]
    if kind == "none":
        return NoDevices()
    if kind not in ("nvml", "auto"):
        raise ValueError(f"unknown device kind {kind!r} (nvml, fake, none, auto)")
    from moecluster.devices.nvml import NvmlDevices

    try:
        return NvmlDevices()
    except DeviceError as exc:
        if kind == "nvml":
            raise
        return NoDevices(reason=str(exc))


__all__ = [
    "DeviceError", "DeviceKind", "DeviceSet", "FakeDevices", "FakeGpu", "Gpu", "GpuInfo",
    "NoDevices", "Unsupported", "open_devices",
]
