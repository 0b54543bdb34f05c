"""The NVML adapter over a fake `pynvml`: units, unsupported readings, fallbacks, failures, and names."""
from __future__ import annotations

import sys

import pytest
from fake_pynvml import (
    FakePynvml,
    NVMLError,
    NVMLError_FunctionNotFound,
    NVMLError_GpuIsLost,
    NVMLError_LibraryNotFound,
    NVMLError_NotSupported,
    NVMLError_Uninitialized,
)

from moecluster.devices import DeviceError, NoDevices, Unsupported, open_devices
from moecluster.devices.nvml import NvmlDevices


def test_readings_are_converted_from_nvml_units(fake_nvml: FakePynvml) -> None:
    with NvmlDevices() as devices:
        gpu = devices.gpus[0]
        assert gpu.energy_j() == pytest.approx(123_456.789)  # mJ -> J
        assert gpu.power_w() == pytest.approx(250.5)  # mW -> W
        assert gpu.power_limit_w() == pytest.approx(700.0)
        assert gpu.utilization_ratio() == pytest.approx(0.87)  # percent -> ratio
        assert gpu.sm_clock_hz() == pytest.approx(1.98e9)  # MHz -> Hz
        assert gpu.temperature_c() == 61.0
        assert gpu.memory_used_bytes() == 42 * 2**30
        assert isinstance(gpu.energy_j(), float) and isinstance(gpu.memory_used_bytes(), int)


def test_uuid_name_and_driver_are_decoded(fake_nvml: FakePynvml) -> None:
    fake_nvml.gpus[0].name = b"NVIDIA A100-SXM4-40GB\x00\x00"
    fake_nvml.gpus[1].name = b"Broken \xff name"
    with NvmlDevices() as devices:
        first, second = (g.info for g in devices.gpus)
        assert (first.index, first.uuid, first.name) == (0, "GPU-aaaaaaaa-0000-0000-0000-000000000000",
                                                         "NVIDIA A100-SXM4-40GB")
        assert (second.index, second.uuid) == (1, "GPU-bbbbbbbb-0000-0000-0000-000000000000")
        assert second.name == "Broken \ufffd name"
        assert devices.by_uuid("GPU-bbbbbbbb-0000-0000-0000-000000000000") is devices.gpus[1]
        assert devices.driver_version() == "580.65.06"
        assert devices.kind == "nvml"


def test_instant_power_field_is_preferred_where_the_driver_has_it(fake_nvml: FakePynvml) -> None:
    with NvmlDevices() as devices:
        gpu = devices.gpus[1]
        assert gpu.power_w() == pytest.approx(312.25)
        assert "nvmlDeviceGetPowerUsage" not in fake_nvml.gpus[1].calls


def test_instant_power_field_of_another_value_type(fake_nvml: FakePynvml) -> None:
    fake_nvml.instant_value_type = fake_nvml.NVML_VALUE_TYPE_DOUBLE
    with NvmlDevices() as devices:
        assert devices.gpus[1].power_w() == pytest.approx(312.25)


def test_a_driver_without_the_field_falls_back_and_is_not_asked_again(fake_nvml: FakePynvml) -> None:
    with NvmlDevices() as devices:
        gpu, raw = devices.gpus[0], fake_nvml.gpus[0]
        assert [gpu.power_w(), gpu.power_w()] == [pytest.approx(250.5)] * 2
        assert raw.calls.count("nvmlDeviceGetFieldValues") == 1
        assert raw.calls.count("nvmlDeviceGetPowerUsage") == 2


def test_a_field_that_worked_falls_back_for_one_failed_reading_only(fake_nvml: FakePynvml) -> None:
    with NvmlDevices() as devices:
        gpu, raw = devices.gpus[1], fake_nvml.gpus[1]
        assert gpu.power_w() == pytest.approx(312.25)
        raw.fail["nvmlDeviceGetFieldValues"] = NVMLError(999)
        assert gpu.power_w() == pytest.approx(250.5)
        del raw.fail["nvmlDeviceGetFieldValues"]
        assert gpu.power_w() == pytest.approx(312.25)


def test_a_driver_without_the_field_is_said_once(fake_nvml: FakePynvml, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="moecluster.devices.nvml")
    with NvmlDevices() as devices:
        gpu = devices.gpus[0]
        assert gpu.power_note is None  # nothing read yet
        gpu.power_w()
        gpu.power_w()
        assert gpu.power_note == "power is NVML's averaged power usage: the driver has no instantaneous power field"
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "has no instantaneous power field" in said[0]


@pytest.mark.parametrize("failure", ["raises", "returns"])
def test_one_failed_first_read_does_not_downgrade_the_gpu_and_is_said(fake_nvml: FakePynvml, failure: str,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    with NvmlDevices() as devices:
        gpu, raw = devices.gpus[1], fake_nvml.gpus[1]
        if failure == "raises":
            raw.fail["nvmlDeviceGetFieldValues"] = NVMLError(999)
        else:
            raw.instant_return = 999
        assert gpu.power_w() == pytest.approx(250.5)  # this reading only: the averaged power usage
        raw.fail.clear()
        raw.instant_return = None
        assert [gpu.power_w(), gpu.power_w()] == [pytest.approx(312.25)] * 2  # asked again: instantaneous
        assert gpu.instant_failures == 1
        assert gpu.power_note is not None and gpu.power_note.startswith(
            "1 instantaneous power reading(s) failed and used NVML's averaged power usage instead (last: ")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "instantaneous power read failed" in warning and "asked again next time" in warning


@pytest.mark.parametrize("error", [NVMLError_NotSupported(), NVMLError_FunctionNotFound()])
def test_an_unsupported_reading_raises_unsupported(fake_nvml: FakePynvml, error: NVMLError) -> None:
    fake_nvml.gpus[0].fail["nvmlDeviceGetTotalEnergyConsumption"] = error
    with NvmlDevices() as devices:
        with pytest.raises(Unsupported, match=r"GPU 0 \(NVIDIA H100 80GB HBM3\): "
                                              r"nvmlDeviceGetTotalEnergyConsumption not supported"):
            devices.gpus[0].energy_j()
        assert devices.gpus[1].energy_j() == pytest.approx(123_456.789)


def test_a_gpu_lost_mid_run_raises_device_error_and_spares_the_others(fake_nvml: FakePynvml) -> None:
    with NvmlDevices() as devices:
        lost, other = devices.gpus
        assert lost.energy_j() == pytest.approx(123_456.789)
        fake_nvml.gpus[0].lost = True
        for reading in (lost.energy_j, lost.power_w, lost.temperature_c, lost.memory_used_bytes):
            with pytest.raises(DeviceError, match="GPU 0 \\(GPU-aaaaaaaa") as info:
                reading()
            assert not isinstance(info.value, Unsupported)
            assert isinstance(info.value.__cause__, NVMLError_GpuIsLost)
        assert other.power_w() == pytest.approx(312.25)


def test_nvml_that_cannot_start_is_a_device_error_and_auto_falls_back(fake_nvml: FakePynvml) -> None:
    fake_nvml.init_error = NVMLError_LibraryNotFound()
    with pytest.raises(DeviceError, match="NVML could not start"):
        NvmlDevices()
    with pytest.raises(DeviceError):
        open_devices("nvml")
    fallback = open_devices("auto")
    assert isinstance(fallback, NoDevices)
    assert fallback.unavailable_reason is not None and "NVML could not start" in fallback.unavailable_reason


def test_missing_pynvml_is_a_device_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    with pytest.raises(DeviceError, match="pynvml is not installed"):
        NvmlDevices()


def test_a_gpu_failing_at_open_releases_nvml(fake_nvml: FakePynvml) -> None:
    fake_nvml.gpus[1].lost = True
    with pytest.raises(DeviceError, match="NVML could not list the GPUs: NVML GPU 1"):
        NvmlDevices()
    assert fake_nvml.inits == fake_nvml.shutdowns == 1


def test_a_failing_gpu_count_releases_nvml(fake_nvml: FakePynvml) -> None:
    fake_nvml.system_fail["nvmlDeviceGetCount"] = NVMLError(999)
    with pytest.raises(DeviceError, match="NVML could not list the GPUs"):
        NvmlDevices()
    assert fake_nvml.inits == fake_nvml.shutdowns == 1


def test_unknown_driver_version_is_none(fake_nvml: FakePynvml) -> None:
    fake_nvml.system_fail["nvmlSystemGetDriverVersion"] = NVMLError_NotSupported()
    with NvmlDevices() as devices:
        assert devices.driver_version() is None


def test_close_is_idempotent_and_survives_a_failing_shutdown(fake_nvml: FakePynvml) -> None:
    devices = NvmlDevices()
    devices.close()
    devices.close()
    assert fake_nvml.shutdowns == 1
    again = NvmlDevices()
    fake_nvml.system_fail["nvmlShutdown"] = NVMLError_Uninitialized()
    again.close()
    assert fake_nvml.shutdowns == 1


def test_no_gpus_is_an_empty_set(fake_nvml: FakePynvml) -> None:
    fake_nvml.gpus.clear()
    with NvmlDevices() as devices:
        assert list(devices.gpus) == []
    assert fake_nvml.shutdowns == 1



def test_every_nvml_name_the_adapter_uses_exists_in_the_real_binding() -> None:
    """The fake above answers whatever the adapter asks; the real `pynvml` (nvidia-ml-py, a required
    dependency) must have each name too. A wrong name passed every CPU test once and failed every served
    task on a GPU (`nvmlDeviceGetComputeProcesses`; pynvml calls it `nvmlDeviceGetComputeRunningProcesses`)."""
    import ast
    import importlib
    from pathlib import Path

    import moecluster.devices.nvml as adapter

    real = importlib.import_module("pynvml")
    tree = ast.parse(Path(adapter.__file__).read_text())

    def is_binding(node: ast.expr) -> bool:  # `nvml`, `pynvml` or `self._nvml`
        return (isinstance(node, ast.Name) and node.id in {"nvml", "pynvml"}) or (
            isinstance(node, ast.Attribute) and node.attr == "_nvml")

    def literal(node: ast.expr) -> str | None:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_binding(node.value):
            names.add(node.attr)  # nvml.nvmlDeviceGetName, self._nvml.NVML_CLOCK_SM
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "_call":
            names.add(str(literal(node.args[0])))  # self._call("nvmlDeviceGetPowerUsage")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"getattr", "hasattr"} \
                and is_binding(node.args[0]) and literal(node.args[1]) is not None:
            names.add(str(literal(node.args[1])))  # getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)
    assert len(names) > 15  # the adapter's calls, constants and errors were read
    missing = sorted(n for n in names if not hasattr(real, n))
    assert missing == []
