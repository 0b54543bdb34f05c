"""One GPU device interface for every layer above it (meters, runner, agent exporter).

Three implementations sit beside this file: `nvml` (real NVIDIA GPUs), `fake` (a
deterministic power model, the test double) and `none` (no GPU: every reading is
unavailable, with the reason). Values carry their unit in their name.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence


class DeviceError(RuntimeError):
    """A reading failed on one GPU (the GPU may be faulty); other GPUs are unaffected."""


class Unsupported(DeviceError):
    """The GPU (or the backend) cannot give this reading at all, e.g. no energy counter."""


@dataclass(frozen=True)
class GpuInfo:
    """Identity of one GPU as the node sees it (index in the backend's own numbering)."""

    index: int
    uuid: str
    name: str
    serial: str = ""  # the board's serial number where the backend reads one ("" where it cannot)


class Gpu(ABC):
    """One GPU. Every reading may raise `DeviceError` (or `Unsupported`)."""

    @property
    @abstractmethod
    def info(self) -> GpuInfo: ...

    @abstractmethod
    def energy_j(self) -> float:
        """Monotonic hardware energy counter, in joules since an arbitrary origin."""

    @abstractmethod
    def power_w(self) -> float:
        """Instantaneous (driver-averaged) board power in watts."""

    @abstractmethod
    def utilization_ratio(self) -> float:
        """Fraction of the last sample period during which a kernel ran (0..1)."""

    @abstractmethod
    def sm_clock_hz(self) -> float: ...

    @abstractmethod
    def temperature_c(self) -> float: ...

    @abstractmethod
    def memory_used_bytes(self) -> int: ...

    @abstractmethod
    def power_limit_w(self) -> float: ...

    def process_ids(self) -> tuple[int, ...] | None:
        """The ids of the processes computing on this GPU now (None where the device cannot tell: fake ones)."""
        return None

    @property
    def power_note(self) -> str | None:
        """What this GPU's power readings were, where not what `power_w` promises (e.g. a fallback
        to another NVML reading); None when there is nothing to say."""
        return None


class DeviceSet(ABC):
    """The GPUs of one node, from one backend. Use as a context manager to release it."""

    kind: str = "abstract"

    @property
    @abstractmethod
    def gpus(self) -> Sequence[Gpu]: ...

    @property
    def unavailable_reason(self) -> str | None:
        """Why this set cannot measure energy at all (None when it can try)."""
        return None

    def driver_version(self) -> str | None:
        return None

    def by_uuid(self, uuid: str) -> Gpu:
        for gpu in self.gpus:
            if gpu.info.uuid == uuid:
                return gpu
        raise DeviceError(f"no GPU with UUID {uuid} on this node ({self.kind} devices)")

    def close(self) -> None:
        """Release the backend (NVML shutdown); idempotent. Nothing to release by default."""
        return None

    def __enter__(self) -> "DeviceSet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
