"""All MoE implementations compute the same function from the same weights."""
import pytest
import torch

from moecluster.agents.records import TaskSpec
from moecluster.agents.workloads.mlp.models import DenseMLP, MoEMLP, zipf_experts
from moecluster.agents.workloads.mlp.shapes import MoEShape, match_dense, preset
from moecluster.agents.workloads.mlp.workload import MlpWorkload

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


def test_naive_matches_a_float64_reference(moe_and_input):
    model, x = moe_and_input
    with torch.no_grad():
        gates, idx = model.route(x)
        ref = torch.zeros(x.shape[0], SHAPE.output_dim, dtype=torch.float64)
        for t in range(x.shape[0]):
            for j in range(SHAPE.top_k):
                h = x[t].double()
                e = int(idx[t, j])
                for l, (w, b) in enumerate(zip(model.weight, model.bias)):
                    h = w[e].double() @ h + b[e].double()
                    h = torch.relu(h) if l < len(model.weight) - 1 else h
                ref[t] += gates[t, j].double() * h
        assert rel_err(model(x), ref) < 1e-6


@pytest.mark.parametrize("impl", ["sorted", "grouped"])
def test_impls_agree_with_naive_in_fp32(moe_and_input, impl):
    model, x = moe_and_input
    with torch.no_grad():
        ref = model(x)
        model.impl = impl
        assert rel_err(model(x), ref) < 1e-6


def test_grouped_padded_bmm_kernel_agrees(moe_and_input):
    model, x = moe_and_input
    with torch.no_grad():
        ref = model(x)
        model.impl = "grouped"
        model.grouped_kernel = lambda _x: "padded_bmm"
        assert rel_err(model(x), ref) < 1e-6


@pytest.mark.parametrize("impl", ["sorted", "grouped"])
def test_impls_agree_in_bf16_within_tolerance(moe_and_input, impl):
    model, x = moe_and_input
    with torch.no_grad():
        ref = model(x)
        model = model.to(torch.bfloat16)
        model.impl = impl
        assert rel_err(model(x.bfloat16()).float(), ref) < 2e-2


def test_zipf_load_is_skewed_and_distinct_per_token():
    idx = zipf_experts(4000, 8, 2, 1.5, torch.Generator().manual_seed(0))
    assert all(len(set(row.tolist())) == 2 for row in idx[:100])
    counts = torch.bincount(idx.flatten(), minlength=8)
    assert counts[0] > 3 * counts[-1]


def test_workload_prepare_records_realised_expert_tokens_and_zipf():
    spec = TaskSpec(task_id="t", pair_id="p", kind="moe", impl="grouped", model=SHAPE.as_model(), device="cpu",
                    batch_size=64, load="zipf", zipf_s=2.0)
    prepared = MlpWorkload().prepare(spec, torch.device("cpu"), torch.float32)
    assert sum(prepared.expert_tokens) == 64 * SHAPE.top_k
    assert prepared.expert_tokens[0] == max(prepared.expert_tokens)
    assert prepared.step().shape == (64, SHAPE.output_dim)


def test_training_learns_the_synthetic_task():
    spec = TaskSpec(task_id="t", pair_id="p", kind="moe", impl="sorted", model=SHAPE.as_model(), device="cpu",
                    batch_size=32, train_epochs=2)
    prepared = MlpWorkload().prepare(spec, torch.device("cpu"), torch.float32)
    acc = float(prepared.notes[0].rsplit(" ", 1)[1])
    assert acc > 0.2  # ten classes: chance is 0.1
