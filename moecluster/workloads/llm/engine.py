"""moecluster's fast path: transformers' own modules, driven by a loop with a static KV cache.

The engine calls the model's embedding, rotary embedding, norms, q/k/v/o projections (with
Qwen2's biases and Qwen3's q/k norms), MLP or MoE block and output head, so it computes the
same function of the same weights as transformers' `generate`; it owns only what decides speed:

- a static KV cache: keys and values of every layer preallocated for the whole response, written
  in place at device-side positions;
- a decode step with static shapes and no host sync: the position lives in a device tensor, the
  mask is `arange(cache) <= position`, the greedy token is written back into the input buffer,
  so one CUDA graph of one step replays a whole response, step after step, without the host;
- grouped-query attention without copies: in decode the query heads of one KV head are stacked as
  one head's queries (what `repeat_kv` would copy), in prefill SDPA's `enable_gqa`.

A response starts from a cache holding the prompt's first `prompt_len - 1` tokens (filled once at
prepare); its first step reads the prompt's last token, as `generate` does after a prefill of the
same tokens, and each of its `gen_tokens` steps writes one token per sequence.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moecluster.spec.llm.memory import FILL_CHUNK_TOKENS


ALL = slice(None)


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """Rotary embeddings as transformers applies them (`apply_rotary_pos_emb`, heads on dim 1)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


class StaticEngine:
    """Prefill and greedy decode of `model` for `batch` sequences over a cache of `cache_len` positions.

    Decode state: `ids` ([batch, 1], the next input tokens), `pos` ([1], the next position),
    `tokens` ([batch, gen_tokens], what the response generated so far).
    """

    def __init__(self, model: nn.Module, batch: int, cache_len: int, gen_tokens: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        m: Any = model
        config = m.config
        self.model = model
        self.layers: list[Any] = list(m.model.layers)
        self.embed, self.norm, self.rotary = m.model.embed_tokens, m.model.norm, m.model.rotary_emb
        self.lm_head = m.lm_head
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.batch, self.cache_len = batch, cache_len
        shape = (batch, self.kv_heads, cache_len, self.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in self.layers]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in self.layers]
        self.positions = torch.arange(cache_len, device=device)
        self.ids = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.tokens = torch.zeros(batch, max(1, gen_tokens), dtype=torch.long, device=device)
        self._start_ids = torch.zeros_like(self.ids)
        self._start_pos = torch.zeros_like(self.pos)

    # -- one layer's attention -----------------------------------------------------------------
    def _attention(self, i: int, attn: Any, h: Tensor, cos: Tensor, sin: Tensor, write: Tensor,
                   mask: Tensor | None, rows: slice) -> Tensor:
        b, t, _ = h.shape
        q = attn.q_proj(h).view(b, t, -1, self.head_dim)
        k = attn.k_proj(h).view(b, t, -1, self.head_dim)
        v = attn.v_proj(h).view(b, t, -1, self.head_dim).transpose(1, 2)
        if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm per head, before the rotation
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = _rope(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
        keys, values = self.keys[i][rows], self.values[i][rows]
        keys.index_copy_(2, write, k)
        values.index_copy_(2, write, v)
        if mask is not None:  # decode: one query per sequence; a KV head's query heads as its queries
            group = q.reshape(b, self.kv_heads, self.heads // self.kv_heads, self.head_dim)
            out = F.scaled_dot_product_attention(group, keys, values, attn_mask=mask, scale=attn.scaling)
            out = out.reshape(b, 1, self.heads * self.head_dim)
        else:  # prefill from position 0: causal over the first t positions
            out = _causal_gqa(q, keys[:, :, :t], values[:, :, :t], attn.scaling)
            out = out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        return attn.o_proj(out)

    def _layers(self, x: Tensor, positions: Tensor, mask: Tensor | None, rows: slice = ALL) -> Tensor:
        cos, sin = self.rotary(x, positions.view(1, -1))
        for i, layer in enumerate(self.layers):
            x = x + self._attention(i, layer.self_attn, layer.input_layernorm(x), cos, sin, positions, mask, rows)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.norm(x)

    # -- prefill ----------------------------------------------------------------------------
    def prefill(self, ids: Tensor, rows: slice = ALL) -> Tensor:
        """Prompts `ids` [batch, t] into cache positions 0..t-1 of sequences `rows`; the logits of their
        last position [batch, vocab]."""
        t = ids.shape[1]
        if t > self.cache_len:
            raise ValueError(f"{t} prompt tokens exceed the cache's {self.cache_len} positions")
        x = self._layers(self.embed(ids), self.positions[:t], None, rows)
        return self.lm_head(x[:, -1, :])

    # -- decode -------------------------------------------------------------------------------
    def start_from(self, prompt: Tensor) -> None:
        """Fill the cache with all but the last prompt token; each response starts from here.

        The prompts are prefilled a few sequences at a time (about `FILL_CHUNK_TOKENS` tokens per
        forward), so filling a large batch's cache needs no more memory than its decode steps.
        """
        filled = prompt.shape[1] - 1
        if filled > 0:
            rows = max(1, FILL_CHUNK_TOKENS // filled)
            for start in range(0, self.batch, rows):
                part = slice(start, min(self.batch, start + rows))
                self.prefill(prompt[part, :-1], part)
        self._start_ids.copy_(prompt[:, -1:])
        self._start_pos.fill_(prompt.shape[1] - 1)
        self.reset()

    def reset(self) -> None:
        """Back to the response's first step (device copies only: no host sync)."""
        self.ids.copy_(self._start_ids)
        self.pos.copy_(self._start_pos)

    def decode_step(self) -> Tensor:
        """One greedy step for every sequence: reads `ids` at `pos`, writes the next tokens into `ids`
        and `tokens`, advances `pos`; returns the step's logits [batch, vocab]."""
        mask = (self.positions <= self.pos).view(1, 1, 1, -1)
        x = self._layers(self.embed(self.ids), self.pos, mask)
        logits = self.lm_head(x[:, -1, :])
        nxt = logits.argmax(dim=-1, keepdim=True)
        self.tokens.index_copy_(1, self.pos - self._start_pos, nxt)
        self.ids.copy_(nxt)
        self.pos.add_(1)
        return logits


def _causal_gqa(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """Causal SDPA with fewer KV heads than query heads: `enable_gqa` where torch has it (no copy),
    else the KV heads repeated as transformers' `repeat_kv` does."""
    try:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=True)
    except TypeError:  # torch < 2.5
        rep = q.shape[1] // k.shape[1]
        return F.scaled_dot_product_attention(q, k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1),
                                              is_causal=True, scale=scale)
