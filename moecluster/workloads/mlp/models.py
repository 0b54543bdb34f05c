"""The seed's models in torch: a dense MLP and an MoE of MLP experts with three implementations.

All MoE implementations compute the same function from the same weights. Expert weights
are stacked per layer in `nn.Linear` layout, `weight[l]: [E, out, in]`, `bias[l]: [E, out]`.
`naive` and `sorted` are the seed's code, kept as references: they apply one expert slice at
a time and sync with the host. `grouped` runs every expert of a layer at once with one of the
kernels of `experts.py`, chosen by measurement per task (`kernel`), and exposes that as
`experts_forward` for expert-parallel code; its fused Triton kernel (`fused.py`) takes the
unsorted copies itself and has its tiles tuned per load at prepare (`tune_fused`). The dense
MLP lives in `dense.py`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moecluster.workloads.mlp.dense import DenseMLP
from moecluster.workloads.mlp import fused
from moecluster.workloads.mlp.derived import DerivedTensors
from moecluster.workloads.mlp.experts import EXPERT_LOOP, FUSED, GROUPED_KERNELS, GROUPED_MM, PADDED_BMM, expert_ids, \
    expert_loop, \
    fallback_order, grouped_mm, padded_bmm
from moecluster.workloads.mlp.fused_tiles import PROCESS_TILE_CACHE, FusedTiles, Load, TileCache, Trial
from moecluster.spec.mlp.shapes import IMPLS, MoEShape

__all__ = ["EXPERT_LOOP", "FUSED", "GROUPED_KERNELS", "GROUPED_MM", "IMPLS", "PADDED_BMM", "DenseMLP", "ModelFactory",
           "MoEMLP", "zipf_experts"]



def route_top_k(router: nn.Module, x: Tensor, top_k: int, forced: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The seed's routing, shared by the one-device and the expert-parallel MoE: (gates [B, k],
    expert ids [B, k]), top-k on the router's logits (or the `forced` ids of a skewed load,
    when they are given for exactly these rows), gates the softmax over the k chosen logits."""
    logits = router(x)
    if forced is not None and forced.shape[0] == x.shape[0]:
        idx = forced
        chosen = logits.gather(1, idx)
    else:
        chosen, idx = torch.topk(logits, top_k, dim=1)
    return F.softmax(chosen, dim=1), idx

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
        self.kernel: str | None = None  # grouped kernel chosen by measurement; None: the fallback order's first
        self.grouped_fallback_reason: str | None = None  # why _grouped_mm cannot run (last device/dtype asked)
        self._grouped_mm_probe: dict[tuple[str, torch.dtype], str | None] = {}
        self._padded_last = DerivedTensors()
        self._host_counts: tuple[int, ...] | None = None  # set only inside `counts_fixed`
        self.fused_precision = fused.DEFAULT_PRECISION  # fp32 products of the fused kernel: exact unless asked
        self.tile_cache: TileCache = PROCESS_TILE_CACHE  # the fused kernel's tuned tiles (per process)
        self.fused_trials: tuple[Trial, ...] = ()  # every candidate of the last tuning, for the record

    # -- routing ------------------------------------------------------------------------
    def route(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(gates [B, k], expert ids [B, k]); gates are the softmax over the k chosen logits."""
        return route_top_k(self.router, x, self.shape.top_k, self.forced_experts)

    def expert_tokens(self, x: Tensor) -> list[int]:
        """Tokens routed to each expert for input `x` (the realised load)."""
        with torch.no_grad():
            _, idx = self.route(x)
            return torch.bincount(idx.flatten(), minlength=self.shape.num_experts).tolist()

    # -- one expert, one slice at a time ----------------------------------------------------
    def _expert(self, e: int, h: Tensor) -> Tensor:
        last = len(self.weight) - 1
        for i, (w, b) in enumerate(zip(self.weight, self.bias)):
            h = F.linear(h, w[e], b[e])
            if i < last:
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

    # -- grouped: every expert of a layer at once ---------------------------------------------
    def _grouped_mm_layers(self) -> list[tuple[Tensor, Tensor]]:
        """Per layer (weight as `[E, in, out]` column-major view, bias `[E, out]`).

        The fast grouped kernel needs every row stride to be a multiple of 16 bytes, so the
        output layer (10 wide) gets a zero-padded copy in the model's dtype, derived from
        the weights and rebuilt whenever they change (`load_state_dict`, `.to`, in-place
        writes); its extra columns are cut off after the last GEMM.
        """
        layers = [(w.transpose(-2, -1), b) for w, b in zip(self.weight, self.bias)]
        w, b = self.weight[-1], self.bias[-1]
        pad = -w.shape[1] % max(1, 16 // w.element_size())
        if pad:
            w_pad, b_pad = self._padded_last.get([w, b], lambda: (F.pad(w.detach(), (0, 0, 0, pad)).contiguous(),
                                                                  F.pad(b.detach(), (0, pad)).contiguous()))
            layers[-1] = (w_pad.transpose(-2, -1), b_pad)
        return layers

    def derived_tensors(self) -> tuple[Tensor, ...]:
        """The derived copies the grouped kernels read (a CUDA graph must keep them alive)."""
        return self._padded_last.tensors

    def grouped_mm_unavailable(self, device: torch.device, dtype: torch.dtype) -> str | None:
        """Why `torch._grouped_mm` cannot run every layer shape here (tried once per device
        and dtype), or None where it can."""
        key = (str(device), dtype)
        if key not in self._grouped_mm_probe:
            self._grouped_mm_probe[key] = self._probe_grouped_mm(device, dtype)
        reason = self._grouped_mm_probe[key]
        self.grouped_fallback_reason = reason
        return reason

    def _probe_grouped_mm(self, device: torch.device, dtype: torch.dtype) -> str | None:
        if not hasattr(torch, "_grouped_mm"):
            return f"torch {torch.__version__} has no _grouped_mm"
        num_experts = self.shape.num_experts
        offs = torch.arange(1, num_experts + 1, device=device, dtype=torch.int32) * 8
        try:
            with torch.no_grad():
                for w, _ in self._grouped_mm_layers():
                    a = torch.ones(8 * num_experts, w.shape[-2], device=device, dtype=dtype)  # no RNG drawn
                    torch._grouped_mm(a, w, offs=offs)
        except (RuntimeError, NotImplementedError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"_grouped_mm unavailable for {dtype} on {device.type}: {first}"
        return None

    def kernel_order(self, rows: int, device: torch.device, dtype: torch.dtype) -> list[tuple[str, str | None]]:
        """Every grouped kernel for `rows` token copies, in the fallback order of the H100's
        thresholds, each with why it cannot run here (None where it can)."""
        unavailable = self.grouped_mm_unavailable(device, dtype)
        fast = unavailable is None and (device.type != "cuda" or (
            dtype == torch.bfloat16 and torch.cuda.get_device_capability(device)[0] >= 9))
        order = fallback_order(rows / self.shape.num_experts, fast)
        why = {GROUPED_MM: unavailable, FUSED: fused.unavailable(device, dtype)}
        return [(k, why.get(k)) for k in order]

    def grouped_kernel(self, h_sorted: Tensor) -> str:
        """The kernel `experts_forward` runs: the measured choice (`self.kernel`), else the
        first runnable kernel of the fallback order."""
        if self.kernel is not None:
            return self.kernel
        order = self.kernel_order(h_sorted.shape[0], h_sorted.device, h_sorted.dtype)
        return next(k for k, why in order if why is None)

    @contextmanager
    def counts_fixed(self, host_counts: Sequence[int]) -> Iterator[None]:
        """Within: `padded_bmm` and `expert_loop` take the per-expert counts from here instead
        of reading them from the device (no host sync), so a batch can be captured in a CUDA
        graph. Valid only for inputs with exactly these counts (a task's inputs are fixed)."""
        if len(host_counts) != self.shape.num_experts:
            raise ValueError(f"{len(host_counts)} counts for {self.shape.num_experts} experts")
        self._host_counts = tuple(int(c) for c in host_counts)
        try:
            yield
        finally:
            self._host_counts = None

    def experts_forward(self, h_sorted: Tensor, counts: Tensor) -> Tensor:
        """Every expert's layers on token copies sorted by expert: `[N, in]` -> `[N, out]`.

        `counts`: tokens per expert, `[E]` int on the device, summing to N. Runs the chosen
        grouped kernel (`grouped_kernel`); expert-parallel code calls it on a local model that
        holds a slice of the experts.
        """
        kernel = self.grouped_kernel(h_sorted)
        if kernel == FUSED:
            rows = h_sorted.shape[0]
            tiles = self.fused_tiles(rows, h_sorted)
            return fused.forward(self._fused_layers(), h_sorted, expert_ids(counts, rows), None, 1, tiles,
                                 self.fused_precision, h_sorted.dtype)
        if kernel == GROUPED_MM:
            return grouped_mm(self._grouped_mm_layers(), h_sorted, counts, self.shape.output_dim)
        layers = list(zip(self.weight, self.bias))
        if kernel == PADDED_BMM:
            return padded_bmm(layers, h_sorted, counts, self._host_counts)
        if kernel == EXPERT_LOOP:
            return expert_loop(layers, h_sorted, counts, self._host_counts)
        raise ValueError(f"unknown grouped kernel {kernel!r} ({', '.join(GROUPED_KERNELS)})")

    def expert_counts(self, flat_idx: Tensor) -> Tensor:
        """Tokens per expert `[E]` (int32) of expert ids, without a host sync (unlike bincount on CUDA)."""
        counts = torch.zeros(self.shape.num_experts, dtype=torch.int32, device=flat_idx.device)
        return counts.index_add_(0, flat_idx, torch.ones_like(flat_idx, dtype=torch.int32))

    # -- the fused Triton kernel ------------------------------------------------------------
    def _fused_layers(self) -> list[tuple[Tensor, Tensor]]:
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            raise RuntimeError("the fused Triton kernels have no backward: run them under torch.no_grad() or"
                               " inference_mode, or train with impl sorted")
        return list(zip(self.weight, self.bias))

    def _fused_family(self, x: Tensor) -> fused.Family:
        return fused.family(list(zip(self.weight, self.bias)), x.device, x.dtype, self.fused_precision)

    def fused_tiles(self, num_copies: int, x: Tensor) -> FusedTiles:
        """The tiles a fused forward of `num_copies` copies runs with; never measures (see `tune_fused`)."""
        load = Load(num_copies=num_copies, num_experts=self.shape.num_experts)
        return self.tile_cache.lookup(self._fused_family(x), load, x.element_size())

    def tune_fused(self, x: Tensor) -> FusedTiles:
        """Tile the fused kernel for the load of input `x` by measurement (prepare time only), once per
        process and load: the routing of `x` sets the load; later forwards of it take these tiles."""
        with torch.inference_mode():
            gates, idx = self.route(x)
            load = Load(num_copies=idx.numel(), num_experts=self.shape.num_experts)
            family = self._fused_family(x)
            cached = self.tile_cache.get(family, load)
            if cached is not None:
                self.fused_trials = ()  # nothing measured now
                return cached
            tiles, self.fused_trials = fused.tune(list(zip(self.weight, self.bias)), x, idx.flatten(),
                                                  gates.flatten(), self.shape.top_k, self.fused_precision)
        self.tile_cache.put(family, load, tiles)
        return tiles

    def _forward_fused(self, x: Tensor, gates: Tensor, idx: Tensor) -> Tensor:
        """Permutation, every expert layer and the gate in Triton kernels; the combine sums each token's k copies."""
        tiles = self.fused_tiles(idx.numel(), x)
        y = fused.forward(self._fused_layers(), x, idx.flatten(), gates.flatten(), self.shape.top_k, tiles,
                          self.fused_precision, torch.float32)
        return y.view(x.shape[0], self.shape.top_k, -1).sum(1).to(x.dtype)

    def _forward_grouped(self, x: Tensor, gates: Tensor, idx: Tensor) -> Tensor:
        """Sort token copies by expert, run every expert at once (`experts_forward`), combine; the fused
        kernel takes the unsorted copies itself."""
        if self.kernel == FUSED:
            return self._forward_fused(x, gates, idx)
        flat_idx, token, gate, h = self._dispatch(x, gates, idx)
        return self._combine(x, token, gate, self.experts_forward(h, self.expert_counts(flat_idx)))


def zipf_experts(num_tokens: int, num_experts: int, top_k: int, exponent: float,
                 generator: torch.Generator) -> Tensor:
    """[num_tokens, top_k] distinct expert ids drawn with P(expert r) ∝ 1 / (r+1)^exponent."""
    probs = 1.0 / torch.arange(1, num_experts + 1, dtype=torch.float64) ** exponent
    return torch.multinomial(probs.expand(num_tokens, -1), top_k, replacement=False, generator=generator)


ModelFactory = Callable[[], nn.Module]
