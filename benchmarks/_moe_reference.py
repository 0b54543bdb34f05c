"""The MoE's function in float64 on the GPU, expert by expert, for checking kernels at full size."""
from __future__ import annotations

import torch
from torch import Tensor

from moecluster.workloads.mlp.models import MoEMLP


def reference_output(moe: MoEMLP, x: Tensor) -> Tensor:
    """[B, out] float64 from the model's own routing and weights: each expert's rows through its layers
    in float64 (one expert's weights converted at a time, so memory stays near the model's own)."""
    with torch.inference_mode():
        gates, idx = moe.route(x)
        out = torch.zeros(x.shape[0], moe.shape.output_dim, dtype=torch.float64, device=x.device)
        last = len(moe.weight) - 1
        for e in range(moe.shape.num_experts):
            token, slot = (idx == e).nonzero(as_tuple=True)
            if token.numel() == 0:
                continue
            h = x[token].double()
            for i, (w, b) in enumerate(zip(moe.weight, moe.bias)):
                h = torch.addmm(b[e].double(), h, w[e].double().t())
                if i < last:
                    h = torch.relu(h)
            out.index_add_(0, token, gates[token, slot].double().unsqueeze(1) * h)
    return out
