"""The candidate forms of the seed's MLP models, for `workloads.forms.choose_form`.

- dense: every weight layout / GEMM call of `dense.DENSE_LAYOUTS` (the twin runs its fastest,
  as the MoE does);
- grouped: every grouped kernel that can run here (`experts.py`), in the fallback order of the
  H100's thresholds; the fused Triton kernel has its tiles tuned for the task's load first
  (`MoEMLP.tune_fused`: compiling and measuring at prepare, never in a window); the
  host-syncing ones (`padded_bmm`, `expert_loop`) are captured in a
  CUDA graph with the per-expert counts fixed at prepare, which is sound because a task
  repeats one fixed batch (the graph's output is checked against eager before it is used);
- naive and sorted: the seed's code as it is, the references; they sync with the host, so
  they run eagerly.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from moecluster.workloads.forms import FormOption, GraphPlan
from moecluster.workloads.mlp.dense import ADDMM_IN_OUT, DENSE_LAYOUTS, F_LINEAR, DenseMLP, dense_layouts
from moecluster.workloads.mlp import fused
from moecluster.workloads.mlp.experts import EXPERT_LOOP, FUSED, PADDED_BMM
from moecluster.workloads.mlp.models import MoEMLP
from moecluster.spec.mlp.shapes import HOST_SYNC

REFERENCE = "reference: the seed's code"
GROUPED_LAYOUT = "stacked [E,out,in] per layer (grouped_mm reads [E,in,out] views)"
CHECKED = "output checked against eager"
FIXED_COUNTS = f"captured with per-expert counts fixed at prepare (the task's inputs are fixed); {CHECKED}"
PADDED_MEMORY_SHARE = 0.5  # a padded buffer larger than this share of free GPU memory is not tried


@dataclass(frozen=True)
class Options:
    """The candidates of one model, and the forms left out with why (for the record)."""

    options: tuple[FormOption, ...]
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class FormKey:
    """What a form choice depends on: the model, its batch, dtype, device and realised load."""

    kind: str
    impl: str
    model: tuple[tuple[str, int], ...]
    dtype: str
    batch_size: int
    device: str
    compile: bool
    cuda_graphs: bool | None
    expert_tokens: tuple[int, ...]


def _set(model: nn.Module, name: str, value: object) -> Callable[[], None]:
    def use() -> None:
        setattr(model, name, value)
    return use


def dense_options(model: DenseMLP, compiled: bool) -> Options:
    """Every dense layout this torch can run; under torch.compile only the two weight layouts
    (inductor fuses bias and ReLU itself, and every candidate costs a compilation)."""
    layouts = dense_layouts()
    skipped = tuple(f"{name}: needs torch._addmm_activation" for name in DENSE_LAYOUTS if name not in layouts)
    if compiled:
        skipped += tuple(f"{name}: not tried under torch.compile (it fuses bias and ReLU itself)"
                         for name in layouts if name not in (F_LINEAR, ADDMM_IN_OUT))
        layouts = (F_LINEAR, ADDMM_IN_OUT)
    options = tuple(FormOption(name=name, aspects=(("layout", name), ("kernel", DENSE_LAYOUTS[name])),
                               use=_set(model, "layout", name), graph=GraphPlan(note=f"captured; {CHECKED}"),
                               keepalive=model.derived_tensors)
                    for name in layouts)
    return Options(options=options, skipped=skipped)


def _padded_bytes(model: MoEMLP, expert_tokens: Sequence[int], dtype: torch.dtype) -> int:
    shape = model.shape
    width = max(max(d) for d in shape.expert.layer_dims())
    return max(expert_tokens, default=0) * shape.num_experts * width * torch.empty((), dtype=dtype).element_size()


def _fused_tiles(model: MoEMLP, inputs: Tensor) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """Tune the fused kernel for this load (prepare time): its record aspects, or why it cannot run."""
    rows = inputs.shape[0] * model.shape.top_k
    if inputs.is_cuda:
        block_m = 128  # the largest BLOCK_M tried: the most padding
        need = fused.buffer_bytes(rows, model.shape.num_experts, block_m, list(zip(model.weight, model.bias)),
                                  inputs.element_size())
        free = torch.cuda.mem_get_info(inputs.device)[0]
        if need > PADDED_MEMORY_SHARE * free:
            return (), f"its activation buffers ({need / 2**30:.1f} GiB) exceed half the free GPU memory"
    try:
        tiles = model.tune_fused(inputs)
    except (RuntimeError, ValueError) as exc:
        return (), f"tuning failed: {str(exc).strip().splitlines()[0][:200]}"
    aspects = (("layout", GROUPED_LAYOUT), ("kernel", FUSED), ("tiles", tiles.label()))
    note = fused.precision_note(inputs.dtype, model.fused_precision)
    return aspects + ((("precision", note),) if note else ()), None


def grouped_options(model: MoEMLP, inputs: Tensor, expert_tokens: Sequence[int]) -> Options:
    """Every grouped kernel that can run for these inputs, the likeliest fastest first."""
    rows = inputs.shape[0] * model.shape.top_k
    options: list[FormOption] = []
    skipped: list[str] = []
    for kernel, why_not in model.kernel_order(rows, inputs.device, inputs.dtype):
        aspects: tuple[tuple[str, str], ...] = (("layout", GROUPED_LAYOUT), ("kernel", kernel))
        if why_not is None and kernel == PADDED_BMM and inputs.is_cuda:
            need = _padded_bytes(model, expert_tokens, inputs.dtype)
            free = torch.cuda.mem_get_info(inputs.device)[0]
            if need > PADDED_MEMORY_SHARE * free:
                why_not = f"its padded buffer ({need / 2**30:.1f} GiB) exceeds half the free GPU memory"
        if why_not is None and kernel == FUSED:
            aspects, why_not = _fused_tiles(model, inputs)
        if why_not is not None:
            skipped.append(f"{kernel}: {why_not}")
            continue
        fixed = kernel in (PADDED_BMM, EXPERT_LOOP)
        graph = GraphPlan(note=FIXED_COUNTS, context=lambda: model.counts_fixed(expert_tokens)) if fixed \
            else GraphPlan(note=f"captured; {CHECKED}")
        options.append(FormOption(name=kernel, aspects=aspects, use=_set(model, "kernel", kernel), graph=graph,
                                  keepalive=model.derived_tensors))
    return Options(options=tuple(options), skipped=tuple(skipped))


def reference_options(model: MoEMLP) -> Options:
    """The seed's code as it is: one form, eager (it syncs with the host)."""
    option = FormOption(name=model.impl, aspects=(("layout", REFERENCE), ("kernel", REFERENCE)),
                        use=lambda: None, graph=GraphPlan(blocker=HOST_SYNC[model.impl]))
    return Options(options=(option,))


def model_options(model: nn.Module, inputs: Tensor, expert_tokens: Sequence[int], compiled: bool) -> Options:
    """The candidate forms of a dense or MoE model of this workload."""
    if isinstance(model, DenseMLP):
        return dense_options(model, compiled)
    if isinstance(model, MoEMLP):
        return grouped_options(model, inputs, expert_tokens) if model.impl == "grouped" else reference_options(model)
    raise TypeError(f"no forms known for {type(model).__name__}")

