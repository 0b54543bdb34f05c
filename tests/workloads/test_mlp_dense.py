"""Every layout of the dense twin computes the seed's function from the same weights."""
import pytest
import torch

from moecluster.workloads.mlp.dense import (
    ADDMM_IN_OUT,
    DENSE_LAYOUTS,
    F_LINEAR,
    IN_OUT_LAYOUTS,
    DenseMLP,
    dense_layouts,
)
from moecluster.spec.mlp.shapes import DenseShape

SHAPE = DenseShape(hidden_dim=24, num_layers=3, input_dim=20, output_dim=10)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref.double()).norm() / ref.double().norm())


def reference(model: DenseMLP, x: torch.Tensor) -> torch.Tensor:
    """The seed's MLP in float64, straight from the nn.Linear weights."""
    linears = model.linears()
    h = x.double()
    for i, m in enumerate(linears):
        h = h @ m.weight.double().t() + m.bias.double()
        h = torch.relu(h) if i < len(linears) - 1 else h
    return h


@pytest.fixture
def model() -> DenseMLP:
    torch.manual_seed(3)
    return DenseMLP(SHAPE).eval().requires_grad_(False)


@pytest.mark.parametrize("layout", list(DENSE_LAYOUTS))
def test_every_layout_matches_a_float64_reference_on_fresh_inputs(model: DenseMLP, layout: str) -> None:
    model.layout = layout
    for seed in (0, 1):
        x = torch.randn(33, SHAPE.input_dim, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            assert rel_err(model(x), reference(model, x)) < 1e-5


@pytest.mark.parametrize("layout", [F_LINEAR, ADDMM_IN_OUT])
def test_layouts_agree_in_bf16_within_tolerance(model: DenseMLP, layout: str) -> None:
    x = torch.randn(16, SHAPE.input_dim)
    ref = reference(model, x)
    model = model.to(torch.bfloat16)
    model.layout = layout
    with torch.no_grad():
        assert rel_err(model(x.bfloat16()), ref) < 3e-2


def test_in_out_copies_follow_load_state_dict(model: DenseMLP) -> None:
    model.layout = ADDMM_IN_OUT
    x = torch.randn(8, SHAPE.input_dim)
    with torch.no_grad():
        model(x)  # builds the [in,out] copies of the old weights
        other = DenseMLP(SHAPE)
        model.load_state_dict(other.state_dict())
        assert rel_err(model(x), reference(other, x)) < 1e-5


def test_derived_copies_are_held_only_for_layouts_that_read_them(model: DenseMLP) -> None:
    model.layout = ADDMM_IN_OUT
    assert len(model.derived_tensors()) == len(model.linears()) and ADDMM_IN_OUT in IN_OUT_LAYOUTS
    model.release_derived()
    assert len(model.derived_tensors()) == len(model.linears())  # still read: kept
    model.layout = F_LINEAR
    assert model.derived_tensors() == ()
    model.release_derived()
    assert model._in_out.tensors == ()


def test_a_layout_on_copies_refuses_to_train(model: DenseMLP) -> None:
    model.requires_grad_(True).layout = ADDMM_IN_OUT
    with pytest.raises(RuntimeError, match="train with layout"):
        model(torch.randn(2, SHAPE.input_dim))


def test_the_state_dict_is_the_seeds_whatever_the_layout(model: DenseMLP) -> None:
    model.layout = ADDMM_IN_OUT
    with torch.no_grad():
        model(torch.randn(2, SHAPE.input_dim))
    assert set(model.state_dict()) == {f"net.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")}
    assert F_LINEAR in dense_layouts() and ADDMM_IN_OUT in dense_layouts()
