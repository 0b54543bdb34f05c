"""Real NVIDIA GPUs through NVML (the `nvidia-ml-py` package, imported as `pynvml`).

Energy comes from the hardware counter (`nvmlDeviceGetTotalEnergyConsumption`, Volta and
newer); power from the instantaneous field (`NVML_FI_DEV_POWER_INSTANT`) where the driver
has it, else `nvmlDeviceGetPowerUsage` (which on recent GPUs is a 1 s average). NVML speaks
milliwatts, millijoules and MHz; every reading here is converted to W, J and Hz. A call the
GPU or driver cannot answer raises `Unsupported`; any other NVML error (a GPU lost mid-run)
raises `DeviceError`, naming the GPU.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import DeviceError, DeviceSet, Gpu, GpuInfo, Unsupported

# pynvml's names of the union member that holds each field value type (NVML_VALUE_TYPE_*)
_VALUE_MEMBERS = {"DOUBLE": "dVal", "UNSIGNED_INT": "uiVal", "UNSIGNED_LONG": "ulVal",
                  "UNSIGNED_LONG_LONG": "ullVal", "SIGNED_LONG_LONG": "sllVal", "SIGNED_INT": "siVal",
                  "UNSIGNED_SHORT": "usVal"}
# NVML return codes that mean "this GPU or driver cannot do that", not "the GPU failed"
_UNSUPPORTED_CODES = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND")


def _text(value: Any) -> str:
    """NVML strings arrive as bytes (older pynvml) or str; NUL padding and stray bytes are dropped."""
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return text.rstrip("\x00").strip()


def _unsupported(nvml: Any, exc: Exception) -> bool:
    """Whether an NVMLError says the call is not supported (rather than that the GPU failed)."""
    codes = {getattr(nvml, name, None) for name in _UNSUPPORTED_CODES} - {None}
    return getattr(exc, "value", None) in codes


def _field_value(nvml: Any, value: Any) -> float | None:
    """The number in one `nvmlFieldValue_t`, read from the union member its value type names."""
    for type_name, member in _VALUE_MEMBERS.items():
        if value.valueType == getattr(nvml, f"NVML_VALUE_TYPE_{type_name}", None):
            return float(getattr(value.value, member))
    return None


class NvmlGpu(Gpu):
    """One GPU by its NVML index; readings in W, J, Hz, °C and bytes."""

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
        self._instant_field: bool | None = None  # None: not tried yet; False: this driver lacks it

    @property
    def info(self) -> GpuInfo:
        return self._info

    def _call(self, fn_name: str, *args: Any) -> Any:
        nvml = self._nvml
        try:
            return getattr(nvml, fn_name)(self._handle, *args)
        except nvml.NVMLError as exc:
            if _unsupported(nvml, exc):
                raise Unsupported(f"GPU {self._info.index} ({self._info.name}): {fn_name} not supported") from exc
            raise DeviceError(f"GPU {self._info.index} ({self._info.uuid}): {fn_name}: {exc}") from exc

    def energy_j(self) -> float:
        return float(self._call("nvmlDeviceGetTotalEnergyConsumption")) / 1e3  # mJ

    def _instant_power_mw(self) -> float | None:
        """Instantaneous power in mW from the field, None where this reading did not give it."""
        nvml = self._nvml
        field_id = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)
        if field_id is None or not hasattr(nvml, "nvmlDeviceGetFieldValues"):
            return None
        try:
            (value,) = nvml.nvmlDeviceGetFieldValues(self._handle, [field_id])
        except nvml.NVMLError:
            return None
        if value.nvmlReturn != nvml.NVML_SUCCESS:
            return None
        return _field_value(nvml, value)

    def power_w(self) -> float:
        """The instantaneous field where the driver has it, else the (averaged) power usage.

        A driver that never gave the field is not asked again; one that gave it once is asked every time
        (a single failed reading falls back for that reading only).
        """
        if self._instant_field is not False:
            milliwatts = self._instant_power_mw()
            if milliwatts is not None:
                self._instant_field = True
                return milliwatts / 1e3
            if self._instant_field is None:
                self._instant_field = False
        return float(self._call("nvmlDeviceGetPowerUsage")) / 1e3  # mW

    def utilization_ratio(self) -> float:
        return float(self._call("nvmlDeviceGetUtilizationRates").gpu) / 100.0  # percent

    def sm_clock_hz(self) -> float:
        return float(self._call("nvmlDeviceGetClockInfo", self._nvml.NVML_CLOCK_SM)) * 1e6  # MHz

    def temperature_c(self) -> float:
        return float(self._call("nvmlDeviceGetTemperature", self._nvml.NVML_TEMPERATURE_GPU))

    def memory_used_bytes(self) -> int:
        return int(self._call("nvmlDeviceGetMemoryInfo").used)

    def power_limit_w(self) -> float:
        return float(self._call("nvmlDeviceGetEnforcedPowerLimit")) / 1e3  # mW


class NvmlDevices(DeviceSet):
    """All GPUs NVML sees on this node (NVML ignores CUDA_VISIBLE_DEVICES: map by UUID)."""

    kind = "nvml"

    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise DeviceError("pynvml is not installed (pip install nvidia-ml-py)") from exc
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise DeviceError(f"NVML could not start: {exc}") from exc
        self._open = True
        try:
            count = pynvml.nvmlDeviceGetCount()
            self._gpus = [NvmlGpu(pynvml, i) for i in range(count)]
        except (pynvml.NVMLError, DeviceError) as exc:
            self.close()  # NVML was started: release it before giving up
            raise DeviceError(f"NVML could not list the GPUs: {exc}") from exc

    @property
    def gpus(self) -> Sequence[NvmlGpu]:
        return self._gpus

    def driver_version(self) -> str | None:
        """The driver's version, None where NVML cannot tell."""
        try:
            return _text(self._nvml.nvmlSystemGetDriverVersion())
        except self._nvml.NVMLError:
            return None

    def close(self) -> None:
        """Shut NVML down once; a failing shutdown is ignored (the process is letting go of it anyway)."""
        if self._open:
            self._open = False
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
