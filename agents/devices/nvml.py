"""Real NVIDIA GPUs through NVML (the `nvidia-ml-py` package, imported as `pynvml`).

Energy comes from the hardware counter (`nvmlDeviceGetTotalEnergyConsumption`, Volta and
newer); power from the instantaneous field (`NVML_FI_DEV_POWER_INSTANT`) where the driver
has it, else `nvmlDeviceGetPowerUsage` (which on recent GPUs is a 1 s average).
"""
from __future__ import annotations

from typing import Any, Sequence

from .base import DeviceError, DeviceSet, Gpu, GpuInfo, Unsupported


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlGpu(Gpu):
    def __init__(self, nvml: Any, index: int) -> None:
        self._nvml = nvml
        try:
            self._handle = nvml.nvmlDeviceGetHandleByIndex(index)
            self._info = GpuInfo(
                index=index,
                uuid=_text(nvml.nvmlDeviceGetUUID(self._handle)),
                name=_text(nvml.nvmlDeviceGetName(self._handle)),
            )
        except nvml.NVMLError as exc:
            raise DeviceError(f"NVML GPU {index}: {exc}") from exc
        self._instant_field: bool | None = None

    @property
    def info(self) -> GpuInfo:
        return self._info

    def _call(self, fn_name: str, *args: Any) -> Any:
        nvml = self._nvml
        try:
            return getattr(nvml, fn_name)(self._handle, *args)
        except nvml.NVMLError_NotSupported as exc:  # type: ignore[attr-defined]
            raise Unsupported(f"GPU {self._info.index} ({self._info.name}): {fn_name} not supported") from exc
        except nvml.NVMLError as exc:
            raise DeviceError(f"GPU {self._info.index} ({self._info.uuid}): {fn_name}: {exc}") from exc

    def energy_j(self) -> float:
        return self._call("nvmlDeviceGetTotalEnergyConsumption") / 1e3

    def power_w(self) -> float:
        nvml = self._nvml
        field = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)
        if field is not None and self._instant_field is not False:
            try:
                (value,) = nvml.nvmlDeviceGetFieldValues(self._handle, [field])
                if value.nvmlReturn == nvml.NVML_SUCCESS:
                    self._instant_field = True
                    return value.value.uiVal / 1e3
            except nvml.NVMLError:
                pass
            self._instant_field = False
        return self._call("nvmlDeviceGetPowerUsage") / 1e3

    def utilization_ratio(self) -> float:
        return self._call("nvmlDeviceGetUtilizationRates").gpu / 100.0

    def sm_clock_hz(self) -> float:
        return self._call("nvmlDeviceGetClockInfo", self._nvml.NVML_CLOCK_SM) * 1e6

    def temperature_c(self) -> float:
        return float(self._call("nvmlDeviceGetTemperature", self._nvml.NVML_TEMPERATURE_GPU))

    def memory_used_bytes(self) -> int:
        return int(self._call("nvmlDeviceGetMemoryInfo").used)

    def power_limit_w(self) -> float:
        return self._call("nvmlDeviceGetEnforcedPowerLimit") / 1e3


class NvmlDevices(DeviceSet):
    """All GPUs NVML sees on this node (NVML ignores CUDA_VISIBLE_DEVICES: map by UUID)."""

    kind = "nvml"

    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError as exc:  # pragma: no cover - nvidia-ml-py is a dependency
            raise DeviceError("pynvml is not installed (pip install nvidia-ml-py)") from exc
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise DeviceError(f"NVML could not start: {exc}") from exc
        self._open = True
        count = pynvml.nvmlDeviceGetCount()
        self._gpus = [NvmlGpu(pynvml, i) for i in range(count)]

    @property
    def gpus(self) -> Sequence[NvmlGpu]:
        return self._gpus

    def driver_version(self) -> str | None:
        return _text(self._nvml.nvmlSystemGetDriverVersion())

    def close(self) -> None:
        if self._open:
            self._open = False
            self._nvml.nvmlShutdown()
