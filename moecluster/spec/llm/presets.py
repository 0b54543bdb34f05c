"""Named LLM shapes: published models (for clusters large enough), scaled ones that fit one GPU,
and tiny ones for CPU tests. The shapes of published models are taken from their configurations
on the Hugging Face Hub (named beside each); weights are always random (nothing is downloaded).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from moecluster.spec.mlp.shapes import ShapeError
from moecluster.spec.llm.shapes import LlmShape, closest


@dataclass(frozen=True)
class Preset:
    name: str
    shape: LlmShape
    source: str


def _mixtral(layers: int) -> LlmShape:
    # mistralai/Mixtral-8x7B-v0.1 config.json: vocab 32,000, hidden 4,096, 32 layers, 32 heads / 8 KV heads
    # of 128, experts of 14,336, 8 experts, top-2
    return LlmShape("mixtral", vocab_size=32_000, hidden_size=4096, num_layers=layers, num_heads=32, num_kv_heads=8,
                    head_dim=128, intermediate_size=14_336, num_experts=8, top_k=2)


def _qwen3_30b(layers: int) -> LlmShape:
    # Qwen/Qwen3-30B-A3B config.json: vocab 151,936, hidden 2,048, 48 layers, 32 heads / 4 KV heads of 128,
    # 128 experts of 768, top-8, norm_topk_prob true
    return LlmShape("qwen3_moe", vocab_size=151_936, hidden_size=2048, num_layers=layers, num_heads=32,
                    num_kv_heads=4, head_dim=128, intermediate_size=768, num_experts=128, top_k=8)


_QWEN15_MOE = LlmShape(
    # Qwen/Qwen1.5-MoE-A2.7B config.json: vocab 151,936, hidden 2,048, 24 layers, 16 heads of 128 (no GQA),
    # 60 experts of 1,408, top-4, shared expert of 5,632
    "qwen2_moe", vocab_size=151_936, hidden_size=2048, num_layers=24, num_heads=16, num_kv_heads=16, head_dim=128,
    intermediate_size=1408, num_experts=60, top_k=4, shared_intermediate_size=5632)


def _tiny(architecture: str, num_experts: int = 6, shared_intermediate_size: int = 0) -> LlmShape:
    # the experts' count makes the total- and active-matched twins hit their targets exactly: a layer's
    # router (E·H) and shared-expert gate (H) come to (E + 1)/3 of a unit of FFN width (3·H), so tests
    # need no tolerance
    moe = architecture in ("mixtral", "qwen2_moe", "qwen3_moe")
    return LlmShape(architecture, vocab_size=256, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                    head_dim=16, intermediate_size=32, num_experts=num_experts if moe else 0, top_k=2 if moe else 0,
                    shared_intermediate_size=shared_intermediate_size)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("mixtral-8x7b", _mixtral(32), "HF mistralai/Mixtral-8x7B-v0.1"),
    Preset("mixtral-8x22b", LlmShape("mixtral", vocab_size=32_768, hidden_size=6144, num_layers=56, num_heads=48,
                                     num_kv_heads=8, head_dim=128, intermediate_size=16_384, num_experts=8, top_k=2),
           "HF mistralai/Mixtral-8x22B-v0.1"),
    Preset("qwen1.5-moe-a2.7b", _QWEN15_MOE, "HF Qwen/Qwen1.5-MoE-A2.7B"),
    Preset("qwen3-30b-a3b", _qwen3_30b(48), "HF Qwen/Qwen3-30B-A3B"),
    Preset("llama-3.3-70b", LlmShape("llama", vocab_size=128_256, hidden_size=8192, num_layers=80, num_heads=64,
                                     num_kv_heads=8, head_dim=128, intermediate_size=28_672),
           "HF meta-llama/Llama-3.3-70B-Instruct"),
    Preset("llama-3.1-8b", LlmShape("llama", vocab_size=128_256, hidden_size=4096, num_layers=32, num_heads=32,
                                    num_kv_heads=8, head_dim=128, intermediate_size=14_336),
           "HF meta-llama/Llama-3.1-8B"),
    Preset("mistral-7b", LlmShape("mistral", vocab_size=32_768, hidden_size=4096, num_layers=32, num_heads=32,
                                  num_kv_heads=8, head_dim=128, intermediate_size=14_336),
           "HF mistralai/Mistral-7B-v0.3"),
    # one GPU: Mixtral's layer with 8 of its 32 layers (11.9 B total, 3.4 B active; 23.7 GB in bf16, as its
    # total-matched twin), Qwen3-30B-A3B's with 12 of 48 (8.1 B total, 1.3 B active)
    Preset("mixtral-8x7b-8l", _mixtral(8), "HF mistralai/Mixtral-8x7B-v0.1, 8 of its 32 layers"),
    Preset("qwen3-30b-a3b-12l", _qwen3_30b(12), "HF Qwen/Qwen3-30B-A3B, 12 of its 48 layers"),
    # CPU tests: a few layers, small widths
    Preset("tiny-mixtral", _tiny("mixtral"), "moecluster test shape"),
    Preset("tiny-qwen2-moe", _tiny("qwen2_moe", num_experts=5, shared_intermediate_size=64), "moecluster test shape"),
    Preset("tiny-qwen3-moe", _tiny("qwen3_moe"), "moecluster test shape"),
    Preset("tiny-llama", _tiny("llama"), "moecluster test shape"),
)}
MOE_PRESETS = tuple(name for name, p in PRESETS.items() if p.shape.is_moe)


def preset(name: str) -> Preset:
    """The preset called `name`; ShapeError naming the closest known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ShapeError(f"unknown llm preset {name!r} ({closest(name, PRESETS)}known: {', '.join(PRESETS)})") from None


def moe_preset(name: str, **overrides: Any) -> LlmShape:
    """An MoE preset's shape with fields overridden; ShapeError for a dense preset or a bad field."""
    p = preset(name)
    if not p.shape.is_moe:
        raise ShapeError(f"llm preset {name!r} is dense ({p.shape.architecture}): a pair starts from an MoE and sizes"
                         f" its dense twins from it (MoE presets: {', '.join(MOE_PRESETS)})")
    try:
        return replace(p.shape, **overrides)
    except TypeError as exc:
        raise ShapeError(str(exc)) from None
