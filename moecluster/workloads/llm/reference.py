"""The familiar reference: transformers' own `generate`, eager, with its default (dynamic) cache.

- prefill: `generate(prompt, max_new_tokens=1)`, one forward over the prompts and the greedy
  first token, as a user's first call does;
- decode: `generate` continuing from a `DynamicCache` that holds the prompts' first `prompt_len - 1`
  tokens (filled once at prepare), so its `gen_tokens` forwards each read one token (the prompt's
  last, then each new one), as after a prefill; the cache is cropped back after every response.

Greedy, no sampling, never stopping early (no end-of-sequence token), every prompt token attended
(an explicit all-ones mask: transformers would otherwise mask the tokens equal to the pad id). Its
outputs are also what every fast form is checked against (`outputs`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from moecluster.workloads.llm.forms import Outputs

GENERATE = dict(do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=True)


def dynamic_cache(model: nn.Module, keys: Sequence[Tensor], values: Sequence[Tensor]) -> Any:
    """transformers' `DynamicCache` holding copies of these per-layer keys and values [batch, kv heads,
    positions, head dim] (none where they hold no position)."""
    from transformers import DynamicCache

    m: Any = model
    try:
        cache = DynamicCache(config=m.config)
    except TypeError:  # a release whose DynamicCache takes no config
        cache = DynamicCache()
    for i, (k, v) in enumerate(zip(keys, values)):
        if k.shape[2]:
            cache.update(k.clone(), v.clone(), i)
    return cache


class ReferencePrefill:
    """transformers' prefill of `prompt` [batch, prompt_len]: `step()` runs one."""

    def __init__(self, model: nn.Module, prompt: Tensor) -> None:
        self.model: Any = model
        self.prompt = prompt
        self.mask = torch.ones_like(prompt)  # every token counts (else a token equal to the pad id is masked)

    def step(self) -> Tensor:
        return self.model.generate(self.prompt, attention_mask=self.mask, max_new_tokens=1, **GENERATE)

    def outputs(self) -> Outputs:
        out = self.model.generate(self.prompt, attention_mask=self.mask, max_new_tokens=1, output_logits=True,
                                  return_dict_in_generate=True, **GENERATE)
        return Outputs(logits=out.logits[0], tokens=out.sequences[:, self.prompt.shape[1]:])


class ReferenceDecode:
    """transformers' decode of `gen_tokens` tokens after `prompt`: `step()` runs one response.

    `cache` holds the prompts' first `prompt_len - 1` tokens (`dynamic_cache`: moecluster fills it a few
    sequences at a time, which a whole batch's single forward could not afford at large batch sizes).
    """

    def __init__(self, model: nn.Module, prompt: Tensor, gen_tokens: int, cache: Any) -> None:
        self.model: Any = model
        self.prompt = prompt
        self.gen_tokens = gen_tokens
        self.cache = cache
        self.mask = torch.ones_like(prompt)

    def _generate(self, new_tokens: int, **extra: Any) -> Any:
        try:
            return self.model.generate(self.prompt, attention_mask=self.mask, past_key_values=self.cache,
                                       max_new_tokens=new_tokens, min_new_tokens=new_tokens, **GENERATE, **extra)
        finally:
            grown = self.cache.get_seq_length() - (self.prompt.shape[1] - 1)
            if grown > 0:
                self.cache.crop(-grown)  # back to the prompt (a negative count removes that many)

    def step(self, new_tokens: int | None = None) -> Tensor:
        return self._generate(new_tokens or self.gen_tokens)

    def outputs(self, new_tokens: int | None = None) -> Outputs:
        out = self._generate(new_tokens or self.gen_tokens, output_logits=True, return_dict_in_generate=True)
        return Outputs(logits=out.logits[0], tokens=out.sequences[:, self.prompt.shape[1]:])
