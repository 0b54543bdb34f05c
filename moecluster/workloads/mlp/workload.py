"""The seed's MLP workload behind the `Workload` interface (dense twin or MoE).

`prepare` builds the model and its fixed inputs, then puts the model into its fastest form by
measurement (`workloads.forms`): the dense twin's weight layout, grouped's kernel, and
a CUDA graph or not, so both sides of a comparison run at their best; the form and every
candidate's time are recorded in `Prepared.form`.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from moecluster.spec.records import ParamCounts, TaskSpec
from moecluster.workloads.workload import Prepared
from moecluster.workloads.forms import PROCESS_FORM_CACHE, FormCache, Tools, choose_form, output_tolerance
from moecluster.workloads.graphs import graph_policy, require_graphs_possible
from moecluster.workloads.mlp.dense import DenseMLP
from moecluster.workloads.mlp.form_options import FormKey, model_options
from moecluster.workloads.mlp.models import IMPLS, MoEMLP, zipf_experts
from moecluster.spec.mlp.shapes import HOST_SYNC, DenseShape, MoEShape, ShapeError
from moecluster.workloads.mlp.training import synthetic_classification, train

LOADS = ("router", "zipf")


def shape_of(spec: TaskSpec) -> DenseShape | MoEShape:
    try:
        return MoEShape(**spec.model) if spec.kind == "moe" else DenseShape(**spec.model)
    except TypeError as exc:
        raise ShapeError(f"bad {spec.kind} model fields {sorted(spec.model)}: {exc}") from None


def _runner(model: nn.Module, inputs: Tensor, compiled: bool) -> Callable[[], Tensor]:
    """One batch of `model` (torch.compile'd if asked) on the task's fixed inputs."""
    fn = torch.compile(model) if compiled else model

    def run() -> Tensor:
        return fn(inputs)
    return run


def check_device_memory(spec: TaskSpec, device: torch.device, dtype: torch.dtype) -> None:
    """ValueError with both numbers when the weights cannot fit in the GPU's free memory.

    Checked before anything is allocated, so a model too big for the device fails at once
    with the memory it needs and the memory there is, instead of an out-of-memory error
    midway. The model is built in torch's default dtype, then converted: the larger element
    size of the two is what the weights need at their peak. CPU tasks are not checked.
    """
    if device.type != "cuda":
        return
    element = max(torch.empty((), dtype=torch.get_default_dtype()).element_size(),
                  torch.empty((), dtype=dtype).element_size())
    total = shape_of(spec).params().total
    needed = total * element
    free, capacity = torch.cuda.mem_get_info(device)
    if needed > free:
        raise ValueError(f"task {spec.task_id}: the weights need {needed / 2**30:,.2f} GiB ({total:,} parameters ×"
                         f" {element} bytes), but {device} has {free / 2**30:,.2f} GiB free of"
                         f" {capacity / 2**30:,.2f} GiB")


class MlpWorkload:
    """The seed's MLP pairs. `forms`: where form choices are kept (the process's cache by
    default, so the repeats of a pair measure once); `tools`: how forms are timed/captured."""

    name = "mlp"

    def __init__(self, forms: FormCache | None = None, tools: Tools | None = None) -> None:
        self.forms = PROCESS_FORM_CACHE if forms is None else forms
        self.tools = tools

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
        if spec.cuda_graphs and spec.impl in HOST_SYNC:
            raise ValueError(f"cuda_graphs: true is impossible for impl {spec.impl}: {HOST_SYNC[spec.impl]};"
                             " leave cuda_graphs unset to capture where possible")
        require_graphs_possible(spec.device, spec.cuda_graphs)

    def params(self, spec: TaskSpec) -> ParamCounts:
        return shape_of(spec).params()

    def prepare(self, spec: TaskSpec, device: torch.device, dtype: torch.dtype) -> Prepared:
        self.validate(spec)
        check_device_memory(spec, device, dtype)
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
            hit = sum(1 for t in expert_tokens if t > 0)
            bytes_per_batch = shape.bytes_per_batch(spec.batch_size, inputs.element_size(), experts_hit=hit)

        candidates = model_options(model, inputs, expert_tokens, compiled=spec.compile)
        key = FormKey(kind=spec.kind, impl=spec.impl, model=tuple(sorted(spec.model.items())), dtype=spec.dtype,
                      batch_size=spec.batch_size, device=str(device), compile=spec.compile,
                      cuda_graphs=spec.cuda_graphs, expert_tokens=expert_tokens)
        chosen = choose_form(candidates.options, _runner(model, inputs, spec.compile), device=device,
                             policy=graph_policy(device, spec.cuda_graphs), tolerance=output_tolerance(dtype),
                             cache=self.forms, key=key, keepalive=(inputs,), tools=self.tools)
        if isinstance(model, DenseMLP):
            model.release_derived()  # the [in,out] copies, unless the chosen layout reads them
        form = dict(chosen.form)
        if candidates.skipped:
            form["skipped"] = "; ".join(candidates.skipped)
        return Prepared(model=model, inputs=inputs, items_per_batch=spec.batch_size, step=chosen.step,
                        params=shape.params(), flops_per_item=shape.flops_per_item(),
                        bytes_per_batch=bytes_per_batch, expert_tokens=expert_tokens, notes=notes, form=form,
                        choice=chosen.choice.margin)
