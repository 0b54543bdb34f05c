"""The seed's models in torch: a dense MLP and an MoE of MLP experts with three implementations.

All MoE implementations compute the same function from the same weights. Expert weights
are stacked per layer in `nn.Linear` layout, `weight[l]: [E, out, in]`, `bias[l]: [E, out]`:
`naive` and `sorted` apply one expert slice at a time, `grouped` multiplies every expert
of a layer in one grouped GEMM (`torch._grouped_mm`), falling back to a per-expert loop
where the device or dtype lacks it (the reason is kept in `grouped_fallback_reason`).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .shapes import IMPLS, DenseShape, MoEShape

# grouped: tokens per expert from which another kernel beats the ragged grouped GEMM
# (measured on the H100 at xxl, bf16: benchmarks/results/moe_kernels_h100.json)
PADDED_BMM_FROM_ROWS = 384
EXPERT_LOOP_FROM_ROWS = 1024


class DenseMLP(nn.Module):
    """`Linear(in, h) ReLU [Linear(h, h) ReLU]*(L-1) Linear(h, out)`, as the seed's baseline."""

    def __init__(self, shape: DenseShape) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(shape.layer_dims()):
            layers.append(nn.Linear(d_in, d_out))
            if i < shape.num_layers:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MoEMLP(nn.Module):
    """Router `Linear(in, E)` with bias, top-k on its logits, softmax over the k chosen gates."""

    def __init__(self, shape: MoEShape, impl: str = "sorted") -> None:
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"unknown MoE implementation {impl!r} ({', '.join(IMPLS)})")
        self.shape = shape
        self.impl = impl
        self.router = nn.Linear(shape.input_dim, shape.num_experts)
        dims = shape.expert.layer_dims()
        self.weight = nn.ParameterList(
            nn.Parameter(torch.empty(shape.num_experts, d_out, d_in)) for d_in, d_out in dims)
        self.bias = nn.ParameterList(nn.Parameter(torch.empty(shape.num_experts, d_out)) for _, d_out in dims)
        for w, b in zip(self.weight, self.bias):  # nn.Linear's default init, per expert
            bound = 1.0 / math.sqrt(w.shape[-1])
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)
        self.forced_experts: Tensor | None = None  # [B, k] expert ids replacing top-k (skewed load)
        self.grouped_fallback_reason: str | None = None
        self._grouped_probed = False
        self._padded_last: tuple[Tensor, Tensor] | None = None

    # -- routing ------------------------------------------------------------------------
    def route(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(gates [B, k], expert ids [B, k]); gates are the softmax over the k chosen logits."""
        logits = self.router(x)
        if self.forced_experts is not None and self.forced_experts.shape[0] == x.shape[0]:
            idx = self.forced_experts
            chosen = logits.gather(1, idx)
        else:
            chosen, idx = torch.topk(logits, self.shape.top_k, dim=1)
        return F.softmax(chosen, dim=1), idx

    def expert_tokens(self, x: Tensor) -> list[int]:
        """Tokens routed to each expert for input `x` (the realised load)."""
        with torch.no_grad():
            _, idx = self.route(x)
            return torch.bincount(idx.flatten(), minlength=self.shape.num_experts).tolist()

    # -- one expert, one slice at a time ----------------------------------------------------
    def _expert(self, e: int, h: Tensor) -> Tensor:
        last = len(self.weight) - 1
        for l, (w, b) in enumerate(zip(self.weight, self.bias)):
            h = F.linear(h, w[e], b[e])
            if l < last:
                h = F.relu(h)
        return h

    def forward(self, x: Tensor) -> Tensor:
        gates, idx = self.route(x)
        if self.impl == "naive":
            return self._forward_naive(x, gates, idx)
        if self.impl == "sorted":
            return self._forward_sorted(x, gates, idx)
        return self._forward_grouped(x, gates, idx)

    def _forward_naive(self, x: Tensor, gates: Tensor, idx: Tensor) -> Tensor:
        """The seed's original: repeat every token k times, loop over ALL experts with masks."""
        k = self.shape.top_k
        flat_idx = idx.flatten()
        x_rep = x.repeat_interleave(k, dim=0)
        out_flat = x.new_zeros(x.shape[0] * k, self.shape.output_dim)
        for e in range(self.shape.num_experts):
            mask = flat_idx == e
            if mask.any():
                out_flat[mask] = self._expert(e, x_rep[mask])
        token = torch.arange(x.shape[0], device=x.device).repeat_interleave(k)
        weighted = out_flat * gates.flatten().unsqueeze(1)
        return x.new_zeros(x.shape[0], self.shape.output_dim).index_add_(0, token, weighted)

    def _dispatch(self, x: Tensor, gates: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Token copies sorted by expert: (expert id, token index, gate, input) per copy."""
        flat_idx, order = torch.sort(idx.flatten(), stable=True)
        token = order // self.shape.top_k
        return flat_idx, token, gates.flatten()[order], x[token]

    def _combine(self, x: Tensor, token: Tensor, gate: Tensor, y: Tensor) -> Tensor:
        out = x.new_zeros(x.shape[0], self.shape.output_dim)
        return out.index_add_(0, token, y * gate.unsqueeze(1))

    def _loop_sorted(self, xs: Tensor, counts: list[int]) -> Tensor:
        outs, start = [], 0
        for e, c in enumerate(counts):
            if c:
                outs.append(self._expert(e, xs[start:start + c]))
                start += c
        return torch.cat(outs)

    def _forward_sorted(self, x: Tensor, gates: Tensor, idx: Tensor) -> Tensor:
        """The seed's optimised one: sort by expert, run only experts that received tokens."""
        flat_idx, token, gate, xs = self._dispatch(x, gates, idx)
        counts = torch.bincount(flat_idx, minlength=self.shape.num_experts).tolist()
        return self._combine(x, token, gate, self._loop_sorted(xs, counts))

    # -- grouped GEMM ------------------------------------------------------------------------
    def _grouped_layers(self) -> list[tuple[Tensor, Tensor]]:
        """Per layer (weight as [E, in, out] column-major view, bias [E, out]).

        The fast grouped kernel needs every row stride to be a multiple of 16 bytes, so the
        output layer (10 wide) gets a zero-padded copy, built once in the model's dtype;
        its extra columns are cut off after the last GEMM.
        """
        layers = [(w.transpose(-2, -1), b) for w, b in zip(self.weight, self.bias)]
        w, b = self.weight[-1], self.bias[-1]
        out = w.shape[1]
        pad = -out % max(1, 16 // w.element_size())
        if pad:
            if self._padded_last is None or self._padded_last[0].dtype != w.dtype \
                    or self._padded_last[0].device != w.device:
                self._padded_last = (F.pad(w.detach(), (0, 0, 0, pad)).contiguous(),
                                     F.pad(b.detach(), (0, pad)).contiguous())
            layers[-1] = (self._padded_last[0].transpose(-2, -1), self._padded_last[1])
        return layers

    def _probe_grouped(self, x: Tensor) -> None:
        """Try `torch._grouped_mm` once on every layer shape; remember why it cannot run."""
        self._grouped_probed = True
        if not hasattr(torch, "_grouped_mm"):
            self.grouped_fallback_reason = f"torch {torch.__version__} has no _grouped_mm"
            return
        E = self.shape.num_experts
        offs = torch.arange(1, E + 1, device=x.device, dtype=torch.int32) * 8
        try:
            for w, _ in self._grouped_layers():
                a = torch.randn(8 * E, w.shape[-2], device=x.device, dtype=x.dtype)
                torch._grouped_mm(a, w, offs=offs)
        except (RuntimeError, NotImplementedError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.grouped_fallback_reason = f"_grouped_mm unavailable for {x.dtype} on {x.device.type}: {first}"

    def grouped_kernel(self, x: Tensor) -> str:
        """Which grouped kernel runs for this batch.

        `grouped_mm`: the ragged grouped GEMM, no host sync; it wins while experts see few
        tokens (reading the weights dominates). `padded_bmm`: one cuBLAS batched GEMM over
        experts padded to the fullest one (one host sync); it wins where the ragged kernel has
        no fast path (float32, float16, pre-Hopper) and at mid-size loads. `expert_loop`: one
        cuBLAS GEMM per expert on the sorted tokens; at large loads cuBLAS's own tiles beat
        both grouped forms, so grouped never falls behind `sorted`.
        """
        if not self._grouped_probed:
            self._probe_grouped(x)
        if not x.is_cuda:
            return "padded_bmm" if self.grouped_fallback_reason else "grouped_mm"
        rows_per_expert = x.shape[0] * self.shape.top_k / self.shape.num_experts
        if rows_per_expert >= EXPERT_LOOP_FROM_ROWS:
            return "expert_loop"
        fast = x.dtype == torch.bfloat16 and torch.cuda.get_device_capability(x.device)[0] >= 9
        if fast and self.grouped_fallback_reason is None and rows_per_expert < PADDED_BMM_FROM_ROWS:
            return "grouped_mm"
        return "padded_bmm"

    def _forward_padded_bmm(self, x: Tensor, flat_idx: Tensor, token: Tensor, gate: Tensor, h: Tensor) -> Tensor:
        E = self.shape.num_experts
        counts = torch.bincount(flat_idx, minlength=E)
        capacity = int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(flat_idx.shape[0], device=x.device) - starts[flat_idx]
        buf = h.new_zeros(E, capacity, h.shape[1])
        buf[flat_idx, slot] = h
        last = len(self.weight) - 1
        for l, (w, b) in enumerate(zip(self.weight, self.bias)):
            buf = torch.baddbmm(b.unsqueeze(1), buf, w.transpose(-2, -1))
            if l < last:
                buf = F.relu(buf)
        return self._combine(x, token, gate, buf[flat_idx, slot])

    def _forward_grouped(self, x: Tensor, gates: Tensor, idx: Tensor) -> Tensor:
        """Every layer of all experts as one grouped GEMM (see `grouped_kernel`)."""
        kernel = self.grouped_kernel(x)
        flat_idx, token, gate, h = self._dispatch(x, gates, idx)
        if kernel == "padded_bmm":
            return self._forward_padded_bmm(x, flat_idx, token, gate, h)
        if kernel == "expert_loop":
            counts = torch.bincount(flat_idx, minlength=self.shape.num_experts).tolist()
            return self._combine(x, token, gate, self._loop_sorted(h, counts))
        counts = torch.zeros(self.shape.num_experts, dtype=torch.int32, device=x.device)
        counts.index_add_(0, flat_idx, torch.ones_like(flat_idx, dtype=torch.int32))
        offs = torch.cumsum(counts, 0, dtype=torch.int32)
        layers = self._grouped_layers()
        for l, (w, b) in enumerate(layers):
            h = torch._grouped_mm(h, w, offs=offs) + b[flat_idx]
            if l < len(layers) - 1:
                h = F.relu(h)
        return self._combine(x, token, gate, h[:, : self.shape.output_dim])


def zipf_experts(num_tokens: int, num_experts: int, top_k: int, exponent: float,
                 generator: torch.Generator) -> Tensor:
    """[num_tokens, top_k] distinct expert ids drawn with P(expert r) ∝ 1 / (r+1)^exponent."""
    probs = 1.0 / torch.arange(1, num_experts + 1, dtype=torch.float64) ** exponent
    return torch.multinomial(probs.expand(num_tokens, -1), top_k, replacement=False, generator=generator)


ModelFactory = Callable[[], nn.Module]
