"""How much GPU memory an LLM task needs, from its shape alone (pure Python), and the refusal
before anything is allocated when the GPU has less free.

The need is the weights (parameters × bytes), the KV caches (the static one of the fast path,
batch × positions, and transformers' dynamic one of the reference, which prepare runs beside it
and which a decode copies once more as it appends a token), and
the activations of one forward (of a step, or of the chunked prefill that fills a decode's cache:
hidden states, q/k/v, the FFN's or the chosen experts' inner
widths, float32 logits), counted twice: one forward's worth stays in a CUDA graph's pool while
the next runs eagerly at prepare. A float32 prefill also holds its attention scores (SDPA's flash
kernel takes half precision only). The figure is an estimate that errs on the generous side; the
node refuses a task whose estimate exceeds the free memory, naming both numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moecluster.spec.llm.shapes import LlmShape

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
FILL_CHUNK_TOKENS = 8192  # tokens per forward while a decode's cache is filled with its prompts
WORKSPACE_BYTES = 2**29  # cuBLAS workspaces, the allocator's rounding, small buffers
GIB = 2**30


@dataclass(frozen=True)
class MemoryNeed:
    weights_bytes: float
    kv_cache_bytes: float
    activations_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.kv_cache_bytes + 2 * self.activations_bytes + WORKSPACE_BYTES

    def describe(self) -> str:
        return (f"{self.total_bytes / GIB:,.2f} GiB (weights {self.weights_bytes / GIB:,.2f} GiB, KV cache"
                f" {self.kv_cache_bytes / GIB:,.2f} GiB, activations ≈ 2 × {self.activations_bytes / GIB:,.2f} GiB,"
                f" workspace {WORKSPACE_BYTES / GIB:.1f} GiB)")


def activation_bytes(shape: LlmShape, tokens: int, batch: int, dtype_bytes: int) -> float:
    """One forward of `tokens` tokens (for `batch` sequences): its largest live tensors."""
    attn = (shape.num_heads + 2 * shape.num_kv_heads) * shape.head_dim
    hidden = tokens * (6 * shape.hidden_size + 2 * attn) * dtype_bytes
    if shape.is_moe:
        copies = tokens * shape.top_k
        ffn = copies * (3 * shape.intermediate_size + 2 * shape.hidden_size) * dtype_bytes
        ffn += copies * shape.hidden_size * 4 + tokens * 3 * shape.shared_intermediate_size * dtype_bytes
    else:
        ffn = tokens * 3 * shape.intermediate_size * dtype_bytes
    logits = batch * shape.vocab_size * 4
    return float(hidden + ffn + logits)


def memory_need(shape: LlmShape, dtype: str, phase: str, batch: int, prompt_len: int, gen_tokens: int) -> MemoryNeed:
    """What a task of `shape` needs (see the module's doc)."""
    db = DTYPE_BYTES.get(dtype, 4)
    positions = prompt_len if phase == "prefill" else prompt_len - 1 + gen_tokens
    # the static cache and, while prepare checks against it, the reference's dynamic one (which a decode
    # copies once more as each token is appended)
    kv = batch * positions * shape.kv_bytes_per_token(db) * (3 if phase == "decode" else 2)
    if phase == "prefill":
        act = activation_bytes(shape, batch * prompt_len, batch, db)
    else:  # the decode steps, or the forwards that fill the cache with the prompts, a few sequences at a time
        rows = min(batch, max(1, FILL_CHUNK_TOKENS // max(1, prompt_len - 1)))
        act = max(activation_bytes(shape, batch, batch, db),
                  activation_bytes(shape, rows * max(1, prompt_len - 1), rows, db))
    if phase == "prefill" and db == 4:
        act += batch * shape.num_heads * prompt_len * prompt_len * 4
    return MemoryNeed(weights_bytes=float(shape.params().total * db), kv_cache_bytes=float(kv), activations_bytes=act)


def host_memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> tuple[int, int] | None:
    """(available, total) bytes of this host's memory (Linux `MemAvailable`, `MemTotal`), None where unknown."""
    try:
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
        return int(fields["MemAvailable"].split()[0]) * 1024, int(fields["MemTotal"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
