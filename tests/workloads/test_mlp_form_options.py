"""The candidate forms of the MLP models, and how grouped's host-syncing kernels are captured."""
import torch

from moecluster.workloads.forms import FormCache, choose_form
from moecluster.workloads.graphs import GraphPolicy
from moecluster.workloads.mlp.dense import ADDMM_IN_OUT, F_LINEAR, DenseMLP, dense_layouts
from moecluster.workloads.mlp.experts import EXPERT_LOOP, GROUPED_MM, PADDED_BMM
from moecluster.workloads.mlp.form_options import FIXED_COUNTS, REFERENCE, model_options
from moecluster.workloads.mlp.models import MoEMLP
from moecluster.spec.mlp.shapes import DenseShape, MoEShape

MOE = MoEShape(num_experts=4, expert_hidden_dim=16, expert_num_layers=2, top_k=2, input_dim=24)


def moe_and_input(impl: str = "grouped") -> tuple[MoEMLP, torch.Tensor]:
    torch.manual_seed(0)
    return MoEMLP(MOE, impl).eval().requires_grad_(False), torch.randn(16, MOE.input_dim)


def test_the_dense_candidates_are_its_layouts_and_fewer_under_compile() -> None:
    model = DenseMLP(DenseShape(hidden_dim=8, num_layers=2, input_dim=6))
    eager = model_options(model, torch.zeros(1, 6), (), compiled=False)
    assert [o.name for o in eager.options] == list(dense_layouts())
    compiled = model_options(model, torch.zeros(1, 6), (), compiled=True)
    assert [o.name for o in compiled.options] == [F_LINEAR, ADDMM_IN_OUT]
    assert all("not tried under torch.compile" in s for s in compiled.skipped)
    compiled.options[1].use()
    assert model.layout == ADDMM_IN_OUT


def test_grouped_host_syncing_kernels_are_captured_with_counts_fixed_at_prepare() -> None:
    model, x = moe_and_input()
    tokens = tuple(model.expert_tokens(x))
    options = {o.name: o for o in model_options(model, x, tokens, compiled=False).options}
    assert {PADDED_BMM, EXPERT_LOOP} <= set(options)
    for name in (PADDED_BMM, EXPERT_LOOP):
        assert options[name].graph.note == FIXED_COUNTS and options[name].graph.blocker is None
        with options[name].graph.context():
            assert model._host_counts == tokens
        assert model._host_counts is None
    if GROUPED_MM in options:
        assert options[GROUPED_MM].graph.note.startswith("captured;")


def test_the_references_cannot_be_captured_and_say_why() -> None:
    for impl in ("naive", "sorted"):
        model, x = moe_and_input(impl)
        (option,) = model_options(model, x, (), compiled=False).options
        assert dict(option.aspects) == {"layout": REFERENCE, "kernel": REFERENCE}
        assert option.graph.blocker is not None and "syncs with the host" in option.graph.blocker


def test_a_captured_padded_bmm_replays_the_eager_result(scripted) -> None:
    model, x = moe_and_input()
    tokens = tuple(model.expert_tokens(x))
    candidates = model_options(model, x, tokens, compiled=False)
    times = {(o.name, g): 1e-3 for o in candidates.options for g in (False, True)}
    times[(PADDED_BMM, True)] = 1e-4
    tools = scripted(lambda: model.kernel, times)
    chosen = choose_form(candidates.options, lambda: model(x), device=torch.device("cpu"),
                         policy=GraphPolicy(wanted=None, blocker=None), tolerance=1e-5, cache=FormCache(),
                         key="k", keepalive=(x,), tools=tools.tools())
    assert model.kernel == PADDED_BMM and chosen.form["graph"] == FIXED_COUNTS
    assert chosen.graph is not None
    chosen.step()
    with torch.no_grad():
        assert torch.allclose(chosen.graph.output, model(x), atol=1e-6)
