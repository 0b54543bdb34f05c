"""The fused Triton kernels in Triton's interpreter (CPU tensors): run by `test_mlp_fused.py` in a
subprocess with TRITON_INTERPRET=1, since the interpreter is chosen when a kernel is decorated.

Every tile candidate of every role is run, in both regimes (streaming and GEMM tiles), in fp32
and bf16, against the float64 reference; the permutation's invariants on loads with idle experts.
"""
from __future__ import annotations

import os

import pytest
import torch

from moecluster.workloads.mlp import fused
from moecluster.workloads.mlp.experts import FUSED
from moecluster.workloads.mlp.fused_tiles import ROLES, FusedTiles, Load, TileCache, block_m_candidates, \
    candidates, default_tiles
from moecluster.workloads.mlp.models import MoEMLP
from moecluster.spec.mlp.shapes import MoEShape

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="run by test_mlp_fused.py with TRITON_INTERPRET=1")

# h = 128 admits every tile width tried; input 40 is no multiple of any BLOCK_K (masked K loop)
SHAPE = MoEShape(num_experts=4, expert_hidden_dim=128, expert_num_layers=2, top_k=2, input_dim=40, output_dim=10)


def reference(model: MoEMLP, x: torch.Tensor) -> torch.Tensor:
    """The MoE's function in float64 from the same routing and weights."""
    with torch.no_grad():
        gates, idx = model.route(x)
        out = torch.zeros(x.shape[0], model.shape.output_dim, dtype=torch.float64)
        for e in range(model.shape.num_experts):
            token, slot = (idx == e).nonzero(as_tuple=True)
            h = x[token].double()
            for i, (w, b) in enumerate(zip(model.weight, model.bias)):
                h = h @ w[e].double().t() + b[e].double()
                h = torch.relu(h) if i < len(model.weight) - 1 else h
            out.index_add_(0, token, gates[token, slot].double().unsqueeze(1) * h)
    return out


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).norm() / ref.norm())


def fused_model(dtype: torch.dtype, seed: int = 0) -> MoEMLP:
    torch.manual_seed(seed)
    model = MoEMLP(SHAPE, "grouped").to(dtype).eval().requires_grad_(False)
    model.kernel, model.tile_cache = FUSED, TileCache()
    return model


@pytest.mark.parametrize("block_m", [16, 32, 64])
def test_fused_align_groups_every_copy_under_its_expert_once(block_m: int) -> None:
    kernels = fused.kernels()
    gen = torch.Generator().manual_seed(block_m)
    for num_experts, copies in ((5, 37), (7, 300), (3, 1)):
        flat = torch.randint(0, num_experts - 1, (copies,), generator=gen)  # the last expert stays idle
        sorted_ids, block_expert = kernels.align(flat, num_experts, block_m)
        assert sorted_ids.numel() == block_expert.numel() * block_m
        rows = sorted_ids.view(-1, block_m)
        used = block_expert >= 0
        assert (rows[~used] == copies).all()  # unused blocks hold only the sentinel
        assert torch.equal(block_expert[used], block_expert[used].sort().values)  # experts in order
        assert (num_experts - 1) not in block_expert.tolist()
        live = rows < copies
        assert all((flat[r[m].long()] == e).all() for r, m, e in zip(rows[used], live[used], block_expert[used]))
        assert sorted(sorted_ids[sorted_ids < copies].tolist()) == list(range(copies))
        counts = torch.bincount(flat, minlength=num_experts)
        assert int(used.sum()) == int(((counts + block_m - 1) // block_m).sum())


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("batch", [20, 300])  # 10 and 150 copies per expert: streaming and GEMM tiles
def test_every_fused_tile_candidate_matches_the_float64_reference(dtype: torch.dtype, tolerance: float,
                                                                   batch: int) -> None:
    model = fused_model(dtype)
    x = torch.randn(batch, SHAPE.input_dim, generator=torch.Generator().manual_seed(batch)).to(dtype)
    ref = reference(model, x)
    load = Load(num_copies=batch * SHAPE.top_k, num_experts=SHAPE.num_experts)
    dims = SHAPE.expert.layer_dims()
    role_dims = {"first": dims[0], "hidden": dims[1], "last": dims[-1]}
    base = default_tiles(load, dims, x.element_size(), "test")
    tried = 0
    for block_m in block_m_candidates(load.rows_per_expert, x.element_size()):
        per_role = {role: candidates(role, block_m, role_dims[role][1], role_dims[role][0], x.element_size(),
                                     load.rows_per_expert, tma=True) for role in ROLES}
        for i in range(max(len(c) for c in per_role.values())):  # the i-th candidate of every role at once
            picks = {role: c[i] if i < len(c) else getattr(base, role) for role, c in per_role.items()}
            tiles = FusedTiles(block_m=block_m, how="test", **picks)
            model.tile_cache.put(model._fused_family(x), load, tiles)
            with torch.inference_mode():
                err = rel_err(model(x), ref)
            assert err < tolerance, f"{tiles.label()}: relative error {err:.2e}"
        tried += sum(len(c) for c in per_role.values())
    assert tried >= 12


def test_fused_tuning_runs_every_candidate_and_its_tiles_serve_the_forward() -> None:
    model = fused_model(torch.float32, seed=3)
    x = torch.randn(50, SHAPE.input_dim, generator=torch.Generator().manual_seed(4))
    timed: list[int] = []

    def one_call(fn, device) -> float:  # the interpreter is far too slow for the real clock
        fn()
        timed.append(1)
        return 1e-3 / len(timed)  # later candidates "faster": the last of each role wins

    with torch.inference_mode():
        gates, idx = model.route(x)
        tiles, trials = fused.tune(list(zip(model.weight, model.bias)), x, idx.flatten(), gates.flatten(),
                                   SHAPE.top_k, "ieee", timer=one_call)
    assert trials and all(t.failure is None for t in trials) and len(timed) == len(trials)
    assert {t.role for t in trials} == set(ROLES)
    assert tiles.how.startswith("tuned at prepare")
    model.tile_cache.put(model._fused_family(x), Load(100, SHAPE.num_experts), tiles)
    assert model.fused_tiles(100, x) is tiles
    with torch.inference_mode():
        assert rel_err(model(x), reference(model, x)) < 1e-5


def test_fused_tf32_is_refused_nowhere_but_labelled() -> None:
    model = fused_model(torch.float32)
    model.fused_precision = "tf32"
    x = torch.randn(8, SHAPE.input_dim)
    with torch.inference_mode():
        out = model(x)  # the interpreter multiplies exactly whatever the precision: only the plumbing is checked
    assert out.shape == (8, SHAPE.output_dim) and model._fused_family(x).precision == "tf32"
