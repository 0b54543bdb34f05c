"""Fixtures for the NVML adapter's tests: a fake `pynvml` module in place of the real one."""
from __future__ import annotations

import sys

import pytest
from fake_pynvml import FakeNvmlGpu, FakePynvml


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakePynvml:
    """Two GPUs, installed as the module `import pynvml` returns for the test's duration."""
    module = FakePynvml([
        FakeNvmlGpu(uuid=b"GPU-aaaaaaaa-0000-0000-0000-000000000000", name=b"NVIDIA H100 80GB HBM3"),
        FakeNvmlGpu(uuid="GPU-bbbbbbbb-0000-0000-0000-000000000000", name="NVIDIA H100 80GB HBM3",
                    instant_mw=312_250),
    ])
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module
