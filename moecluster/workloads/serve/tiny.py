"""Tiny random-weight served models for CPU runs and tests: a 2-layer Mixtral (MoE) and a 2-layer Mistral
(dense), each saved with a byte-level BPE tokenizer trained in-process by `tokenizers` and a chat template,
so that `transformers serve DIR` answers `/v1/chat/completions` with nothing downloaded.

Why written here rather than fetched: tests and `examples/served-tiny.yaml` must run offline on a laptop
CPU (`HF_HUB_OFFLINE=1`); random weights are all the energy path needs (what is measured is the server's
work, not the answers' quality). `python -m moecluster.workloads.serve.tiny DIR` writes both
models under DIR (`DIR/tiny-moe`, `DIR/tiny-dense`; default `~/.cache/moecluster/served-tiny`, where
`examples/served-tiny.yaml` looks) and prints their parameter counts.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

VOCAB_SIZE = 512
DEFAULT_DIR = Path("~/.cache/moecluster/served-tiny")
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
_CORPUS = ("The energy of a mixture of experts depends on how many experts each token reads. "
           "A dense model reads every weight for every token. Servers batch requests as they arrive. ") * 40
SPECIAL = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]


@dataclass(frozen=True)
class TinyModel:
    """One written model: where it is and its parameter counts (total and active per token)."""

    name: str
    path: Path
    params_total: int
    params_active: int


def _corpus(vocab_size: int, seed: int) -> list[str]:
    """Training text with merges enough for `vocab_size` tokens: the fixed English corpus, then pseudo-random
    words drawn from `seed` (the English alone gives a few hundred merges; a real model's vocabulary is tens
    of thousands of tokens)."""
    import random

    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words_needed = 12 * vocab_size  # ~5 merges per word leave room for every token of the vocabulary
    return [_CORPUS] + [" ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(200))
                        for _ in range(max(1, words_needed // 200))]


def write_tokenizer(path: Path, vocab_size: int = VOCAB_SIZE, seed: int = 0) -> None:
    """A byte-level BPE tokenizer of `vocab_size` tokens, trained in-process, saved with a chat template.

    Its vocabulary is the model's, so every token id a random-weight model generates decodes to text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    smallest = len(pre_tokenizers.ByteLevel.alphabet()) + len(SPECIAL)
    if vocab_size < smallest:
        raise ValueError(f"a byte-level tokenizer needs at least {smallest} tokens (256 bytes and {len(SPECIAL)}"
                         f" special ones); the model has {vocab_size}")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(vocab_size, seed), trainer=trainer)
    if tok.get_vocab_size() != vocab_size:
        raise ValueError(f"the trained tokenizer has {tok.get_vocab_size()} tokens, the model {vocab_size}")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)


def write_tiny_models(root: Path, seed: int = 0) -> tuple[TinyModel, TinyModel]:
    """Write (or reuse, where `config.json` exists) the tiny MoE and its dense twin under `root`."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM, MixtralConfig, MixtralForCausalLM, PreTrainedModel

    common: dict[str, Any] = dict(
        vocab_size=VOCAB_SIZE, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, pad_token_id=2,
        tie_word_embeddings=False)
    moe_config = MixtralConfig(**common, intermediate_size=64, num_local_experts=4, num_experts_per_tok=2)
    builders: tuple[tuple[str, Callable[[], PreTrainedModel]], ...] = (
        ("tiny-moe", lambda: MixtralForCausalLM(moe_config)),
        ("tiny-dense", lambda: MistralForCausalLM(MistralConfig(**common, intermediate_size=128))))
    out = []
    for name, build in builders:
        path = root / name
        torch.manual_seed(seed)
        model = build()
        total = sum(p.numel() for p in model.parameters())
        active = total
        if name == "tiny-moe":
            experts = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
            active = total - experts + experts * moe_config.num_experts_per_tok // moe_config.num_local_experts
        if not (path / "config.json").exists():
            model.generation_config.do_sample = False
            model.save_pretrained(path)
            write_tokenizer(path)
        out.append(TinyModel(name=name, path=path, params_total=total, params_active=active))
    return out[0], out[1]


def main(argv: list[str]) -> int:
    """`python -m moecluster.workloads.serve.tiny [DIR]`: write both models, print them as JSON."""
    if len(argv) > 1:
        print("usage: python -m moecluster.workloads.serve.tiny [DIR]", file=sys.stderr)
        return 2
    models = write_tiny_models(Path(argv[0]).absolute() if argv else DEFAULT_DIR.expanduser())
    print(json.dumps([{"name": m.name, "path": str(m.path), "params_total": m.params_total,
                       "params_active": m.params_active} for m in models], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
