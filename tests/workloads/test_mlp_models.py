"""All MoE implementations, and every kernel of grouped, compute the same function from the same weights."""
import pytest
import torch

from moecluster.spec.records import TaskSpec
from moecluster.workloads.forms import FormCache
from moecluster.workloads.mlp.experts import (
    EXPERT_LOOP,
    FUSED,
    GROUPED_KERNELS,
    GROUPED_MM,
    PADDED_BMM,
    fallback_order,
)
from moecluster.workloads.mlp.models import DenseMLP, MoEMLP, zipf_experts
from moecluster.spec.mlp.shapes import MoEShape, match_dense, preset
from moecluster.workloads.mlp.workload import MlpWorkload

SHAPE = MoEShape(num_experts=6, expert_hidden_dim=32, expert_num_layers=3, top_k=2)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref.double()).norm() / ref.double().norm())


@pytest.fixture
def moe_and_input():
    torch.manual_seed(1)
    model = MoEMLP(SHAPE, "naive").eval()
    return model, torch.randn(50, SHAPE.input_dim)


def test_parameter_count_of_the_torch_models_matches_the_accounting():
    assert sum(p.numel() for p in MoEMLP(preset("small")).parameters()) == preset("small").params().total
    dense = match_dense(preset("small"))
    assert sum(p.numel() for p in DenseMLP(dense).parameters()) == dense.params().total


def reference(model: MoEMLP, x: torch.Tensor) -> torch.Tensor:
    """The MoE's function in float64, token by token, from the stacked weights."""
    with torch.no_grad():
        gates, idx = model.route(x)
        ref = torch.zeros(x.shape[0], SHAPE.output_dim, dtype=torch.float64)
        for t in range(x.shape[0]):
            for j in range(SHAPE.top_k):
                ref[t] += gates[t, j].double() * expert_reference(model, int(idx[t, j]), x[t])
    return ref


def expert_reference(model: MoEMLP, e: int, h: torch.Tensor) -> torch.Tensor:
    h = h.double()
    for i, (w, b) in enumerate(zip(model.weight, model.bias)):
        h = h @ w[e].double().t() + b[e].double()
        h = torch.relu(h) if i < len(model.weight) - 1 else h
    return h


def available_kernels(model: MoEMLP, x: torch.Tensor) -> list[str]:
    return [k for k, why in model.kernel_order(x.shape[0] * SHAPE.top_k, x.device, x.dtype) if why is None]


def why_unavailable(model: MoEMLP, x: torch.Tensor, kernel: str) -> str:
    return dict(model.kernel_order(x.shape[0] * SHAPE.top_k, x.device, x.dtype))[kernel] or "available"


def test_naive_matches_a_float64_reference(moe_and_input):
    model, x = moe_and_input
    with torch.no_grad():
        assert rel_err(model(x), reference(model, x)) < 1e-6


@pytest.mark.parametrize("impl", ["sorted", "grouped"])
def test_impls_agree_with_naive_in_fp32(moe_and_input, impl):
    model, x = moe_and_input
    with torch.no_grad():
        ref = model(x)
        model.impl = impl
        assert rel_err(model(x), ref) < 1e-6


@pytest.mark.parametrize("kernel", GROUPED_KERNELS)
def test_every_grouped_kernel_matches_a_float64_reference_on_fresh_inputs(moe_and_input, kernel):
    model, _ = moe_and_input
    model.impl = "grouped"
    for seed in (10, 11):
        x = torch.randn(37, SHAPE.input_dim, generator=torch.Generator().manual_seed(seed))
        if kernel not in available_kernels(model, x):
            pytest.skip(f"{kernel}: {why_unavailable(model, x, kernel)}")
        model.kernel = kernel
        with torch.no_grad():
            assert model.grouped_kernel(x) == kernel
            assert rel_err(model(x), reference(model, x)) < 1e-6


@pytest.mark.parametrize("kernel", GROUPED_KERNELS)
def test_experts_forward_runs_sorted_copies_with_idle_experts(moe_and_input, kernel):
    model, _ = moe_and_input
    counts = torch.tensor([3, 0, 5, 1, 0, 2])  # two experts receive nothing
    h = torch.randn(int(counts.sum()), SHAPE.input_dim, generator=torch.Generator().manual_seed(5))
    if kernel not in available_kernels(model, h):
        pytest.skip(f"{kernel}: {why_unavailable(model, h, kernel)}")
    model.kernel = kernel
    eid = torch.repeat_interleave(torch.arange(SHAPE.num_experts), counts)
    ref = torch.stack([expert_reference(model, int(e), row) for e, row in zip(eid, h)])
    with torch.no_grad():
        for dtype in (torch.int32, torch.int64):
            out = model.experts_forward(h, counts.to(dtype))
            assert out.shape == (h.shape[0], SHAPE.output_dim) and rel_err(out, ref) < 1e-6


@pytest.mark.parametrize("kernel", [PADDED_BMM, EXPERT_LOOP])
def test_counts_fixed_in_advance_give_the_eager_result(moe_and_input, kernel):
    model, x = moe_and_input
    model.impl, model.kernel = "grouped", kernel
    with torch.no_grad():
        eager = model(x)
        with model.counts_fixed(model.expert_tokens(x)):
            fixed = model(x)
        assert rel_err(fixed, eager) < 1e-6
        with model.counts_fixed([1] * SHAPE.num_experts), pytest.raises(ValueError, match="fixed per-expert counts"):
            model(x)
    assert model._host_counts is None  # only ever inside the context


def test_grouped_follows_new_weights_after_load_state_dict(moe_and_input):
    """Item 8a: the padded last-layer copy is keyed on the weights, not only dtype and device."""
    model, x = moe_and_input
    model.impl = "grouped"
    if GROUPED_MM not in available_kernels(model, x):
        pytest.skip(f"grouped_mm: {model.grouped_fallback_reason}")
    model.kernel = GROUPED_MM
    torch.manual_seed(7)
    other = MoEMLP(SHAPE, "naive").eval()
    with torch.no_grad():
        model(x)  # builds the padded copy of the old weights
        model.load_state_dict(other.state_dict())
        assert rel_err(model(x), other(x)) < 1e-6


def test_grouped_kernels_agree_in_bf16_within_tolerance(moe_and_input):
    model, x = moe_and_input
    with torch.no_grad():
        ref = model(x)
        model = model.to(torch.bfloat16)
        model.impl = "grouped"
        for kernel in available_kernels(model, x.bfloat16()):
            model.kernel = kernel
            assert rel_err(model(x.bfloat16()).float(), ref) < 2e-2, kernel


def test_sorted_agrees_in_bf16_within_tolerance(moe_and_input):
    model, x = moe_and_input
    with torch.no_grad():
        ref = model(x)
        model = model.to(torch.bfloat16)
        model.impl = "sorted"
        assert rel_err(model(x.bfloat16()).float(), ref) < 2e-2


def test_the_fallback_order_follows_the_h100_thresholds():
    assert fallback_order(10, fast_grouped_mm=True)[0] == GROUPED_MM
    assert fallback_order(500, fast_grouped_mm=True)[0] == PADDED_BMM
    assert fallback_order(5000, fast_grouped_mm=True)[0] == EXPERT_LOOP
    assert fallback_order(10, fast_grouped_mm=False)[-2] == GROUPED_MM
    assert all(fallback_order(r, f)[-1] == FUSED for r in (1, 500, 5000) for f in (True, False))  # measured only
    assert all(sorted(fallback_order(r, f)) == sorted(GROUPED_KERNELS) for r in (1, 500, 5000) for f in (True, False))


def test_zipf_load_is_skewed_and_distinct_per_token():
    idx = zipf_experts(4000, 8, 2, 1.5, torch.Generator().manual_seed(0))
    assert all(len(set(row.tolist())) == 2 for row in idx[:100])
    counts = torch.bincount(idx.flatten(), minlength=8)
    assert counts[0] > 3 * counts[-1]


def test_workload_prepare_records_realised_expert_tokens_and_zipf():
    spec = TaskSpec(task_id="t", pair_id="p", kind="moe", impl="grouped", model=SHAPE.as_model(), device="cpu",
                    batch_size=64, load="zipf", zipf_s=2.0)
    prepared = MlpWorkload(forms=FormCache()).prepare(spec, torch.device("cpu"), torch.float32)
    assert sum(prepared.expert_tokens) == 64 * SHAPE.top_k
    assert prepared.expert_tokens[0] == max(prepared.expert_tokens)
    assert prepared.step().shape == (64, SHAPE.output_dim)


def test_training_learns_the_synthetic_task():
    spec = TaskSpec(task_id="t", pair_id="p", kind="moe", impl="sorted", model=SHAPE.as_model(), device="cpu",
                    batch_size=32, train_epochs=2)
    prepared = MlpWorkload(forms=FormCache()).prepare(spec, torch.device("cpu"), torch.float32)
    acc = float(prepared.notes[0].rsplit(" ", 1)[1])
    assert acc > 0.2  # ten classes: chance is 0.1
