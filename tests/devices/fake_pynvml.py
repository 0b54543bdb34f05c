"""A stand-in for the `pynvml` module: the calls, constants and error classes the NVML adapter uses.

Each GPU is a `FakeNvmlGpu` holding raw NVML readings in NVML's own units (mW, mJ, MHz, percent);
`fail` maps a function name to the error that call raises, `lost` makes every call raise GPU-is-lost.
"""
from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999


class NVMLError(Exception):
    """pynvml's base error: `value` is the NVML return code."""

    code = NVML_ERROR_UNKNOWN

    def __init__(self, value: int | None = None) -> None:
        self.value = self.code if value is None else value
        super().__init__(self.value)

    def __str__(self) -> str:
        return f"NVML error {self.value} ({type(self).__name__})"


class NVMLError_Uninitialized(NVMLError):  # noqa: N801 - pynvml's own names
    code = NVML_ERROR_UNINITIALIZED


class NVMLError_NotSupported(NVMLError):  # noqa: N801
    code = NVML_ERROR_NOT_SUPPORTED


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801
    code = NVML_ERROR_LIBRARY_NOT_FOUND


class NVMLError_FunctionNotFound(NVMLError):  # noqa: N801
    code = NVML_ERROR_FUNCTION_NOT_FOUND


class NVMLError_GpuIsLost(NVMLError):  # noqa: N801
    code = NVML_ERROR_GPU_IS_LOST


@dataclass
class FakeNvmlGpu:
    """One GPU's raw NVML readings (NVML units) and the failures it should show."""

    uuid: bytes | str = b"GPU-00000000-0000-0000-0000-000000000000"
    name: bytes | str = b"NVIDIA H100 80GB HBM3"
    energy_mj: int = 123_456_789
    power_mw: int = 250_500
    instant_mw: int | None = None  # None: the instantaneous power field is not supported
    instant_return: int | None = None  # the field's nvmlReturn, where set (e.g. a transient error)
    utilization_pct: int = 87
    sm_clock_mhz: int = 1980
    temperature_c: int = 61
    memory_used_bytes: int = 42 * 2**30
    power_limit_mw: int = 700_000
    fail: dict[str, NVMLError] = field(default_factory=dict)
    lost: bool = False
    calls: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Union:
    dVal: float = 0.0  # noqa: N815 - ctypes union member names
    uiVal: int = 0  # noqa: N815
    ulVal: int = 0  # noqa: N815
    ullVal: int = 0  # noqa: N815
    sllVal: int = 0  # noqa: N815
    siVal: int = 0  # noqa: N815
    usVal: int = 0  # noqa: N815


@dataclass(frozen=True)
class FieldValue:
    fieldId: int  # noqa: N815
    nvmlReturn: int  # noqa: N815
    valueType: int  # noqa: N815
    value: _Union


@dataclass(frozen=True)
class Utilization:
    gpu: int
    memory: int


@dataclass(frozen=True)
class Memory:
    used: int
    free: int
    total: int


class FakePynvml(types.ModuleType):
    """The module object `import pynvml` returns in a test."""

    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_FUNCTION_NOT_FOUND = NVML_ERROR_FUNCTION_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = NVML_ERROR_GPU_IS_LOST
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0
    NVML_VALUE_TYPE_DOUBLE = 0
    NVML_VALUE_TYPE_UNSIGNED_INT = 1
    NVML_VALUE_TYPE_UNSIGNED_LONG = 2
    NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3
    NVML_VALUE_TYPE_SIGNED_LONG_LONG = 4
    NVML_VALUE_TYPE_SIGNED_INT = 5
    NVML_VALUE_TYPE_UNSIGNED_SHORT = 6
    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost

    def __init__(self, gpus: list[FakeNvmlGpu], driver: bytes | str = b"580.65.06") -> None:
        super().__init__("pynvml")
        self.gpus = gpus
        self.driver = driver
        self.init_error: NVMLError | None = None  # raised by nvmlInit
        self.system_fail: dict[str, NVMLError] = {}  # raised by calls that take no GPU
        self.instant_value_type = self.NVML_VALUE_TYPE_UNSIGNED_INT
        self.inits = 0
        self.shutdowns = 0

    # -- library -------------------------------------------------------------------
    def _system(self, name: str) -> None:
        if name in self.system_fail:
            raise self.system_fail[name]
        if self.inits <= self.shutdowns:
            raise NVMLError_Uninitialized()

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's own names
        if self.init_error is not None:
            raise self.init_error
        self.inits += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self._system("nvmlShutdown")
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._system("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlSystemGetDriverVersion(self) -> bytes | str:  # noqa: N802
        self._system("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeNvmlGpu:  # noqa: N802
        self._system("nvmlDeviceGetHandleByIndex")
        if index >= len(self.gpus):
            raise NVMLError(2)
        return self._gpu(self.gpus[index], "nvmlDeviceGetHandleByIndex")

    # -- per GPU ---------------------------------------------------------------------
    def _gpu(self, gpu: FakeNvmlGpu, name: str) -> FakeNvmlGpu:
        self._system(name)
        gpu.calls.append(name)
        if gpu.lost:
            raise NVMLError_GpuIsLost()
        if name in gpu.fail:
            raise gpu.fail[name]
        return gpu

    def nvmlDeviceGetUUID(self, handle: FakeNvmlGpu) -> bytes | str:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetName(self, handle: FakeNvmlGpu) -> bytes | str:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeNvmlGpu) -> int:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetTotalEnergyConsumption").energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: FakeNvmlGpu) -> int:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetFieldValues(self, handle: FakeNvmlGpu, field_ids: list[int]) -> list[FieldValue]:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetFieldValues")
        values = []
        for field_id in field_ids:
            supported = field_id == self.NVML_FI_DEV_POWER_INSTANT and gpu.instant_mw is not None
            value_type = self.instant_value_type
            member = {self.NVML_VALUE_TYPE_DOUBLE: "dVal", self.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
                      self.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal"}[value_type]
            number: Any = float(gpu.instant_mw or 0) if member == "dVal" else int(gpu.instant_mw or 0)
            code = NVML_SUCCESS if supported else NVML_ERROR_NOT_SUPPORTED
            code = code if gpu.instant_return is None else gpu.instant_return
            values.append(FieldValue(fieldId=field_id, nvmlReturn=code,
                                     valueType=value_type, value=_Union(**{member: number})))
        return values

    def nvmlDeviceGetUtilizationRates(self, handle: FakeNvmlGpu) -> Utilization:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        return Utilization(gpu=gpu.utilization_pct, memory=0)

    def nvmlDeviceGetClockInfo(self, handle: FakeNvmlGpu, clock: int) -> int:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetClockInfo")
        if clock != self.NVML_CLOCK_SM:
            raise NVMLError(2)
        return gpu.sm_clock_mhz

    def nvmlDeviceGetTemperature(self, handle: FakeNvmlGpu, sensor: int) -> int:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetTemperature")
        if sensor != self.NVML_TEMPERATURE_GPU:
            raise NVMLError(2)
        return gpu.temperature_c

    def nvmlDeviceGetMemoryInfo(self, handle: FakeNvmlGpu) -> Memory:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        return Memory(used=gpu.memory_used_bytes, free=0, total=gpu.memory_used_bytes)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeNvmlGpu) -> int:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw
