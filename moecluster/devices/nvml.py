"""Real NVIDIA GPUs through NVML (the `nvidia-ml-py` package, imported as `pynvml`).

Energy comes from the hardware counter (`nvmlDeviceGetTotalEnergyConsumption`, Volta and
newer); power from the instantaneous field (`NVML_FI_DEV_POWER_INSTANT`) where the driver
has it, else `nvmlDeviceGetPowerUsage` (which on recent GPUs is a 1 s average). Only the
driver's own answer that the field is not supported switches a GPU to the average for good (and
is logged, and `NvmlGpu.power_note` says so); a read that fails otherwise falls back for that
reading alone, is counted, and the field is asked again next time. NVML speaks
milliwatts, millijoules and MHz; every reading here is converted to W, J and Hz. A call the
GPU or driver cannot answer raises `Unsupported`; any other NVML error (a GPU lost mid-run)
raises `DeviceError`, naming the GPU.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from moecluster.devices.base import DeviceError, DeviceSet, Gpu, GpuInfo, Unsupported

# pynvml's names of the union member that holds each field value type (NVML_VALUE_TYPE_*)
_VALUE_MEMBERS = {"DOUBLE": "dVal", "UNSIGNED_INT": "uiVal", "UNSIGNED_LONG": "ulVal",
                  "UNSIGNED_LONG_LONG": "ullVal", "SIGNED_LONG_LONG": "sllVal", "SIGNED_INT": "siVal",
                  "UNSIGNED_SHORT": "usVal"}
# NVML return codes that mean "this GPU or driver cannot do that", not "the GPU failed"
_UNSUPPORTED_CODES = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND")
log = logging.getLogger(__name__)


def _text(value: Any) -> str:
    """NVML strings arrive as bytes (older pynvml) or str; NUL padding and stray bytes are dropped."""
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return text.rstrip("\x00").strip()


def _unsupported_code(nvml: Any, code: object) -> bool:
    """Whether an NVML return code says "not supported" (rather than that the GPU failed)."""
    codes = {getattr(nvml, name, None) for name in _UNSUPPORTED_CODES} - {None}
    return code in codes


def _unsupported(nvml: Any, exc: Exception) -> bool:
    """Whether an NVMLError says the call is not supported (rather than that the GPU failed)."""
    return _unsupported_code(nvml, getattr(exc, "value", None))


def _field_value(nvml: Any, value: Any) -> float | None:
    """The number in one `nvmlFieldValue_t`, read from the union member its value type names."""
    for type_name, member in _VALUE_MEMBERS.items():
        if value.valueType == getattr(nvml, f"NVML_VALUE_TYPE_{type_name}", None):
            return float(getattr(value.value, member))
    return None


def _serial(nvml: Any, handle: Any) -> str:
    """The board's serial number; "" where NVML has none for it (most consumer boards)."""
    try:
        return _text(nvml.nvmlDeviceGetSerial(handle))
    except (nvml.NVMLError, AttributeError):  # AttributeError: a binding without the call
        return ""


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
                serial=_serial(nvml, self._handle),
            )
        except nvml.NVMLError as exc:
            raise DeviceError(f"NVML GPU {index}: {exc}") from exc
        self._instant_field: bool | None = None  # None: not tried yet; False: this driver lacks it
        self.instant_failures = 0  # readings of the field that failed and fell back to the average
        self._instant_error: str | None = None

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

    def _instant_power_mw(self) -> tuple[float | None, str | None]:
        """(instantaneous power in mW, None) from the field; else (None, why), where why is None when the
        driver says it does not have the field (a lasting answer) and the error when this read failed."""
        nvml = self._nvml
        field_id = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)
        if field_id is None or not hasattr(nvml, "nvmlDeviceGetFieldValues"):
            return None, None
        try:
            (value,) = nvml.nvmlDeviceGetFieldValues(self._handle, [field_id])
        except nvml.NVMLError as exc:
            return None, None if _unsupported(nvml, exc) else str(exc)
        if value.nvmlReturn != nvml.NVML_SUCCESS:
            code = value.nvmlReturn
            return None, None if _unsupported_code(nvml, code) else f"field read returned NVML error {code}"
        milliwatts = _field_value(nvml, value)
        return milliwatts, None if milliwatts is not None else f"unknown field value type {value.valueType}"

    def power_w(self) -> float:
        """The instantaneous field where the driver has it, else the (averaged) power usage.

        The driver's answer that it lacks the field switches this GPU to the average for good, logged
        once (`power_note`). Any other failed read of the field (a transient NVML error) falls back for
        that reading only, is counted in `instant_failures` and logged once; the field is asked again.
        """
        if self._instant_field is not False:
            milliwatts, error = self._instant_power_mw()
            if milliwatts is not None:
                self._instant_field = True
                return milliwatts / 1e3
            if error is None and self._instant_field is None:
                self._instant_field = False
                log.info("GPU %d (%s): the driver has no instantaneous power field; power is NVML's averaged "
                         "power usage from now on", self._info.index, self._info.uuid)
            else:  # failed now, or "not supported" from a driver that gave the field before
                error = error or "the driver answered 'not supported' for a field it gave before"
                self.instant_failures += 1
                self._instant_error = error
                if self.instant_failures == 1:
                    log.warning("GPU %d (%s): instantaneous power read failed (%s); that reading is NVML's "
                                "averaged power usage, the field is asked again next time",
                                self._info.index, self._info.uuid, error)
        return float(self._call("nvmlDeviceGetPowerUsage")) / 1e3  # mW

    @property
    def power_note(self) -> str | None:
        """What this GPU's power readings are, where they are not all the instantaneous field."""
        if self._instant_field is False:
            return "power is NVML's averaged power usage: the driver has no instantaneous power field"
        if self.instant_failures:
            return (f"{self.instant_failures} instantaneous power reading(s) failed and used NVML's averaged "
                    f"power usage instead (last: {self._instant_error})")
        return None

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

    def process_ids(self) -> tuple[int, ...] | None:
        """Compute processes on this GPU (NVML; None where the driver does not say)."""
        try:
            return tuple(int(p.pid) for p in self._call("nvmlDeviceGetComputeRunningProcesses"))
        except DeviceError:
            return None


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
