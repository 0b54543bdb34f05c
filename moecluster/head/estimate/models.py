"""Known models as seed 003's calculator sees them: `shared` parameters plus `E` experts of equal size.

`total = shared + E × expert`, `active = shared + k × expert` (seed 003). `expert` is one
expert's parameters summed over every MoE layer; `shared` is everything a token always uses
(embeddings, attention, norms, routers, dense FFN layers, always-on shared experts). The
counts are derived from each model's published configuration (sources beside each entry),
not copied from the seed's table, so a reader can check them; `published` holds the figures
the authors announced, for comparison. A dense model is one "expert" with `E = k = 1`.

`dispatch_dim`/`combine_dim` are the widths of what an all-to-all sends to an expert and
back (`d_model` for a transformer; the input and output widths for the seed's MLP), and
`moe_layers` how many MoE layers a token crosses: together they give the expert-parallel
traffic per token.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from moecluster.spec.llm.presets import PRESETS as LLM_PRESETS
from moecluster.spec.llm.shapes import LlmShape
from moecluster.spec.mlp.shapes import PRESETS, MoEShape, preset


@dataclass(frozen=True)
class ModelShape:
    name: str
    shared_params: int
    expert_params: int
    num_experts: int
    top_k: int
    dispatch_dim: int
    combine_dim: int
    moe_layers: int
    kind: Literal["moe", "dense"] = "moe"
    published: str = ""
    source: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        for f in ("shared_params", "expert_params", "num_experts", "top_k"):
            if getattr(self, f) < (0 if f == "shared_params" else 1):
                raise ValueError(f"{self.name}: {f} must be positive, got {getattr(self, f)}")
        if self.top_k > self.num_experts:
            raise ValueError(f"{self.name}: top_k ({self.top_k}) exceeds num_experts ({self.num_experts})")

    @property
    def total_params(self) -> int:
        return self.shared_params + self.num_experts * self.expert_params

    @property
    def active_params(self) -> int:
        return self.shared_params + self.top_k * self.expert_params

    @property
    def active_ratio(self) -> float:
        return self.active_params / self.total_params


def _gqa(d: int, heads: int, kv_heads: int, head_dim: int) -> int:
    """Q, K, V and output projections of grouped-query attention, no biases."""
    return 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim


def _swiglu(d: int, ffn: int) -> int:
    """Gate, up and down projections of a SwiGLU feed-forward block."""
    return 3 * d * ffn


def _decoder(name: str, *, vocab: int, d: int, layers: int, heads: int, kv_heads: int, head_dim: int, ffn: int,
             experts: int, top_k: int, tied: bool, norms_per_layer: int = 2, shared_experts: int = 0,
             expert_ffn: int | None = None, dense_layers: int = 0, biases: bool = False, sinks: bool = False,
             **meta: str) -> ModelShape:
    """A Llama/Mixtral-style decoder whose FFNs are MoE layers (all dense when experts == 1).

    Every expert, routed or one of the `shared_experts` always-on ones (counted as shared
    parameters), is a SwiGLU block of `expert_ffn` (default `ffn`); `dense_layers` of the layers
    have a dense SwiGLU FFN of `ffn` instead (Llama 4 Maverick interleaves them). `biases`: the
    attention projections, the experts and the router carry biases, and `sinks` one learned
    attention-sink logit per head (both gpt-oss).
    """
    width = expert_ffn or ffn
    moe_layers = layers - dense_layers if experts > 1 else 0
    embed = vocab * d * (1 if tied else 2)
    attention = _gqa(d, heads, kv_heads, head_dim) + (sinks * heads)
    expert = _swiglu(d, width) + biases * (2 * width + d)  # gate/up and down biases
    router = d * experts + biases * experts
    if biases:
        attention += (heads + 2 * kv_heads) * head_dim + d
    shared = (embed + layers * (attention + norms_per_layer * d) + d  # + final norm
              + moe_layers * (router + shared_experts * expert) + (layers - moe_layers) * _swiglu(d, ffn))
    expert_params = moe_layers * expert if experts > 1 else 0
    if experts == 1:  # a dense model is one "expert": its FFNs
        shared, expert_params = shared - layers * _swiglu(d, ffn), layers * _swiglu(d, ffn)
    return ModelShape(name, shared, expert_params, experts, top_k, d, d, moe_layers,
                      kind="moe" if experts > 1 else "dense", **meta)


def _mla(d: int, heads: int, q_rank: int, kv_rank: int, nope: int, rope: int, v: int) -> int:
    """DeepSeek's multi-head latent attention: low-rank query and key/value projections (with
    their norms), the shared rotary key, and the output projection; no biases."""
    return (d * q_rank + q_rank + q_rank * heads * (nope + rope)   # q down, norm, q up
            + d * (kv_rank + rope) + kv_rank + kv_rank * heads * (nope + v)  # kv down (+rope key), norm, kv up
            + heads * v * d)                                         # output


def _deepseek_v2() -> ModelShape:
    # DeepSeek-V2 (DeepSeek-AI 2024, arXiv:2405.04434; HF config deepseek-ai/DeepSeek-V2):
    # vocab 102,400, d 5,120, 60 layers, MLA attention (128 heads, q LoRA rank 1,536, KV LoRA
    # rank 512, nope/rope/value head dims 128/64/128), layer 0 a dense SwiGLU FFN of 12,288,
    # layers 1-59 MoE: 2 shared + 160 routed experts of 1,536, top-6, untied embeddings.
    d, layers, moe_layers, heads = 5120, 60, 59, 128
    mla = _mla(d, heads, q_rank=1536, kv_rank=512, nope=128, rope=64, v=128)
    expert = _swiglu(d, 1536)
    shared = (2 * 102_400 * d + layers * (mla + 2 * d) + d
              + _swiglu(d, 12_288)                               # the dense first layer
              + moe_layers * (2 * expert + 160 * d))             # shared experts and routers
    return ModelShape("deepseek-v2", shared, moe_layers * expert, 160, 6, d, d, moe_layers,
                      published="236B total, 21B active (DeepSeek-AI 2024)",
                      source="arXiv:2405.04434; HF deepseek-ai/DeepSeek-V2 config.json",
                      note="seed 003 lists 64 experts; the published configuration has 160 routed"
                           " (+2 shared, counted as shared parameters)")


def _deepseek_v3() -> ModelShape:
    # DeepSeek-V3 (DeepSeek-AI 2024, arXiv:2412.19437; HF deepseek-ai/DeepSeek-V3 config.json): vocab
    # 129,280, d 7,168, 61 layers, MLA attention (128 heads, q LoRA rank 1,536, KV LoRA rank 512,
    # nope/rope/value head dims 128/64/128), layers 0-2 dense SwiGLU FFNs of 18,432
    # (first_k_dense_replace 3), layers 3-60 MoE: 1 shared + 256 routed experts of 2,048, top-8,
    # sigmoid router with a per-expert bias; untied. The multi-token-prediction module (14B, in
    # the checkpoint's 685B) is left out, as in the published 671B.
    d, layers, moe_layers, heads, routed = 7168, 61, 58, 128, 256
    expert = _swiglu(d, 2048)
    shared = (2 * 129_280 * d + layers * (_mla(d, heads, q_rank=1536, kv_rank=512, nope=128, rope=64, v=128) + 2 * d)
              + d + (layers - moe_layers) * _swiglu(d, 18_432)   # final norm; the dense first layers
              + moe_layers * (expert + routed * d + routed))     # shared expert, router and its bias
    return ModelShape("deepseek-v3", shared, moe_layers * expert, routed, 8, d, d, moe_layers,
                      published="671B total, 37B active (DeepSeek-AI 2024)",
                      source="arXiv:2412.19437; HF deepseek-ai/DeepSeek-V3 config.json")


def _qwen3(name: str, shape: LlmShape, published: str, source: str) -> ModelShape:
    """A Qwen3-MoE from the LLM workload's own count (q/k norms included)."""
    return replace(from_llm(shape, name), published=published, source=source)


def _switch_c() -> ModelShape:
    # Switch-C (Fedus, Zoph, Shazeer 2022, JMLR, Table 9): d_model 2,080, d_ff 6,144, 32 heads
    # of 64, 15 encoder + 15 decoder blocks, every FFN an MoE of 2,048 experts, top-1 (switch)
    # routing, T5 ReLU FFN (2 matrices, no biases), vocab 32,128 tied, RMSNorm scales only.
    d, ff, inner, blocks = 2080, 6144, 32 * 64, 15
    attn = 4 * d * inner
    expert_layer = 2 * d * ff
    moe_layers = 2 * blocks
    shared = (32_128 * d                                 # tied embedding
              + blocks * attn + blocks * 2 * attn        # encoder self; decoder self + cross attention
              + moe_layers * d * 2048                    # routers
              + (blocks * 2 + blocks * 3 + 2) * d        # layer norms
              + 2 * 32 * 32)                             # relative position buckets
    return ModelShape("switch-c", shared, moe_layers * expert_layer, 2048, 1, d, d, moe_layers,
                      published="1,571B total (Fedus et al. 2022)",
                      source="Fedus et al., JMLR 23 (2022), Table 9",
                      note="seed 003 lists 1,576B total and 25B active; top-1 of the published shape"
                           " activates 1.7B (its 25.6M is one expert of one layer)")


def _known() -> dict[str, ModelShape]:
    return {m.name: m for m in (
        # Mixtral 8x7B (Jiang et al. 2024, arXiv:2401.04088; HF mistralai/Mixtral-8x7B-v0.1):
        # vocab 32,000, d 4,096, 32 layers, 32 heads / 8 KV heads of 128, SwiGLU 14,336, 8 experts, top-2.
        _decoder("mixtral-8x7b", vocab=32_000, d=4096, layers=32, heads=32, kv_heads=8, head_dim=128, ffn=14_336,
                 experts=8, top_k=2, tied=False, published="46.7B total, 12.9B active (Jiang et al. 2024)",
                 source="arXiv:2401.04088; HF mistralai/Mixtral-8x7B-v0.1 config.json"),
        # Mixtral 8x22B (Mistral AI 2024; HF mistralai/Mixtral-8x22B-v0.1): vocab 32,000, d 6,144,
        # 56 layers, 48 heads / 8 KV heads of 128, SwiGLU 16,384, 8 experts, top-2.
        _decoder("mixtral-8x22b", vocab=32_000, d=6144, layers=56, heads=48, kv_heads=8, head_dim=128, ffn=16_384,
                 experts=8, top_k=2, tied=False, published="141B total, 39B active (Mistral AI 2024)",
                 source="mistral.ai/news/mixtral-8x22b; HF mistralai/Mixtral-8x22B-v0.1 config.json"),
        _deepseek_v2(),
        _deepseek_v3(),
        # Qwen3-30B-A3B (Qwen team 2025, arXiv:2505.09388; HF Qwen/Qwen3-30B-A3B config.json): vocab
        # 151,936, d 2,048, 48 layers all MoE, 32 heads / 4 KV heads of 128 with q/k RMSNorms, 128
        # experts of 768 (moe_intermediate_size), top-8, no shared expert, untied.
        _qwen3("qwen3-30b-a3b", LLM_PRESETS["qwen3-30b-a3b"].shape, "30.5B total, 3.3B active (Qwen 2025)",
               "arXiv:2505.09388; HF Qwen/Qwen3-30B-A3B config.json"),
        # Qwen3-235B-A22B (same sources; HF Qwen/Qwen3-235B-A22B config.json): vocab 151,936, d 4,096,
        # 94 layers all MoE, 64 heads / 4 KV heads of 128, 128 experts of 1,536, top-8, untied.
        _qwen3("qwen3-235b-a22b", LlmShape("qwen3_moe", vocab_size=151_936, hidden_size=4096, num_layers=94,
                                           num_heads=64, num_kv_heads=4, head_dim=128, intermediate_size=1536,
                                           num_experts=128, top_k=8),
               "235B total, 22B active (Qwen 2025)", "arXiv:2505.09388; HF Qwen/Qwen3-235B-A22B config.json"),
        # gpt-oss-120b (OpenAI 2025, gpt-oss model card, arXiv:2508.10925; HF openai/gpt-oss-120b
        # config.json): vocab 201,088, d 2,880, 36 layers all MoE, 64 heads / 8 KV heads of 64 with
        # biases and attention sinks, 128 experts of 2,880 with biases, top-4, router with bias,
        # untied. The card's active count (5.13B) leaves out the input embedding (a lookup): this
        # one, like every entry here, includes it (+0.58B).
        _decoder("gpt-oss-120b", vocab=201_088, d=2880, layers=36, heads=64, kv_heads=8, head_dim=64, ffn=2880,
                 experts=128, top_k=4, tied=False, biases=True, sinks=True,
                 published="116.8B total, 5.1B active without the input embedding (OpenAI 2025)",
                 source="gpt-oss model card (arXiv:2508.10925); HF openai/gpt-oss-120b config.json"),
        # gpt-oss-20b (same sources; HF openai/gpt-oss-20b config.json): as gpt-oss-120b with 24
        # layers and 32 experts, top-4.
        _decoder("gpt-oss-20b", vocab=201_088, d=2880, layers=24, heads=64, kv_heads=8, head_dim=64, ffn=2880,
                 experts=32, top_k=4, tied=False, biases=True, sinks=True,
                 published="20.9B total, 3.6B active without the input embedding (OpenAI 2025)",
                 source="gpt-oss model card (arXiv:2508.10925); HF openai/gpt-oss-20b config.json"),
        _switch_c(),
        # Grok-1 (xAI 2024, github.com/xai-org/grok-1 run.py/model.py): vocab 131,072, d 6,144,
        # 64 layers, 48 query / 8 KV heads of 128, gated FFN of 32,768 (widening 8 x 2/3),
        # 8 experts, top-2, one tied in/out embedding, 4 RMSNorms per layer.
        _decoder("grok-1", vocab=131_072, d=6144, layers=64, heads=48, kv_heads=8, head_dim=128, ffn=32_768,
                 experts=8, top_k=2, tied=True, norms_per_layer=4,
                 published="314B total, ~25% of weights active per token (xAI 2024)",
                 source="github.com/xai-org/grok-1 (model.py, run.py)"),
        # Llama 4 Scout (Meta 2025; HF meta-llama/Llama-4-Scout-17B-16E config.json, text_config): vocab
        # 202,048, d 5,120, 48 layers all MoE (interleave_moe_layer_step 1), 40 heads / 8 KV heads of
        # 128, 16 routed experts of 8,192, top-1, plus one always-on shared expert of 8,192; untied.
        _decoder("llama-4-scout", vocab=202_048, d=5120, layers=48, heads=40, kv_heads=8, head_dim=128, ffn=8192,
                 experts=16, top_k=1, tied=False, shared_experts=1,
                 published="109B total, 17B active (Meta 2025; the total includes the vision encoder)",
                 source="ai.meta.com/blog/llama-4-multimodal-intelligence; HF meta-llama/Llama-4-Scout-17B-16E"),
        # Llama 4 Maverick (Meta 2025; HF meta-llama/Llama-4-Maverick-17B-128E config.json, text_config):
        # as Scout, but every other layer MoE (interleave_moe_layer_step 2: 24 of 48) with 128 routed
        # experts of 8,192, top-1, plus the shared expert; the other 24 a dense SwiGLU FFN of 16,384
        # (intermediate_size_mlp).
        _decoder("llama-4-maverick", vocab=202_048, d=5120, layers=48, heads=40, kv_heads=8, head_dim=128,
                 ffn=16_384, expert_ffn=8192, dense_layers=24, experts=128, top_k=1, tied=False, shared_experts=1,
                 published="400B total, 17B active (Meta 2025; the total includes the vision encoder)",
                 source="ai.meta.com/blog/llama-4-multimodal-intelligence; HF meta-llama/Llama-4-Maverick-17B-128E"),
        # Llama 3.3 70B (Meta 2024; HF meta-llama/Llama-3.3-70B-Instruct): vocab 128,256, d 8,192,
        # 80 layers, 64 heads / 8 KV heads of 128, SwiGLU 28,672, dense, untied.
        _decoder("llama-3.3-70b", vocab=128_256, d=8192, layers=80, heads=64, kv_heads=8, head_dim=128,
                 ffn=28_672, experts=1, top_k=1, tied=False, published="70B (Meta 2024)",
                 source="HF meta-llama/Llama-3.3-70B-Instruct config.json"),
    )}


def from_mlp(shape: MoEShape, name: str = "mlp") -> ModelShape:
    """The seed's MLP MoE in seed 003's terms: the router is shared, each expert is a whole MLP."""
    p = shape.params()
    return ModelShape(name, p.router, shape.expert.params().total, shape.num_experts, shape.top_k,
                      shape.input_dim, shape.output_dim, 1, source="moecluster MLP preset (seed 001)")


def from_llm(shape: LlmShape, name: str) -> ModelShape:
    """A measured LLM (`workloads.llm`) in seed 003's terms, from its own accounting: the routed
    experts of every layer are the experts, everything else (embeddings, attention, norms, routers, a
    shared expert) is shared; a dense model is one expert, `E = k = 1`."""
    p = shape.params()
    expert = shape.num_layers * shape.expert_params()
    if not shape.is_moe:
        return ModelShape(name, p.total - expert, expert, 1, 1, shape.hidden_size, shape.hidden_size, 0,
                          kind="dense", source="moecluster LLM workload")
    return ModelShape(name, p.total - shape.num_experts * expert, expert, shape.num_experts, shape.top_k,
                      shape.hidden_size, shape.hidden_size, shape.num_layers, source="moecluster LLM workload")


KNOWN: dict[str, ModelShape] = _known()


def known(name: str) -> ModelShape:
    try:
        return KNOWN[name.lower()]
    except KeyError:
        raise KeyError(f"unknown model {name!r} (known: {', '.join(KNOWN)})") from None


def mlp_preset(name: str) -> ModelShape:
    return from_mlp(preset(name), f"mlp-{name}")


MLP_PRESETS = tuple(PRESETS)
