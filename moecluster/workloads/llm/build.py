"""Build a transformers model from an `LlmShape`, with random weights, straight on the device.

The configuration is the family's own (`MixtralConfig`, `Qwen2MoeConfig`, `LlamaConfig`, ...)
with the shape's fields, every layer an MoE layer for an MoE family, no sliding window, untied
embeddings and no end-of-sequence token (a response is always `gen_tokens` long). The model is
constructed under the target device and dtype, so a 24 GB model never exists in float32 or on
the host; its weights are drawn by transformers' own initialisation (normal, std 0.02) from the
task's seed. Nothing is downloaded: there is no hub access at any point.
"""
from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from moecluster.spec.extras import missing_message
from moecluster.spec.llm.shapes import LlmShape

# transformers' class names per family: (configuration, causal LM)
CLASSES = {
    "mixtral": ("MixtralConfig", "MixtralForCausalLM"),
    "qwen2_moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM"),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM"),
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
}
TRANSFORMERS_RANGE = ">=5.0,<6"  # the experts' stacked [E, 2I, H] layout and the v5 module names


def transformers_module() -> Any:
    """The installed transformers package; ValueError saying how to install it where it is absent."""
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise ValueError(missing_message("workload llm", "llm", "transformers")) from None


def transformers_version() -> str:
    return str(transformers_module().__version__)


def config_kwargs(shape: LlmShape, max_positions: int) -> dict[str, Any]:
    """The keyword arguments of the family's configuration class for `shape`."""
    common: dict[str, Any] = dict(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads, num_key_value_heads=shape.num_kv_heads, head_dim=shape.head_dim,
        max_position_embeddings=max(4096, max_positions), tie_word_embeddings=False, attention_dropout=0.0,
        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    arch = shape.architecture
    if arch == "mixtral":
        return {**common, "intermediate_size": shape.intermediate_size, "num_local_experts": shape.num_experts,
                "num_experts_per_tok": shape.top_k, "sliding_window": None, "router_jitter_noise": 0.0}
    if arch in ("qwen2_moe", "qwen3_moe"):
        moe: dict[str, Any] = {
            "moe_intermediate_size": shape.intermediate_size, "num_experts": shape.num_experts,
            "num_experts_per_tok": shape.top_k, "decoder_sparse_step": 1, "mlp_only_layers": [],
            "use_sliding_window": False, "intermediate_size": shape.intermediate_size,
            # Qwen1.5-MoE keeps the top-k gates as the softmax gave them; Qwen3-MoE renormalises them
            "norm_topk_prob": arch == "qwen3_moe"}
        if arch == "qwen2_moe":
            moe["shared_expert_intermediate_size"] = shape.shared_intermediate_size
        return {**common, **moe}
    extra: dict[str, Any] = {"intermediate_size": shape.intermediate_size}
    if arch in ("mistral",):
        extra["sliding_window"] = None
    if arch in ("qwen2", "qwen3"):
        extra["use_sliding_window"] = False
    return {**common, **extra}


def hf_config(shape: LlmShape, max_positions: int) -> Any:
    """The family's transformers configuration for `shape`."""
    tf = transformers_module()
    config_name, _ = CLASSES[shape.architecture]
    return getattr(tf, config_name)(**config_kwargs(shape, max_positions))


def build_model(shape: LlmShape, device: torch.device, dtype: torch.dtype, seed: int, max_positions: int) -> nn.Module:
    """The causal LM of `shape` on `device` in `dtype`, random weights drawn from `seed`, in eval mode.

    Raises ValueError where the built model's parameters differ from `shape.params()` (the one
    accounting every figure relies on) or its experts are not in the stacked layout moecluster's
    kernels read.
    """
    tf = transformers_module()
    _, model_name = CLASSES[shape.architecture]
    config = hf_config(shape, max_positions)
    torch.manual_seed(seed)
    with torch.device(device):
        model = getattr(tf, model_name)._from_config(config, dtype=dtype)
    model.eval().requires_grad_(False)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    built = sum(p.numel() for p in model.parameters())
    expected = shape.params().total
    if built != expected:
        raise ValueError(f"transformers {tf.__version__} built {built:,} parameters for {shape.describe()},"
                         f" moecluster's accounting says {expected:,}; supported: transformers{TRANSFORMERS_RANGE}")
    return model
