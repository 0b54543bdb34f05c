"""The seed's MLP workload behind the `Workload` interface (dense twin or MoE)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ...records import ParamCounts, TaskSpec
from ..base import Prepared
from .models import IMPLS, DenseMLP, MoEMLP, zipf_experts
from .shapes import DenseShape, MoEShape, ShapeError
from .training import synthetic_classification, train

LOADS = ("router", "zipf")
GRAPH_SAFE = ("dense", "grouped")  # implementations with no host sync in forward


def shape_of(spec: TaskSpec) -> DenseShape | MoEShape:
    try:
        return MoEShape(**spec.model) if spec.kind == "moe" else DenseShape(**spec.model)
    except TypeError as exc:
        raise ShapeError(f"bad {spec.kind} model fields {sorted(spec.model)}: {exc}") from None


class MlpWorkload:
    name = "mlp"

    def validate(self, spec: TaskSpec) -> None:
        shape_of(spec)
        if spec.kind == "moe" and spec.impl not in IMPLS:
            raise ValueError(f"impl {spec.impl!r} is not an MoE implementation ({', '.join(IMPLS)})")
        if spec.kind == "dense" and spec.impl != "dense":
            raise ValueError(f"impl of a dense task must be 'dense', got {spec.impl!r}")
        if spec.load not in LOADS:
            raise ValueError(f"load {spec.load!r} unknown ({', '.join(LOADS)})")
        if spec.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {spec.batch_size}")
        if spec.cuda_graphs and spec.impl not in GRAPH_SAFE:
            raise ValueError(f"cuda_graphs needs an implementation without host syncs ({', '.join(GRAPH_SAFE)}),"
                             f" not {spec.impl!r}")

    def params(self, spec: TaskSpec) -> ParamCounts:
        return shape_of(spec).params()

    def prepare(self, spec: TaskSpec, device: torch.device, dtype: torch.dtype) -> Prepared:
        self.validate(spec)
        shape = shape_of(spec)
        gen = torch.Generator().manual_seed(spec.seed)
        torch.manual_seed(spec.seed)
        with torch.device(device):
            model: nn.Module = MoEMLP(shape, spec.impl) if isinstance(shape, MoEShape) else DenseMLP(shape)
        notes: list[str] = []
        inputs: Tensor
        if spec.train_epochs > 0:
            x, y = synthetic_classification(10_000, shape.input_dim, shape.output_dim, gen)
            x, y = x.to(device), y.to(device)
            if isinstance(model, MoEMLP):
                model.impl = "sorted"  # same weights for every impl; sorted trains fastest
            acc = train(model, x, y, epochs=spec.train_epochs, generator=gen)
            if isinstance(model, MoEMLP):
                model.impl = spec.impl
            notes.append(f"trained {spec.train_epochs} epochs, final train accuracy {acc[-1]:.3f}")
            reps = -(-spec.batch_size // x.shape[0])
            inputs = x.repeat(reps, 1)[: spec.batch_size]
        else:
            inputs = torch.randn(spec.batch_size, shape.input_dim, generator=gen).to(device)
        model = model.to(dtype).eval().requires_grad_(False)
        inputs = inputs.to(dtype).contiguous()

        expert_tokens: tuple[int, ...] = ()
        bytes_per_batch = shape.bytes_per_batch(spec.batch_size, inputs.element_size()) \
            if isinstance(shape, DenseShape) else 0.0
        if isinstance(model, MoEMLP):
            assert isinstance(shape, MoEShape)
            if spec.load == "zipf":
                model.forced_experts = zipf_experts(spec.batch_size, shape.num_experts, shape.top_k,
                                                    spec.zipf_s, gen).to(device)
            with torch.inference_mode():
                expert_tokens = tuple(model.expert_tokens(inputs))
                if spec.impl == "grouped":
                    model(inputs)  # probe the grouped GEMM now, not inside the window
            if model.grouped_fallback_reason:
                notes.append(f"grouped fell back to a per-expert loop: {model.grouped_fallback_reason}")
            hit = sum(1 for t in expert_tokens if t > 0)
            bytes_per_batch = shape.bytes_per_batch(spec.batch_size, inputs.element_size(), experts_hit=hit)

        fn = torch.compile(model) if spec.compile else model
        step = self._graph_step(fn, inputs, spec, model) if spec.cuda_graphs else (lambda: fn(inputs))
        return Prepared(model=model, inputs=inputs, items_per_batch=spec.batch_size, step=step,
                        params=shape.params(), flops_per_item=shape.flops_per_item(),
                        bytes_per_batch=bytes_per_batch, expert_tokens=expert_tokens, notes=notes)

    @staticmethod
    def _graph_step(fn: object, inputs: Tensor, spec: TaskSpec, model: nn.Module):  # type: ignore[no-untyped-def]
        if inputs.device.type != "cuda":
            raise ValueError("cuda_graphs needs device cuda")
        if isinstance(model, MoEMLP) and model.grouped_fallback_reason:
            raise ValueError(f"cuda_graphs impossible: {model.grouped_fallback_reason}")
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(3):
                fn(inputs)  # type: ignore[operator]
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            fn(inputs)  # type: ignore[operator]
        return graph.replay
