"""The estimator's count of each current MoE against transformers' own model built from the same
published config.json (on the meta device: shapes only, no memory, nothing downloaded)."""
from __future__ import annotations

from typing import Any

import pytest

from moecluster.head.estimate import known

tf = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

LLAMA4 = dict(vocab_size=202_048, hidden_size=5120, intermediate_size=8192, intermediate_size_mlp=16_384,
              num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8, head_dim=128,
              num_experts_per_tok=1, tie_word_embeddings=False)
GPT_OSS = dict(vocab_size=201_088, hidden_size=2880, intermediate_size=2880, num_attention_heads=64,
               num_key_value_heads=8, head_dim=64, num_experts_per_tok=4, tie_word_embeddings=False)
QWEN3 = dict(vocab_size=151_936, num_key_value_heads=4, head_dim=128, num_experts=128, num_experts_per_tok=8,
             tie_word_embeddings=False)

# name -> (configuration class, causal LM class, the fields of the model's published config.json)
CONFIGS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "deepseek-v3": ("DeepseekV3Config", "DeepseekV3ForCausalLM", dict(
        vocab_size=129_280, hidden_size=7168, intermediate_size=18_432, moe_intermediate_size=2048,
        num_hidden_layers=61, first_k_dense_replace=3, n_routed_experts=256, n_shared_experts=1,
        num_experts_per_tok=8, n_group=8, topk_group=4, num_attention_heads=128, num_key_value_heads=128,
        q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
        tie_word_embeddings=False)),
    "qwen3-30b-a3b": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", dict(
        QWEN3, hidden_size=2048, num_hidden_layers=48, num_attention_heads=32, moe_intermediate_size=768,
        intermediate_size=6144)),
    "qwen3-235b-a22b": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", dict(
        QWEN3, hidden_size=4096, num_hidden_layers=94, num_attention_heads=64, moe_intermediate_size=1536,
        intermediate_size=12_288)),
    "gpt-oss-120b": ("GptOssConfig", "GptOssForCausalLM", dict(GPT_OSS, num_hidden_layers=36, num_local_experts=128)),
    "gpt-oss-20b": ("GptOssConfig", "GptOssForCausalLM", dict(GPT_OSS, num_hidden_layers=24, num_local_experts=32)),
    "llama-4-scout": ("Llama4TextConfig", "Llama4ForCausalLM", dict(
        LLAMA4, num_local_experts=16, interleave_moe_layer_step=1)),
    "llama-4-maverick": ("Llama4TextConfig", "Llama4ForCausalLM", dict(
        LLAMA4, num_local_experts=128, interleave_moe_layer_step=2)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_estimator_counts_what_transformers_builds(name: str) -> None:
    config_class, model_class, fields = CONFIGS[name]
    with torch.device("meta"):
        model = getattr(tf, model_class)(getattr(tf, config_class)(**fields))
    # the state dict: what a checkpoint stores (DeepSeek-V3's router bias is a buffer, not a parameter)
    assert known(name).total_params == sum(t.numel() for t in model.state_dict().values())
