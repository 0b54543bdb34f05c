"""The fused Triton MoE path: its tile search and cache, where it can run, and how forms take it.

The kernels themselves run in Triton's interpreter on the CPU, in a subprocess (the interpreter
is chosen when Triton compiles a kernel's decorator, from TRITON_INTERPRET):
`fused_interpreted.py` there, and every grouped-kernel test of `test_mlp_models.py` with the
fused kernel among them. On a GPU, `benchmarks/triton_smoke.py` checks the compiled kernels.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from moecluster.workloads.mlp import fused
from moecluster.workloads.mlp.experts import FUSED
from moecluster.workloads.mlp.form_options import model_options
from moecluster.workloads.mlp.fused_tiles import (
    ROLES,
    SHARED_MEMORY_BYTES,
    Family,
    FusedTiles,
    Load,
    Tile,
    TileCache,
    block_m_candidates,
    candidates,
    default_tiles,
    first_within_floor,
    max_blocks,
    search,
)
from moecluster.workloads.mlp.models import MoEMLP
from moecluster.spec.mlp.shapes import MoEShape, preset

XXL_DIMS = preset("xxl").expert.layer_dims()  # 784 -> 4096 x6 -> 10
CPU = torch.device("cpu")


def scripted_timer(times: dict[tuple[str, int, Tile], float], fail: set[tuple[str, int]] = frozenset()):
    """A time_layer double: seconds from the script (1 s if unscripted), failures where asked."""
    calls: list[tuple[str, int, Tile]] = []

    def time_layer(role: str, block_m: int, tile: Tile) -> float:
        calls.append((role, block_m, tile))
        if (role, block_m) in fail:
            raise RuntimeError(f"out of resources: shared memory ({role} at {block_m})")
        return times.get((role, block_m, tile), 1.0)
    return time_layer, calls


def test_search_takes_block_m_from_the_hidden_layers_then_the_fastest_tile_of_each_role() -> None:
    load = Load(num_copies=1024, num_experts=32)  # xxl, batch 128: 32 copies per expert
    small, large = block_m_candidates(load.rows_per_expert, 2)
    hidden = candidates("hidden", large, 4096, 4096, 2, load.rows_per_expert)
    first = candidates("first", large, 4096, 784, 2, load.rows_per_expert)
    last = candidates("last", large, 10, 4096, 2, load.rows_per_expert)
    small_hidden = candidates("hidden", small, 4096, 4096, 2, 32)[0]
    times = {("hidden", large, hidden[2]): 2e-4, ("hidden", small, small_hidden): 3e-4,
             ("first", large, first[1]): 5e-5, ("last", large, last[-1]): 1e-5}
    time_layer, calls = scripted_timer(times)
    tiles, trials = search(load, XXL_DIMS, 2, time_layer)
    assert (tiles.block_m, tiles.hidden, tiles.first, tiles.last) == (large, hidden[2], first[1], last[-1])
    assert tiles.how.startswith("tuned at prepare: layers 1.060 ms")  # 0.05 + 5 x 0.2 + 0.01 ms
    assert {c[1] for c in calls if c[0] != "hidden"} == {large}  # the other roles only at the chosen BLOCK_M
    assert len(trials) == len(calls) and all(t.time_s is not None for t in trials)


def test_a_failing_candidate_is_recorded_and_a_role_without_any_names_every_failure() -> None:
    load = Load(num_copies=1024, num_experts=32)
    small, large = block_m_candidates(load.rows_per_expert, 2)
    time_layer, _ = scripted_timer({}, fail={("hidden", small)})
    tiles, trials = search(load, XXL_DIMS, 2, time_layer)
    assert tiles.block_m == large
    assert any(t.failure and "out of resources" in t.failure and t.block_m == small for t in trials)
    time_layer, _ = scripted_timer({}, fail={("last", small), ("last", large)})
    with pytest.raises(RuntimeError, match="no tile of the fused kernel's last layer could run at BLOCK_M"):
        search(load, XXL_DIMS, 2, time_layer)
    time_layer, _ = scripted_timer({}, fail={("hidden", small), ("hidden", large)})
    with pytest.raises(RuntimeError, match="hidden layer could run: hidden BLOCK_M .* out of resources"):
        search(load, XXL_DIMS, 2, time_layer)


def test_a_model_without_hidden_layers_tunes_block_m_on_its_first_layer() -> None:
    dims = MoEShape(num_experts=4, expert_hidden_dim=64, expert_num_layers=1, top_k=1).expert.layer_dims()
    time_layer, calls = scripted_timer({})
    tiles, _ = search(Load(num_copies=64, num_experts=4), dims, 4, time_layer)
    assert {c[0] for c in calls} == {"first", "last"} and tiles.hidden == tiles.last


@pytest.mark.parametrize("element_bytes", [2, 4])
@pytest.mark.parametrize("rows_per_expert", [1, 32, 64, 300, 2048, 8192])
def test_candidates_fit_shared_memory_and_follow_the_regime(element_bytes: int, rows_per_expert: int) -> None:
    load = Load(num_copies=rows_per_expert * 32, num_experts=32)
    for block_m in block_m_candidates(load.rows_per_expert, element_bytes):
        assert block_m in (16, 32, 64, 128)
        for role, (k_in, n_out) in zip(ROLES, [XXL_DIMS[0], XXL_DIMS[1], XXL_DIMS[-1]]):
            tiles = candidates(role, block_m, n_out, k_in, element_bytes, load.rows_per_expert)
            assert 1 <= len(tiles) <= 4 and len(set(tiles)) == len(tiles)
            for tile in tiles:
                assert tile.shared_bytes(block_m, element_bytes) <= SHARED_MEMORY_BYTES
                assert min(tile.block_n, tile.block_k) >= 16  # tl.dot's smallest operand
                assert tile.block_n <= max(16, 1 << (n_out - 1).bit_length())
                if role != "last":
                    streaming = rows_per_expert < 2 * block_m  # weights read about once: little to share in L2
                    assert tile.group_m == 8 if not streaming else tile.group_m <= 4


def test_block_m_stays_near_the_tokens_per_expert() -> None:
    assert block_m_candidates(32, 2) == (32, 64) and block_m_candidates(32, 4) == (32, 16)  # fp32 pays for padding
    assert block_m_candidates(2048, 2)[0] == 128 and block_m_candidates(8, 2)[0] == 16
    assert max_blocks(1024, 32, 64) == 16 + 32 and max_blocks(5, 32, 16) == 5


def test_the_cache_gives_tuned_then_nearest_then_default_tiles() -> None:
    cache = TileCache()
    fam = Family(device="cuda:0", dtype="bfloat16", precision="ieee", layer_dims=tuple(XXL_DIMS))
    b128, b8192 = Load(1024, 32), Load(65536, 32)
    default = cache.lookup(fam, b128, 2)
    assert default == default_tiles(b128, XXL_DIMS, 2, default.how) and "not measured" in default.how
    tuned = FusedTiles(block_m=64, first=Tile(64, 128, 1, 4, 4), hidden=Tile(32, 256, 1, 4, 4),
                       last=Tile(16, 256, 1, 4, 3), how="tuned at prepare: layers 2.000 ms, 14 candidates")
    cache.put(fam, b128, tuned)
    assert cache.lookup(fam, b128, 2) is tuned
    near = cache.lookup(fam, Load(2048, 32), 2)  # 64 per expert: nearest tuned is 32 per expert, not default
    assert near.hidden == tuned.hidden and near.how == "tuned for 32 tokens per expert, the nearest load"
    other = Family(device="cuda:0", dtype="float32", precision="ieee", layer_dims=tuple(XXL_DIMS))
    assert "not measured" in cache.lookup(other, b8192, 4).how  # another dtype never borrows
    assert "BLOCK_M 64; first N64 K128 G1 w4 s4; hidden N32 K256" in tuned.label()


def test_where_the_fused_path_cannot_run_it_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "interpreter" in (fused.unavailable(CPU, torch.float32) or "")
    assert "not torch.float64" in (fused.unavailable(CPU, torch.float64) or "")
    monkeypatch.setenv("TRITON_INTERPRET", "1")

    def no_triton():
        raise ImportError("No module named 'triton'")
    monkeypatch.setattr(fused, "kernels", no_triton)
    assert fused.unavailable(CPU, torch.bfloat16) == "triton is not installed (No module named 'triton')"


def test_fp32_multiplies_exactly_unless_tf32_is_asked_for_and_says_so() -> None:
    assert fused.DEFAULT_PRECISION == "ieee" and MoEMLP(MoEShape(2, 8, 1, 1)).fused_precision == "ieee"
    assert fused.precision_for(torch.bfloat16, "tf32") == "ieee"  # 16-bit operands: the option does not apply
    assert fused.precision_note(torch.float32, "tf32") == fused.PRECISIONS["tf32"]
    assert fused.precision_note(torch.bfloat16, "ieee") is None
    with pytest.raises(ValueError, match="fused precision 'fp16' unknown"):
        fused.precision_for(torch.float32, "fp16")


def test_the_fused_kernels_refuse_autograd() -> None:
    model = MoEMLP(MoEShape(num_experts=4, expert_hidden_dim=16, expert_num_layers=1, top_k=2, input_dim=8), "grouped")
    model.kernel = FUSED
    with pytest.raises(RuntimeError, match="no backward"):
        model(torch.randn(3, 8))


def test_forms_tune_the_fused_kernel_at_prepare_and_record_its_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    shape = MoEShape(num_experts=4, expert_hidden_dim=16, expert_num_layers=2, top_k=2, input_dim=24)
    model, x = MoEMLP(shape, "grouped").eval().requires_grad_(False), torch.randn(16, 24)
    tokens = tuple(model.expert_tokens(x))
    skipped = model_options(model, x, tokens, compiled=False).skipped
    assert any(s.startswith(f"{FUSED}: Triton compiles for CUDA GPUs") for s in skipped)
    tuned: list[int] = []
    tiles = default_tiles(Load(32, 4), shape.expert.layer_dims(), 4, "tuned at prepare: (a double)")
    monkeypatch.setattr(fused, "unavailable", lambda device, dtype: None)
    monkeypatch.setattr(model, "tune_fused", lambda inputs: tuned.append(inputs.shape[0]) or tiles)
    options = {o.name: o for o in model_options(model, x, tokens, compiled=False).options}
    assert tuned == [16]  # tuned while the options are built: at prepare, before anything is timed
    aspects = dict(options[FUSED].aspects)
    assert aspects["kernel"] == FUSED and aspects["tiles"] == tiles.label()
    assert aspects["precision"] == "fp32 products exact (no TF32)"
    assert options[FUSED].graph.blocker is None and options[FUSED].graph.note.startswith("captured;")
    options[FUSED].use()
    assert model.kernel == FUSED
    monkeypatch.setattr(model, "tune_fused", lambda inputs: (_ for _ in ()).throw(RuntimeError("no tile could run")))
    skipped = model_options(model, x, tokens, compiled=False).skipped
    assert f"{FUSED}: tuning failed: no tile could run" in skipped


INTERPRETED = ["tests/workloads/fused_interpreted.py", "tests/workloads/test_mlp_models.py",
               "-k", "fused or bf16"]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                    reason="triton is not installed: the fused kernels' interpreter tests need `pip install triton`")
def test_the_fused_kernels_match_the_float64_reference_in_tritons_interpreter() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *INTERPRETED],
                         cwd=root, env=env, capture_output=True, text=True, timeout=500)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "fused_triton: " not in run.stdout  # ran, none skipped as unavailable


def test_tiles_within_one_percent_of_the_fastest_are_a_tie_won_by_the_first_candidate() -> None:
    assert first_within_floor([(1.004, "a"), (1.0, "b"), (0.95, "c")]) == (0.95, "c")  # 5 %: a real lead
    assert first_within_floor([(1.004, "a"), (1.0, "b"), (1.2, "c")]) == (1.004, "a")  # 0.4 %: the first
    assert first_within_floor([]) is None
    load = Load(num_copies=1024, num_experts=32)
    _, large = block_m_candidates(load.rows_per_expert, 2)
    hidden = candidates("hidden", large, 4096, 4096, 2, load.rows_per_expert)
    times = {("hidden", large, t): 2e-4 for t in hidden}
    times[("hidden", large, hidden[-1])] = 1.995e-4  # measured 0.25 % faster: within the floor
    time_layer, _ = scripted_timer(times)
    tiles, _ = search(load, XXL_DIMS, 2, time_layer)
    assert tiles.block_m == large and tiles.hidden == hidden[0]
