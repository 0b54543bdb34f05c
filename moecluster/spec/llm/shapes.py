"""Shapes and accounting of decoder-only transformers (pure Python: no torch, no transformers).

One `LlmShape` describes a model of one transformers family (`FAMILIES`): its widths, depth,
attention heads and, for an MoE, its experts. This module is the one place that counts its
parameters (total and active per token, as `ParamCounts`, the record every workload fills), its
FLOPs per token and the fewest bytes a step must move (every weight it uses once, the KV cache it
writes and reads), for the roofline; the sweep, the twins, the memory check and the node all
call it. A test checks the counts against the parameters of the model transformers builds.

Every family shares one layer: RMSNorm, attention (grouped-query, rotary), RMSNorm, FFN (SwiGLU,
or an MoE of SwiGLU experts behind a softmax top-k router), with untied input and output
embeddings. Families differ in biases on q/k/v (Qwen2), RMSNorms on q and k per head (Qwen3),
and an always-on shared expert with a sigmoid gate (Qwen2-MoE).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields

from moecluster.spec.records import ParamCounts
from moecluster.spec.mlp.shapes import ShapeError


@dataclass(frozen=True)
class Family:
    """A transformers model family (`model_type`) and what its layers hold beyond the common core."""

    architecture: str
    label: str
    moe: bool
    twin: str  # the dense family whose attention is the same: the architecture of an MoE's twins
    qkv_bias: bool = False
    qk_norm: bool = False
    shared_expert: bool = False


FAMILIES: dict[str, Family] = {f.architecture: f for f in (
    Family("mixtral", "Mixtral", moe=True, twin="mistral"),
    Family("qwen2_moe", "Qwen2-MoE (shared expert)", moe=True, twin="qwen2", qkv_bias=True, shared_expert=True),
    Family("qwen3_moe", "Qwen3-MoE", moe=True, twin="qwen3", qk_norm=True),
    Family("llama", "Llama", moe=False, twin="llama"),
    Family("mistral", "Mistral (no sliding window)", moe=False, twin="mistral"),
    Family("qwen2", "Qwen2", moe=False, twin="qwen2", qkv_bias=True),
    Family("qwen3", "Qwen3", moe=False, twin="qwen3", qk_norm=True),
)}
MOE_ARCHITECTURES = tuple(a for a, f in FAMILIES.items() if f.moe)


def closest(word: str, known: Iterable[str], n: int = 3) -> str:
    """"did you mean 'a', 'b'?; " for the closest of `known` (difflib), or ""."""
    close = difflib.get_close_matches(word, list(known), n=n, cutoff=0.5)
    return f"did you mean {', '.join(repr(c) for c in close)}?; " if close else ""


def family(architecture: str) -> Family:
    """The family of `architecture`; ShapeError naming the closest known ones otherwise."""
    try:
        return FAMILIES[architecture]
    except KeyError:
        raise ShapeError(f"unknown architecture {architecture!r} ({closest(architecture, FAMILIES)}"
                         f"known: {', '.join(FAMILIES)})") from None


def experts_hit_uniform(num_experts: int, top_k: int, tokens: int) -> float:
    """Expected distinct experts `tokens` tokens reach in one layer when each picks `top_k` of
    `num_experts` uniformly (used only where the realised routing was not counted)."""
    if num_experts <= 0:
        return 0.0
    return num_experts * (1.0 - (1.0 - min(top_k, num_experts) / num_experts) ** tokens)


@dataclass(frozen=True)
class LlmShape:
    """One decoder-only transformer. For a dense model `num_experts = top_k = 0` and
    `intermediate_size` is its FFN width; for an MoE `intermediate_size` is one expert's width."""

    architecture: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    num_experts: int = 0
    top_k: int = 0
    shared_intermediate_size: int = 0

    def __post_init__(self) -> None:
        fam = family(self.architecture)
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                     "intermediate_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ShapeError(f"{name} must be a positive integer, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ShapeError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        if self.head_dim % 2:
            raise ShapeError(f"head_dim must be even (rotary embeddings rotate pairs), got {self.head_dim}")
        if fam.moe:
            if self.num_experts < 1 or self.top_k < 1:
                raise ShapeError(f"a {self.architecture} MoE needs num_experts and top_k >= 1,"
                                 f" got {self.num_experts} and {self.top_k}")
            if self.top_k > self.num_experts:
                raise ShapeError(f"top_k ({self.top_k}) is larger than num_experts ({self.num_experts})")
        elif self.num_experts or self.top_k:
            raise ShapeError(f"{self.architecture} is dense: num_experts and top_k must be 0 (an MoE family is one of"
                             f" {', '.join(MOE_ARCHITECTURES)})")
        if fam.shared_expert and self.shared_intermediate_size <= 0:
            raise ShapeError(f"{self.architecture} needs shared_intermediate_size > 0 (its always-on shared expert)")
        if not fam.shared_expert and self.shared_intermediate_size:
            raise ShapeError(f"{self.architecture} has no shared expert: shared_intermediate_size must be 0")

    # -- what it is -----------------------------------------------------------------------
    @property
    def family(self) -> Family:
        return FAMILIES[self.architecture]

    @property
    def is_moe(self) -> bool:
        return self.family.moe

    def as_model(self) -> dict[str, int]:
        """The integer fields, as `TaskSpec.model` holds them (the architecture travels apart)."""
        return {k: v for k, v in asdict(self).items() if k != "architecture"}

    @classmethod
    def from_model(cls, architecture: str, model: Mapping[str, int]) -> "LlmShape":
        known = {f.name for f in fields(cls)} - {"architecture"}
        unknown = sorted(set(model) - known)
        if unknown:
            raise ShapeError(f"unknown llm model field {unknown[0]!r} ({closest(unknown[0], known)}known:"
                             f" {', '.join(sorted(known))})")
        try:
            return cls(architecture=architecture, **model)
        except TypeError as exc:
            raise ShapeError(f"bad llm model fields {sorted(model)}: {exc}") from None

    def describe(self) -> str:
        """"mixtral L8 d4096 h32/8×128 E8 k2 ff14336" in brief."""
        moe = f" E{self.num_experts} k{self.top_k}" if self.is_moe else ""
        shared = f" shared{self.shared_intermediate_size}" if self.shared_intermediate_size else ""
        return (f"{self.architecture} L{self.num_layers} d{self.hidden_size} h{self.num_heads}/{self.num_kv_heads}"
                f"×{self.head_dim}{moe} ff{self.intermediate_size}{shared} V{self.vocab_size}")

    # -- parameters ---------------------------------------------------------------------------
    def attention_params(self) -> int:
        """One layer's q, k, v and output projections, with Qwen2's q/k/v biases or Qwen3's q/k norms."""
        q, kv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        params = 2 * self.hidden_size * q + 2 * self.hidden_size * kv
        if self.family.qkv_bias:
            params += q + 2 * kv
        if self.family.qk_norm:
            params += 2 * self.head_dim
        return params

    def expert_params(self) -> int:
        """One SwiGLU expert (or the dense FFN) of one layer: gate, up and down projections."""
        return 3 * self.hidden_size * self.intermediate_size

    def router_params(self) -> int:
        """One layer's router (no bias)."""
        return self.hidden_size * self.num_experts if self.is_moe else 0

    def shared_expert_params(self) -> int:
        """One layer's always-on shared expert and its sigmoid gate (Qwen2-MoE), else 0."""
        if not self.shared_intermediate_size:
            return 0
        return 3 * self.hidden_size * self.shared_intermediate_size + self.hidden_size

    def norm_params(self) -> int:
        """RMSNorm scales: two per layer and the final one."""
        return (2 * self.num_layers + 1) * self.hidden_size

    def embedding_params(self) -> int:
        """The input embedding table (read a row per token, never multiplied)."""
        return self.vocab_size * self.hidden_size

    def lm_head_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def routed_experts(self) -> int:
        return self.num_experts if self.is_moe else 1

    def params(self) -> ParamCounts:
        """Total parameters and those a token uses (every one but the experts it is not routed to)."""
        per_layer = (self.attention_params() + self.router_params() + self.shared_expert_params()
                     + self.routed_experts() * self.expert_params())
        total = self.embedding_params() + self.lm_head_params() + self.norm_params() + self.num_layers * per_layer
        if not self.is_moe:
            return ParamCounts(total=total, active_per_token=total)
        unused = self.num_layers * (self.num_experts - self.top_k) * self.expert_params()
        return ParamCounts(total=total, active_per_token=total - unused,
                           router=self.num_layers * self.router_params(),
                           experts=self.num_layers * self.num_experts * self.expert_params())

    def always_read_params(self) -> int:
        """Weights every forward reads whatever the routing: all but the embedding table (only the
        rows of the tokens are read) and the routed experts."""
        return (self.params().total - self.embedding_params()
                - self.num_layers * self.routed_experts() * self.expert_params())

    # -- FLOPs and bytes --------------------------------------------------------------------------
    def matmul_flops_per_token(self, logits: bool) -> float:
        """2 × the weights a token multiplies (projections, router, its experts; the output head
        only where its logits are computed); embeddings and norms are no multiply-adds."""
        active = self.params().active_per_token
        weights = active - self.embedding_params() - self.norm_params() - self.lm_head_params()
        if self.family.qk_norm:
            weights -= self.num_layers * 2 * self.head_dim
        return 2.0 * (weights + (self.lm_head_params() if logits else 0))

    def attention_flops_per_token(self, context: float) -> float:
        """QKᵀ and the weighted sum of V over `context` positions, every layer and head."""
        return 4.0 * self.num_layers * self.num_heads * self.head_dim * context

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """Keys and values of one token over every layer."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes

    def prefill_flops_per_token(self, prompt_len: int) -> float:
        """Per prompt token of a prefill that computes the last position's logits only."""
        return (self.matmul_flops_per_token(logits=False) + 2.0 * self.lm_head_params() / prompt_len
                + self.attention_flops_per_token((prompt_len + 1) / 2))

    def decode_flops_per_token(self, prompt_len: int, gen_tokens: int) -> float:
        """Per generated token, averaged over a response: step i attends to prompt_len + i positions."""
        return self.matmul_flops_per_token(logits=True) + self.attention_flops_per_token(
            prompt_len + (gen_tokens - 1) / 2)

    def weight_bytes_per_forward(self, dtype_bytes: int, tokens: int, experts_hit: float | None = None) -> float:
        """Weights one forward of `tokens` tokens reads once: the always-read ones, the embedding rows
        of its tokens and the experts hit (`experts_hit` per layer; the uniform expectation if None)."""
        if self.is_moe:
            hit = experts_hit_uniform(self.num_experts, self.top_k, tokens) if experts_hit is None else experts_hit
        else:
            hit = 1.0
        params = self.always_read_params() + tokens * self.hidden_size + self.num_layers * hit * self.expert_params()
        return dtype_bytes * params

    def prefill_bytes(self, dtype_bytes: int, batch: int, prompt_len: int, experts_hit: float | None = None) -> float:
        """Fewest bytes a prefill of `batch` prompts moves: its weights once, the KV cache it writes."""
        tokens = batch * prompt_len
        return (self.weight_bytes_per_forward(dtype_bytes, tokens, experts_hit)
                + tokens * self.kv_bytes_per_token(dtype_bytes))

    def decode_bytes(self, dtype_bytes: int, batch: int, prompt_len: int, gen_tokens: int,
                     experts_hit: float | None = None) -> float:
        """Fewest bytes a response of `gen_tokens` steps moves for `batch` sequences: each step reads
        its weights once and the KV cache of its context (prompt_len + i positions at step i,
        its own included), and writes one token's keys and values per sequence."""
        weights = gen_tokens * self.weight_bytes_per_forward(dtype_bytes, batch, experts_hit)
        positions = gen_tokens * prompt_len + gen_tokens * (gen_tokens - 1) / 2 + gen_tokens
        return weights + batch * positions * self.kv_bytes_per_token(dtype_bytes)
