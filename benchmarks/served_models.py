"""Write an LLM preset's MoE and its dense twins as servable model folders, and the serve sweep that measures them.

    python benchmarks/served_models.py --preset mixtral-8x7b-8l --num-layers 2 --root /tmp/served \\
        --sweep served.yaml --concurrency 1 8 32 [--device cuda]

Each model is built exactly as the `llm` workload builds it (`workloads.llm.build.build_model`: the
preset's shape, random weights from `--seed`, the twins matched by total and by active parameters under
today's twin policy), saved in `--dtype` with a byte-level BPE tokenizer of the model's own vocabulary
trained in-process (`serve.tiny.write_tokenizer`), so `transformers serve` answers chat completions with
nothing downloaded. The sweep (`workload: serve`) serves each with `transformers serve` and continuous
batching at each `--concurrency` level; `--fast-path` prints the `moecluster bench` lines that measure the
same shapes on moecluster's own decode loop, to put beside it. Random weights never choose to stop, so
every response runs to `--max-tokens` whatever `output` says.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from moecluster.spec.llm.presets import moe_preset
from moecluster.spec.llm.shapes import LlmShape
from moecluster.spec.llm.twins import match_dense

# the weights are saved in --dtype, which `transformers serve` loads as they are ("auto")
SERVER = "transformers serve {model} --port {port} --device cuda --continuous-batching"


def shapes(preset: str, num_layers: int | None) -> dict[str, tuple[LlmShape, str | None]]:
    """The MoE and its two twins by name, with what each dense one matches."""
    moe = moe_preset(preset, **({"num_layers": num_layers} if num_layers else {}))
    return {"moe": (moe, None), "dense-total": (match_dense(moe, "total"), "total"),
            "dense-active": (match_dense(moe, "active"), "active")}


def write_model(shape: LlmShape, path: Path, *, device: str, dtype: str, seed: int) -> None:
    """Build `shape` with random weights and save it with a tokenizer under `path` (kept where it exists)."""
    import torch

    from moecluster.workloads.llm.build import build_model
    from moecluster.workloads.serve.tiny import write_tokenizer

    if (path / "config.json").exists():
        return
    model = build_model(shape, torch.device(device), getattr(torch, dtype), seed, max_positions=4096)
    model.generation_config.eos_token_id = None  # random weights: every response runs to max_tokens
    model.save_pretrained(path)
    write_tokenizer(path, vocab_size=shape.vocab_size, seed=seed)
    del model


def sweep(name: str, root: Path, models: dict[str, tuple[LlmShape, str | None]],
          args: argparse.Namespace) -> dict[str, Any]:
    """The serve sweep of the written models: the MoE against both twins, one pair per concurrency level."""

    def served(key: str) -> dict[str, Any]:
        shape, match = models[key]
        counts = shape.params()
        entry: dict[str, Any] = {"name": f"{name}-{key}", "model": str(root / key), "command": SERVER,
                                 "params_total": counts.total}
        if match is None:
            entry["params_active"] = counts.active_per_token
        else:
            entry["match"] = match
        return entry

    return {"name": f"served-{name}", "workload": "serve", "duration_s": args.duration, "warmup_s": args.warmup,
            "repeats": args.repeats, "replicates": args.replicates,
            "serve": {"prompts": "default", "max_tokens": args.max_tokens, "output": "natural",
                      "concurrency": list(args.concurrency), "startup_timeout_s": 300,
                      "pairs": [{"name": name, "moe": served("moe"),
                                 "dense": [served("dense-total"), served("dense-active")]}]}}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mixtral-8x7b-8l")
    parser.add_argument("--num-layers", type=int, default=None, help="decoder layers (default: the preset's)")
    parser.add_argument("--root", type=Path, required=True, help="where the model folders go")
    parser.add_argument("--sweep", type=Path, required=True, help="the serve sweep to write")
    parser.add_argument("--device", default="cuda", help="where the weights are drawn (cuda is faster)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--replicates", type=int, default=1)
    args = parser.parse_args(argv)
    models = shapes(args.preset, args.num_layers)
    name = args.preset + (f"-{args.num_layers}l" if args.num_layers else "")
    for key, (shape, _) in models.items():
        write_model(shape, args.root / key, device=args.device, dtype=args.dtype, seed=args.seed)
        counts = shape.params()
        print(json.dumps({"model": key, "path": str(args.root / key), "params_total": counts.total,
                          "params_active": counts.active_per_token}), file=sys.stderr)
    args.sweep.write_text(yaml.safe_dump(sweep(name, args.root, models, args), sort_keys=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
