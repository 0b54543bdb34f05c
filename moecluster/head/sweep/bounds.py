"""The largest values the head accepts, each with the reason it is the bound.

YAML and the command line accept numbers no node can use (`batch_size: 100000000000000000000000000`
reached the node and ended in a C++ dump there). Each bound below is far above any real
benchmark and below where the node, torch or Ray would fail; the real limit of sizes is the
memory a task needs (`memory.py`), and of durations the plan's estimated time (`size.py`).
`BOUND_REASONS` says why, for the one-line refusal.
"""
from __future__ import annotations

# Counts and sizes (batch, prompt and generated tokens, model dimensions, repeats, epochs, EP degree):
# CUDA kernels index a tensor dimension with 32-bit integers, so no count above this can be one.
MAX_COUNT = 2**31 - 1
# Seeds: torch's generators take up to 64 bits and the run store keeps integers as SQLite's signed 64 bits.
MAX_SEED = 2**63 - 1
# Zipf exponent: at 100, rank 2 gets 2**-100 of rank 1's tokens (every token picks the same experts);
# far above, 1/r**s underflows float64 and the sampler has fewer experts than top_k to draw.
MAX_ZIPF_S = 100.0
# One measured window or warm-up: a day. Energy resolves to 1 % within seconds; longer only delays.
MAX_WINDOW_S = 86_400.0
# Replicates of a pair (independent processes): beyond a few dozen the interval is as narrow as the
# GPUs' own spread lets it be, and each replicate is a whole pair's time again.
MAX_REPLICATES = 64
# Names (models, presets, architectures, accelerator types): long enough for any real one, short
# enough to echo in one line.
MAX_NAME_CHARS = 80

BOUND_REASONS = {
    "batch_size": "a tensor dimension CUDA kernels index with 32 bits",
    "prompt_len": "a tensor dimension CUDA kernels index with 32 bits",
    "gen_tokens": "a tensor dimension CUDA kernels index with 32 bits",
    "seed": "torch's generators and the run store hold 64-bit signed seeds",
    "zipf_s": "beyond it every token picks the same experts and float64 underflows",
    "duration_s": "a day per window; the plan's time is bounded by --max-hours",
    "warmup_s": "a day per warm-up; the plan's time is bounded by --max-hours",
    "replicates": "each replicate repeats every pair; beyond this the GPUs' own spread bounds the interval",
}
DEFAULT_REASON = "32-bit count; the plan's memory and time are bounded separately"
