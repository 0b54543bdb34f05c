"""Where a batch-1 decode step's time goes: moecluster's fast path against the HBM ceiling, kernel by kernel.

For the scaled Mixtral preset and both its dense twins, at the sweep's decode shape (batch --batch,
prompt --prompt-len, --gen-tokens generated): the step's time replayed from a CUDA graph (as the
sweep's tasks run it) and eagerly, the ideal time (bytes the step must read, with the experts the
realised routing reached, at the bandwidth of a large read measured here), and the GPU kernels of
eager steps (torch.profiler, self device time), in classes:
- weight GEMM/GEMV (cuBLAS, cuBLASLt `nvjet`, CUTLASS grouped): the time that reading the weights takes,
  with the bandwidth it reaches;
- attention (flash/efficient/cuDNN SDPA kernels);
- everything else (norms, RoPE, activations, residual adds, the router's top-k, the experts' sort,
  counts and gather, cache writes): small kernels whose time is mostly their launch and tail.
The graph step minus the kernels' sum is what the GPU spends between kernels.

    . benchmarks/device_env.sh && python3 benchmarks/llm_decode_profile.py --out $OUT/llm_decode_profile.json
"""
from __future__ import annotations

import argparse
import gc
import time
from collections import defaultdict
from typing import Any

import torch

from _common import environment, print_table, write_json
from llm_smoke import bandwidth, timed_s
from moecluster.workloads.llm.build import build_model, transformers_version
from moecluster.workloads.llm.engine import StaticEngine
from moecluster.workloads.llm.experts import GROUPED_MM, use_experts
from moecluster.workloads.llm.forms import DecodeRun, capture_step
from moecluster.spec.llm.presets import preset
from moecluster.workloads.llm.routing import count_routing
from moecluster.spec.llm.shapes import LlmShape
from moecluster.spec.llm.twins import match_dense

GEMM_MARKS = ("gemm", "gemv", "nvjet", "cutlass", "xmma", "cublas", "grouped_mm")
ATTENTION_MARKS = ("flash", "fmha", "attention", "sdpa", "cudnn", "efficient")


def kernel_class(name: str) -> str:
    low = name.lower()
    if any(mark in low for mark in ATTENTION_MARKS):
        return "attention"
    if any(mark in low for mark in GEMM_MARKS):
        return "weight GEMM/GEMV"
    return "other"


def kernels_of(prof: Any) -> list[tuple[str, int, float]]:
    """(kernel name, calls, self device µs) of every GPU kernel in the profile."""
    rows = []
    for evt in prof.key_averages():
        self_us = getattr(evt, "self_device_time_total", None)
        if self_us is None:
            self_us = getattr(evt, "self_cuda_time_total", 0.0)
        if self_us > 0 and getattr(evt, "cpu_time_total", 0.0) == 0:
            rows.append((evt.key, int(evt.count), float(self_us)))
    return rows


def profile_model(name: str, shape: LlmShape, args: argparse.Namespace, bw: float, dev: torch.device) -> dict[str, Any]:
    dtype = torch.bfloat16
    gen = args.gen_tokens
    model = build_model(shape, dev, dtype, 0, args.prompt_len + gen + 1)
    if shape.is_moe:
        use_experts(model, GROUPED_MM)
    prompt = torch.randint(0, shape.vocab_size, (args.batch, args.prompt_len), device=dev,
                           generator=torch.Generator(device=dev).manual_seed(0))
    with torch.inference_mode():
        engine = StaticEngine(model, args.batch, args.prompt_len - 1 + gen, gen, dev, dtype)
        engine.start_from(prompt)
        run = DecodeRun(engine, gen)
        with count_routing(model, shape.num_experts) as routing:
            run.step()
        db = torch.empty((), dtype=dtype).element_size()
        step_bytes = shape.decode_bytes(db, args.batch, args.prompt_len, gen, routing.experts_hit) / gen
        ideal_s = step_bytes / bw
        eager_s = timed_s(run.step) / gen
        graph = run.capture(capture_step)
        graph_s = timed_s(run.graph_step(graph)) / gen
        del graph
        run.step()
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            run.step()
            torch.cuda.synchronize()
    kernels = kernels_of(prof)
    classes: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for kname, calls, us in kernels:
        c = classes[kernel_class(kname)]
        c[0] += calls / gen
        c[1] += us / gen / 1e3
    kernel_ms = sum(c[1] for c in classes.values())
    gemm_ms = classes["weight GEMM/GEMV"][1]
    top = sorted(kernels, key=lambda k: -k[2])[:args.top]
    result = {
        "model": name, "shape": shape.describe(), "params_total": shape.params().total,
        "experts_hit": routing.experts_hit, "graph_ms_per_step": graph_s * 1e3, "eager_ms_per_step": eager_s * 1e3,
        "ideal_ms_per_step": ideal_s * 1e3, "hbm_frac_graph": ideal_s / graph_s,
        "kernels_ms_per_step": kernel_ms, "between_kernels_ms_per_step": graph_s * 1e3 - kernel_ms,
        "classes": {k: {"kernels_per_step": v[0], "ms_per_step": v[1]} for k, v in classes.items()},
        "gemm_bytes_per_s_if_all_bytes": step_bytes / (gemm_ms / 1e3) if gemm_ms else None,
        "top_kernels": [{"name": k[:120], "calls_per_step": c / gen, "ms_per_step": us / gen / 1e3}
                        for k, c, us in top],
    }
    del engine, run, model
    gc.collect()
    torch.cuda.empty_cache()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mixtral-8x7b-8l")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--top", type=int, default=12, help="kernels listed per model")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    dev = torch.device("cuda")
    env = {**environment(), "transformers": transformers_version()}
    bw = bandwidth(dev)
    print(env, f"\nHBM ceiling (large bf16 read, measured): {bw / 1e12:.2f} TB/s", flush=True)
    moe = preset(args.preset).shape
    results = []
    for name, shape in (("moe", moe), ("dense/active", match_dense(moe, "active")),
                        ("dense/total", match_dense(moe, "total"))):
        r = profile_model(name, shape, args, bw, dev)
        results.append(r)
        print(f"=== {name}: {r['shape']}", flush=True)
        print_table([{"class": k, **v} for k, v in r["classes"].items()],
                    ["class", "kernels_per_step", "ms_per_step"])
        print_table(r["top_kernels"], ["name", "calls_per_step", "ms_per_step"])
    print_table(results, ["model", "experts_hit", "graph_ms_per_step", "eager_ms_per_step", "ideal_ms_per_step",
                          "hbm_frac_graph", "kernels_ms_per_step", "between_kernels_ms_per_step",
                          "gemm_bytes_per_s_if_all_bytes"])
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.out:
        write_json(args.out, {"environment": env, "hbm_bytes_per_s": bw, "args": vars(args), "models": results})


if __name__ == "__main__":
    main()
