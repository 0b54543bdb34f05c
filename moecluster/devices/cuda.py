"""A CUDA device's UUID as NVML spells it, so the runner, the device locks and the GPU binding
check compare the same strings (torch imported only when asked)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

UUID_PREFIXES = ("GPU-", "MIG-")  # NVML's prefixes; torch's device properties give the bare UUID


def cuda_uuid(device: torch.device | int) -> str:
    """NVML's form of the UUID of CUDA `device` ('GPU-…', or 'MIG-…' for a MIG instance)."""
    import torch

    uuid = str(torch.cuda.get_device_properties(device).uuid)
    return uuid if uuid.startswith(UUID_PREFIXES) else f"GPU-{uuid}"
