"""Datasheet ceilings of the GPUs the estimator knows (the vendor's figures, labelled as such).

Peak FLOP/s are dense (no 2:4 sparsity; NVIDIA's headline numbers for BF16/FP16/FP8 are
with sparsity, twice these). `float32` is the non-tensor FP32 rate: PyTorch does not use
TF32 for float32 matmuls unless asked (`torch.backends.cuda.matmul.allow_tf32`), which the
benchmark does not do. Link bandwidth is NVLink per direction (half the quoted
bidirectional figure). TDP is the board's maximum power.

Sources:
- H100 SXM5 / PCIe: NVIDIA H100 Tensor Core GPU datasheet (2023): FP32 67 / 51 TFLOPS,
  BF16 1,979 / 1,513 TFLOPS with sparsity, HBM 3.35 / 2.0 TB/s, up to 700 / 350 W,
  NVLink 900 / 600 GB/s.
- H200 SXM: NVIDIA H200 Tensor Core GPU datasheet (2024): the H100's compute, HBM3e
  4.8 TB/s, up to 700 W, NVLink 900 GB/s.
- A100 80GB SXM4 / PCIe: NVIDIA A100 Tensor Core GPU datasheet (2021): FP32 19.5 TFLOPS,
  BF16 624 TFLOPS with sparsity, HBM2e 2,039 / 1,935 GB/s, 400 / 300 W, NVLink 600 GB/s
  (the seed's GPU is the 300 W PCIe card).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

TERA = 1e12
GIGA = 1e9


@dataclass(frozen=True)
class GpuSpec:
    key: str
    label: str
    flops_per_s: Mapping[str, float]   # dtype -> dense peak FLOP/s (datasheet)
    memory_bytes_per_s: float
    tdp_w: float
    link_bytes_per_s: float            # NVLink, one direction
    source: str
    requires: tuple[str, ...] = ()     # lower-case substrings of the NVML name
    excludes: tuple[str, ...] = ()

    def peak_flops(self, dtype: str) -> float:
        try:
            return self.flops_per_s[dtype]
        except KeyError:
            raise KeyError(f"{self.label}: no datasheet peak for dtype {dtype!r}"
                           f" (known: {', '.join(self.flops_per_s)})") from None

    def ridge_flops_per_byte(self, dtype: str) -> float:
        """FLOPs per byte at which compute time equals memory time (the roofline's ridge)."""
        return self.peak_flops(dtype) / self.memory_bytes_per_s


_HOPPER = {"float32": 67 * TERA, "tf32": 494.7 * TERA, "bfloat16": 989.4 * TERA, "float16": 989.4 * TERA,
           "float8": 1978.9 * TERA}
_AMPERE = {"float32": 19.5 * TERA, "tf32": 156 * TERA, "bfloat16": 312 * TERA, "float16": 312 * TERA}

GPUS: dict[str, GpuSpec] = {g.key: g for g in (
    GpuSpec("h100-sxm", "NVIDIA H100 SXM5 80GB", _HOPPER, 3.35 * TERA, 700, 450 * GIGA,
            "datasheet: NVIDIA H100 Tensor Core GPU", requires=("h100",), excludes=("pcie", "nvl")),
    GpuSpec("h100-pcie", "NVIDIA H100 PCIe 80GB",
            {"float32": 51.2 * TERA, "tf32": 378 * TERA, "bfloat16": 756.5 * TERA, "float16": 756.5 * TERA,
             "float8": 1513 * TERA},
            2.0 * TERA, 350, 300 * GIGA, "datasheet: NVIDIA H100 Tensor Core GPU", requires=("h100", "pcie")),
    GpuSpec("h200", "NVIDIA H200 SXM 141GB", _HOPPER, 4.8 * TERA, 700, 450 * GIGA,
            "datasheet: NVIDIA H200 Tensor Core GPU", requires=("h200",), excludes=("nvl",)),
    GpuSpec("a100-sxm-80gb", "NVIDIA A100 SXM4 80GB", _AMPERE, 2.039 * TERA, 400, 300 * GIGA,
            "datasheet: NVIDIA A100 Tensor Core GPU", requires=("a100", "80gb"), excludes=("pcie",)),
    GpuSpec("a100-pcie-80gb", "NVIDIA A100 PCIe 80GB", _AMPERE, 1.935 * TERA, 300, 300 * GIGA,
            "datasheet: NVIDIA A100 Tensor Core GPU", requires=("a100", "80gb", "pcie")),
)}

ALIASES = {"h100": "h100-sxm", "a100": "a100-sxm-80gb", "h200-sxm": "h200"}


def gpu(key: str) -> GpuSpec:
    """A GPU by key or alias (h100, h100-sxm, h100-pcie, h200, a100, a100-sxm-80gb, a100-pcie-80gb)."""
    k = ALIASES.get(key.lower(), key.lower())
    try:
        return GPUS[k]
    except KeyError:
        raise KeyError(f"unknown GPU {key!r} (known: {', '.join([*GPUS, *ALIASES])})") from None


def lookup(nvml_name: str) -> GpuSpec | None:
    """The datasheet entry of a GPU by its NVML name ("NVIDIA H100 80GB HBM3"), None if unknown."""
    name = nvml_name.lower()
    for spec in GPUS.values():
        if all(r in name for r in spec.requires) and not any(e in name for e in spec.excludes):
            return spec
    return None
