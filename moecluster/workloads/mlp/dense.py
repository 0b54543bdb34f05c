"""The seed's dense MLP, runnable in several forms of one function (the dense twin's layouts).

`Linear(in, h) ReLU [Linear(h, h) ReLU]*(L-1) Linear(h, out)`, weights stored as `nn.Linear`
stores them (`[out, in]`, the source of truth, what `state_dict` holds). Which GEMM call and
which weight layout runs fastest depends on shape, dtype, batch and device (on the H100 at
xxl, fp32 batch 128: `F.linear` on `[out, in]` 39 TFLOP/s, `addmm` on a contiguous `[in, out]`
copy 50), so the layout is chosen by measurement (`workloads.forms`); the `[in, out]`
copies are derived from the weights and rebuilt whenever the weights change.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moecluster.workloads.mlp.derived import DerivedTensors
from moecluster.spec.mlp.shapes import DenseShape

F_LINEAR = "F.linear [out,in]"
ADDMM_IN_OUT = "addmm [in,out]"
MM_IN_OUT_BIAS_APART = "mm [in,out] + bias"
ADDMM_RELU_IN_OUT = "addmm+relu [in,out]"
ADDMM_RELU_OUT_IN = "addmm+relu [out,in]"

# layout -> the kernel call it makes, for the record
DENSE_LAYOUTS: dict[str, str] = {
    F_LINEAR: "F.linear, bias fused (nn.Linear's own path)",
    ADDMM_IN_OUT: "torch.addmm on a contiguous [in,out] copy, bias fused",
    MM_IN_OUT_BIAS_APART: "torch.mm on a contiguous [in,out] copy, then a separate bias add",
    ADDMM_RELU_IN_OUT: "torch._addmm_activation on a contiguous [in,out] copy, bias and ReLU fused"
                       " (a cuBLASLt epilogue on CUDA)",
    ADDMM_RELU_OUT_IN: "torch._addmm_activation on the [out,in] weights, bias and ReLU fused"
                       " (a cuBLASLt epilogue on CUDA)",
}
IN_OUT_LAYOUTS = (ADDMM_IN_OUT, MM_IN_OUT_BIAS_APART, ADDMM_RELU_IN_OUT)  # read the derived [in,out] copies


def dense_layouts() -> tuple[str, ...]:
    """The layouts this torch can run (the fused-ReLU ones need `torch._addmm_activation`)."""
    fused = hasattr(torch, "_addmm_activation")
    return tuple(name for name in DENSE_LAYOUTS if fused or name not in (ADDMM_RELU_IN_OUT, ADDMM_RELU_OUT_IN))


class DenseMLP(nn.Module):
    """The seed's dense baseline; `layout` picks the form (default: `nn.Linear`'s own path)."""

    def __init__(self, shape: DenseShape) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(shape.layer_dims()):
            layers.append(nn.Linear(d_in, d_out))
            if i < shape.num_layers:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.layout = F_LINEAR
        self._in_out = DerivedTensors()

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def in_out_weights(self) -> tuple[Tensor, ...]:
        """Contiguous `[in, out]` copies of the weights, rebuilt when a weight changes."""
        weights = [m.weight for m in self.linears()]
        return self._in_out.get(weights, lambda: tuple(w.detach().t().contiguous() for w in weights))

    def derived_tensors(self) -> tuple[Tensor, ...]:
        """The derived copies the current layout reads (a CUDA graph of it must keep them alive)."""
        return self.in_out_weights() if self.layout in IN_OUT_LAYOUTS else ()

    def release_derived(self) -> None:
        """Free the `[in, out]` copies unless the current layout reads them."""
        if self.layout not in IN_OUT_LAYOUTS:
            self._in_out.clear()

    def forward(self, x: Tensor) -> Tensor:
        if self.layout == F_LINEAR:
            return self.net(x)
        if self.layout not in DENSE_LAYOUTS:
            raise ValueError(f"unknown dense layout {self.layout!r} ({', '.join(DENSE_LAYOUTS)})")
        linears = self.linears()
        if torch.is_grad_enabled() and any(m.weight.requires_grad for m in linears):
            raise RuntimeError(f"layout {self.layout!r} runs on derived copies without gradients;"
                               f" train with layout {F_LINEAR!r}")
        weights = self.in_out_weights() if self.layout in IN_OUT_LAYOUTS else tuple(m.weight.t() for m in linears)
        last = len(linears) - 1
        h = x
        for i, (w, m) in enumerate(zip(weights, linears)):
            h = self._layer(h, w, m.bias, relu=i < last)
        return h

    def _layer(self, h: Tensor, w: Tensor, b: Tensor, relu: bool) -> Tensor:
        """One layer `relu?(h @ w + b)` with `w` as `[in, out]` (a copy, or a view of `[out, in]`)."""
        if self.layout == MM_IN_OUT_BIAS_APART:
            h = torch.mm(h, w) + b
        elif relu and self.layout in (ADDMM_RELU_IN_OUT, ADDMM_RELU_OUT_IN):
            return torch._addmm_activation(b, h, w)
        else:
            h = torch.addmm(b, h, w)
        return F.relu(h) if relu else h
