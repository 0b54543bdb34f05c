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

from dataclasses import dataclass
from typing import Literal

from moecluster.agents.workloads.llm.shapes import LlmShape
from moecluster.agents.workloads.mlp.shapes import PRESETS, MoEShape, preset


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
             **meta: str) -> ModelShape:
    """A Llama/Mixtral-style decoder whose every FFN is an MoE layer (or dense when experts == 1).

    `shared_experts` always-on experts of the same width count as shared parameters.
    """
    embed = vocab * d * (1 if tied else 2)
    router = d * experts if experts > 1 else 0
    per_layer = (_gqa(d, heads, kv_heads, head_dim) + norms_per_layer * d + router
                 + shared_experts * _swiglu(d, ffn))
    shared = embed + layers * per_layer + d  # + final norm
    return ModelShape(name, shared, layers * _swiglu(d, ffn), experts, top_k, d, d, layers if experts > 1 else 0,
                      kind="moe" if experts > 1 else "dense", **meta)


def _deepseek_v2() -> ModelShape:
    # DeepSeek-V2 (DeepSeek-AI 2024, arXiv:2405.04434; HF config deepseek-ai/DeepSeek-V2):
    # vocab 102,400, d 5,120, 60 layers, MLA attention (128 heads, q LoRA rank 1,536, KV LoRA
    # rank 512, nope/rope/value head dims 128/64/128), layer 0 a dense SwiGLU FFN of 12,288,
    # layers 1-59 MoE: 2 shared + 160 routed experts of 1,536, top-6, untied embeddings.
    d, layers, moe_layers, heads = 5120, 60, 59, 128
    mla = (d * 1536 + 1536 + 1536 * heads * (128 + 64)          # q down, norm, q up
           + d * (512 + 64) + 512 + 512 * heads * (128 + 128)    # kv down (+rope key), norm, kv up
           + heads * 128 * d)                                    # output
    expert = _swiglu(d, 1536)
    shared = (2 * 102_400 * d + layers * (mla + 2 * d) + d
              + _swiglu(d, 12_288)                               # the dense first layer
              + moe_layers * (2 * expert + 160 * d))             # shared experts and routers
    return ModelShape("deepseek-v2", shared, moe_layers * expert, 160, 6, d, d, moe_layers,
                      published="236B total, 21B active (DeepSeek-AI 2024)",
                      source="arXiv:2405.04434; HF deepseek-ai/DeepSeek-V2 config.json",
                      note="seed 003 lists 64 experts; the published configuration has 160 routed"
                           " (+2 shared, counted as shared parameters)")


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
        _switch_c(),
        # Grok-1 (xAI 2024, github.com/xai-org/grok-1 run.py/model.py): vocab 131,072, d 6,144,
        # 64 layers, 48 query / 8 KV heads of 128, gated FFN of 32,768 (widening 8 x 2/3),
        # 8 experts, top-2, one tied in/out embedding, 4 RMSNorms per layer.
        _decoder("grok-1", vocab=131_072, d=6144, layers=64, heads=48, kv_heads=8, head_dim=128, ffn=32_768,
                 experts=8, top_k=2, tied=True, norms_per_layer=4,
                 published="314B total, ~25% of weights active per token (xAI 2024)",
                 source="github.com/xai-org/grok-1 (model.py, run.py)"),
        # Llama 4 Scout (Meta 2025; HF meta-llama/Llama-4-Scout-17B-16E, text model): vocab 202,048,
        # d 5,120, 48 layers all MoE, 40 heads / 8 KV heads of 128, 16 routed experts of 8,192,
        # top-1, plus one always-on shared expert of 8,192; untied.
        _decoder("llama-4-scout", vocab=202_048, d=5120, layers=48, heads=40, kv_heads=8, head_dim=128, ffn=8192,
                 experts=16, top_k=1, tied=False, shared_experts=1,
                 published="109B total, 17B active (Meta 2025; the total includes the vision encoder)",
                 source="ai.meta.com/blog/llama-4-multimodal-intelligence; HF meta-llama/Llama-4-Scout-17B-16E"),
        # Llama 3.3 70B (Meta 2024; HF meta-llama/Llama-3.3-70B-Instruct): vocab 128,256, d 8,192,
        # 80 layers, 64 heads / 8 KV heads of 128, SwiGLU 28,672, dense, untied.
        _decoder("llama-3.3-70b", vocab=128_256, d=8192, layers=80, heads=64, kv_heads=8, head_dim=128,
                 ffn=28_672, experts=1, top_k=1, tied=False, published="70B (Meta 2024)",
                 source="HF meta-llama/Llama-3.3-70B-Instruct config.json"),
    )}


KNOWN: dict[str, ModelShape] = _known()


def known(name: str) -> ModelShape:
    try:
        return KNOWN[name.lower()]
    except KeyError:
        raise KeyError(f"unknown model {name!r} (known: {', '.join(KNOWN)})") from None


def from_mlp(shape: MoEShape, name: str = "mlp") -> ModelShape:
    """The seed's MLP MoE in seed 003's terms: the router is shared, each expert is a whole MLP."""
    p = shape.params()
    return ModelShape(name, p.router, shape.expert.params().total, shape.num_experts, shape.top_k,
                      shape.input_dim, shape.output_dim, 1, source="moecluster MLP preset (seed 001)")


def from_llm(shape: LlmShape, name: str) -> ModelShape:
    """A measured LLM (`agents.workloads.llm`) in seed 003's terms, from its own accounting: the routed
    experts of every layer are the experts, everything else (embeddings, attention, norms, routers, a
    shared expert) is shared; a dense model is one expert, `E = k = 1`."""
    p = shape.params()
    expert = shape.num_layers * shape.expert_params()
    if not shape.is_moe:
        return ModelShape(name, p.total - expert, expert, 1, 1, shape.hidden_size, shape.hidden_size, 0,
                          kind="dense", source="moecluster LLM workload")
    return ModelShape(name, p.total - shape.num_experts * expert, expert, shape.num_experts, shape.top_k,
                      shape.hidden_size, shape.hidden_size, shape.num_layers, source="moecluster LLM workload")


def mlp_preset(name: str) -> ModelShape:
    return from_mlp(preset(name), f"mlp-{name}")


MLP_PRESETS = tuple(PRESETS)
