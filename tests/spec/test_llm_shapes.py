"""LLM shapes, presets, twins and memory: the accounting every figure relies on (pure Python, no transformers)."""
from __future__ import annotations

import pytest

from moecluster.spec.llm.memory import memory_need
from moecluster.spec.llm.presets import MOE_PRESETS, PRESETS, moe_preset, preset
from moecluster.spec.llm.shapes import FAMILIES, LlmShape, experts_hit_uniform, family
from moecluster.spec.llm.twins import ALIGNMENTS, match_dense, width_alignment
from moecluster.spec.mlp.shapes import ShapeError
from moecluster.spec.twins import MATCH_TOLERANCE
from moecluster.head.estimate import KNOWN, from_llm


@pytest.mark.parametrize("name, total, active", [
    ("mixtral-8x7b", 46_702_792_704, 12_879_925_248),  # Mixtral's paper: 46.7 B total, 12.9 B active
    ("llama-3.3-70b", 70_553_706_496, 70_553_706_496),
])
def test_published_models_count_as_the_estimator_and_their_authors_do(name: str, total: int, active: int) -> None:
    p = PRESETS[name].shape.params()
    assert (p.total, p.active_per_token) == (total, active)
    known = KNOWN[name]
    assert (known.total_params, known.active_params) == (total, active)
    view = from_llm(PRESETS[name].shape, name)
    assert (view.total_params, view.active_params) == (total, active)


def test_qwen_families_count_their_biases_norms_and_shared_expert() -> None:
    qwen15 = PRESETS["qwen1.5-moe-a2.7b"].shape.params()
    assert 14.2e9 < qwen15.total < 14.4e9 and 2.6e9 < qwen15.active_per_token < 2.8e9  # "14.3B, A2.7B"
    qwen3 = PRESETS["qwen3-30b-a3b"].shape.params()
    assert 30.4e9 < qwen3.total < 30.6e9 and 3.2e9 < qwen3.active_per_token < 3.4e9  # "30.5B, A3.3B"
    base = LlmShape("qwen2", vocab_size=10, hidden_size=8, num_layers=1, num_heads=2, num_kv_heads=1, head_dim=4,
                    intermediate_size=8)
    llama = LlmShape("llama", **base.as_model())
    qwen3_dense = LlmShape("qwen3", **base.as_model())
    assert base.params().total - llama.params().total == 2 * 4 + 2 * 4  # q bias (2 heads × 4), k and v bias
    assert qwen3_dense.params().total - llama.params().total == 2 * 4  # q_norm and k_norm over the head dim


@pytest.mark.parametrize("name", [n for n in MOE_PRESETS if not n.startswith("tiny")])
@pytest.mark.parametrize("mode", ["total", "active"])
def test_twins_of_real_shapes_match_within_tolerance_at_friendly_widths(name: str, mode: str) -> None:
    moe = PRESETS[name].shape
    twin = match_dense(moe, mode)
    target = moe.params().total if mode == "total" else moe.params().active_per_token
    assert abs(twin.params().total - target) <= MATCH_TOLERANCE * target
    assert twin.architecture == moe.family.twin and not twin.is_moe
    assert (twin.hidden_size, twin.num_layers, twin.num_heads, twin.num_kv_heads, twin.vocab_size) == (
        moe.hidden_size, moe.num_layers, moe.num_heads, moe.num_kv_heads, moe.vocab_size)
    assert width_alignment(twin.intermediate_size) >= 32
    if name.startswith("mixtral"):
        assert twin.intermediate_size % 256 == 0  # Mixtral's twins: 8 and 2 experts' widths exactly


def test_tiny_presets_have_exact_twins() -> None:
    for name in ("tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen3-moe"):
        moe = PRESETS[name].shape
        assert match_dense(moe, "total").params().total == moe.params().total
        assert match_dense(moe, "active").params().total == moe.params().active_per_token


def test_unknown_names_suggest_the_closest_known_ones() -> None:
    with pytest.raises(ShapeError, match=r"unknown llm preset 'mixtral-8x7bb' \(did you mean 'mixtral-8x7b'"):
        preset("mixtral-8x7bb")
    with pytest.raises(ShapeError, match=r"unknown architecture 'mixtrall' \(did you mean 'mixtral'"):
        family("mixtrall")
    with pytest.raises(ShapeError, match="is dense"):
        moe_preset("llama-3.3-70b")
    with pytest.raises(ShapeError, match="llm twins|'seed' is the MLP"):
        match_dense(PRESETS["tiny-mixtral"].shape, "seed")


@pytest.mark.parametrize("fields, message", [
    (dict(num_experts=0, top_k=0), "needs num_experts and top_k"),
    (dict(top_k=9), "top_k (9) is larger than num_experts (6)"),
    (dict(num_kv_heads=3), "multiple of num_kv_heads"),
    (dict(head_dim=15), "head_dim must be even"),
    (dict(shared_intermediate_size=8), "has no shared expert"),
])
def test_impossible_shapes_name_the_field(fields: dict[str, int], message: str) -> None:
    with pytest.raises(ShapeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        moe_preset("tiny-mixtral", **fields)


def test_bytes_and_flops_per_step_follow_the_shape() -> None:
    dense = PRESETS["tiny-llama"].shape
    b, p, g = 4, 16, 8
    kv = dense.kv_bytes_per_token(2)
    assert kv == 2 * dense.num_layers * dense.num_kv_heads * dense.head_dim * 2
    one_step = dense.weight_bytes_per_forward(2, b)
    positions = g * p + g * (g - 1) / 2 + g
    assert dense.decode_bytes(2, b, p, g) == pytest.approx(g * one_step + b * positions * kv)
    assert dense.prefill_bytes(2, b, p) == pytest.approx(dense.weight_bytes_per_forward(2, b * p) + b * p * kv)
    # a decode token multiplies the output head; a prefill token only its share of the last position's
    assert dense.decode_flops_per_token(p, 1) > dense.prefill_flops_per_token(p)
    moe = PRESETS["tiny-mixtral"].shape
    assert moe.weight_bytes_per_forward(2, 1, experts_hit=2.0) < moe.weight_bytes_per_forward(2, 1, experts_hit=6.0)
    assert experts_hit_uniform(8, 2, 1) == pytest.approx(2.0) and experts_hit_uniform(8, 2, 10_000) == pytest.approx(8)


def test_memory_need_counts_weights_caches_and_activations() -> None:
    moe = PRESETS["mixtral-8x7b-8l"].shape
    decode = memory_need(moe, "bfloat16", "decode", 256, 512, 128)
    assert decode.weights_bytes == moe.params().total * 2
    assert decode.kv_cache_bytes == 3 * 256 * (512 - 1 + 128) * moe.kv_bytes_per_token(2)
    assert 30 * 2**30 < decode.total_bytes < 80 * 2**30  # the H100 sweep's largest decode fits one 80 GB GPU
    assert memory_need(moe, "float32", "prefill", 1, 8192, 0).total_bytes > memory_need(
        moe, "bfloat16", "prefill", 1, 8192, 0).total_bytes


def test_every_family_has_a_dense_twin_family() -> None:
    for fam in FAMILIES.values():
        assert fam.twin in FAMILIES and not FAMILIES[fam.twin].moe
    assert ALIGNMENTS[0] == 256


def test_without_transformers_an_llm_task_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from moecluster.workloads.llm.build import transformers_module

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    needs = r"workload llm needs transformers \(not installed\): pip install 'moecluster\[llm\]'"
    with pytest.raises(ValueError, match=needs):
        transformers_module()
