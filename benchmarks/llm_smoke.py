"""LLM smoke test on one GPU (< 90 s): every form of the scaled Mixtral preset and its active-matched twin,
once each, checked against transformers and set against the HBM ceiling measured in the same run.

Forms, for decode at each --batches (prompt --prompt-len, --gen-tokens generated) and for one prefill:
- reference: transformers' `generate`, eager, DynamicCache, its own experts dispatch;
- static eager / static graph: moecluster's loop over the model's modules with a static KV cache, run
  eagerly or replayed from a CUDA graph of one decode step (of the whole prefill forward), with the
  library's experts (`library`) or moecluster's kernels (`grouped_mm`; `gather` at batch 1).
Each prints tokens/s, the fraction of the HBM ceiling (bytes of the weights the step reads, with the
experts the realised routing reached, plus the KV cache read and written, at the bandwidth of a large
read measured here; for prefill, of the roofline with the datasheet's bf16 peak), the first-step logits'
relative error against the reference and the greedy tokens' agreement. Any exception is printed with
its traceback and the script goes on.

    . benchmarks/device_env.sh && python3 benchmarks/llm_smoke.py --out $OUT/llm_smoke.json
"""
from __future__ import annotations

import argparse
import gc
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from _common import environment, print_table, write_json
from moe_kernels import read_bandwidth
from moecluster.workloads.forms import rel_err
from moecluster.workloads.llm.build import build_model, transformers_version
from moecluster.workloads.llm.engine import StaticEngine
from moecluster.workloads.llm.experts import GATHER, GROUPED_MM, library_experts, use_experts
from moecluster.workloads.llm.forms import DecodeRun, Outputs, PrefillRun, capture_step, token_agreement
from moecluster.spec.llm.presets import preset
from moecluster.workloads.llm.reference import ReferenceDecode, ReferencePrefill, dynamic_cache
from moecluster.workloads.llm.routing import count_routing
from moecluster.spec.llm.shapes import LlmShape
from moecluster.spec.llm.twins import match_dense
from moecluster.head.estimate import lookup

ROWS: list[dict[str, Any]] = []


def timed_s(fn: Callable[[], object]) -> float:
    """Seconds of one call, by CUDA events (the host clock on a CPU), after one warm-up call."""
    fn()
    if not torch.cuda.is_available():
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def bandwidth(device: torch.device) -> float:
    """Bytes/s of a large read: `moe_kernels.read_bandwidth` on a GPU; a 256 MiB sum on a CPU (a dry run)."""
    if device.type == "cuda":
        return read_bandwidth()
    x = torch.ones(2**27)
    return x.numel() * 4 / timed_s(x.sum)


def attempt(label: str, fn: Callable[[], dict[str, Any] | None]) -> None:
    """Run one form; print its exception with the traceback instead of dying."""
    t0 = time.perf_counter()
    try:
        row = fn()
    except Exception:  # noqa: BLE001 - a smoke test reports every failure and goes on
        print(f"--- {label}: FAILED after {time.perf_counter() - t0:.1f} s")
        traceback.print_exc()
        ROWS.append({"form": label, "error": traceback.format_exc().strip().splitlines()[-1]})
        return
    if row is not None:
        row = {"form": label, **row, "wall_s": time.perf_counter() - t0}
        ROWS.append(row)
        print(f"--- {label}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                           for k, v in row.items() if k != "form"), flush=True)


def _row(tokens: int, seconds: float, bytes_moved: float, bw: float, out: Outputs | None, ref: Outputs | None,
         flops: float = 0.0, peak_flops: float | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"tokens_per_s": tokens / seconds, "ms": seconds * 1e3,
                           "hbm_frac": bytes_moved / bw / seconds}
    if peak_flops:
        row["roofline_frac"] = max(bytes_moved / bw, flops / peak_flops) / seconds
    if out is not None and ref is not None:
        row["rel_err"] = rel_err(out.logits, ref.logits)
        same, n = token_agreement(out.tokens, ref.tokens)
        row["tokens_agree"] = f"{same}/{n}"
    return row


def decode_forms(name: str, model: torch.nn.Module, shape: LlmShape, batch: int, prompt_len: int, gen: int,
                 bw: float, dtype: torch.dtype, dev: torch.device) -> None:
    prompt = torch.randint(0, shape.vocab_size, (batch, prompt_len), device=dev)
    with torch.inference_mode():
        engine = StaticEngine(model, batch, prompt_len - 1 + gen, gen, dev, dtype)
        engine.start_from(prompt)
        filled = prompt_len - 1
        cache = dynamic_cache(model, [k[:, :, :filled] for k in engine.keys], [v[:, :, :filled] for v in engine.values])
    ref = ReferenceDecode(model, prompt, gen, cache)
    db = torch.empty((), dtype=dtype).element_size()
    state: dict[str, Any] = {}
    tag = f"{name} decode b{batch}"

    def reference() -> dict[str, Any]:
        use_experts(model, None)
        with count_routing(model, shape.num_experts) as routing:
            state["ref"] = ref.outputs()
        state["hit"] = routing.experts_hit
        seconds = timed_s(ref.step)
        return {**_row(batch * gen, seconds, shape.decode_bytes(db, batch, prompt_len, gen, state["hit"]), bw, None,
                       None), "experts_hit": state.get("hit") or 0.0, "experts": library_experts(model)}

    def static(kernel: str | None, graph: bool) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            use_experts(model, kernel)
            r = DecodeRun(engine, gen)
            out = r.outputs()
            step: Callable[[], None] = r.step
            if graph:
                g = capture_step(engine.decode_step, engine.reset, ())
                g_out = r.graph_outputs(g)
                if rel_err(g_out.logits, out.logits) > 3e-2:
                    raise RuntimeError(f"graph replay differs from eager: {rel_err(g_out.logits, out.logits):.2e}")
                out, step = g_out, r.graph_step(g)
            seconds = timed_s(step)
            return _row(batch * gen, seconds, shape.decode_bytes(db, batch, prompt_len, gen, state.get("hit")), bw,
                        out, state.get("ref"))
        return run

    with torch.inference_mode():
        attempt(f"{tag} reference (transformers generate, eager)", reference)
        kernels: list[str | None] = [None] + ([GROUPED_MM] + ([GATHER] if batch * shape.top_k <= shape.num_experts
                                                              else []) if shape.is_moe else [])
        for kernel in kernels:
            label = "library" if kernel is None else kernel
            if kernel in (None, GROUPED_MM):
                attempt(f"{tag} static eager, experts {label}", static(kernel, False))
            attempt(f"{tag} static graph, experts {label}", static(kernel, True))
        use_experts(model, None)
    # the engine, its cache and the reference's are freed on return


def prefill_forms(name: str, model: torch.nn.Module, shape: LlmShape, prompt_len: int, bw: float,
                  dtype: torch.dtype, peak_flops: float | None, dev: torch.device) -> None:
    prompt = torch.randint(0, shape.vocab_size, (1, prompt_len), device=dev)
    engine = StaticEngine(model, 1, prompt_len, 0, dev, dtype)
    ref = ReferencePrefill(model, prompt)
    db = torch.empty((), dtype=dtype).element_size()
    state: dict[str, Any] = {}
    tag = f"{name} prefill p{prompt_len}"
    flops = shape.prefill_flops_per_token(prompt_len) * prompt_len

    def reference() -> dict[str, Any]:
        use_experts(model, None)
        with count_routing(model, shape.num_experts) as routing:
            state["ref"] = ref.outputs()
        state["hit"] = routing.experts_hit
        return _row(prompt_len, timed_s(ref.step), shape.prefill_bytes(db, 1, prompt_len, state["hit"]), bw, None,
                    None, flops, peak_flops)

    def static(kernel: str | None, graph: bool) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            use_experts(model, kernel)
            r = PrefillRun(engine, prompt)
            out = r.outputs()
            step: Callable[[], None] = r.step
            if graph:
                g = capture_step(lambda: engine.prefill(prompt), lambda: None, ())
                out, step = r.graph_outputs(g), r.graph_step(g)
            return _row(prompt_len, timed_s(step), shape.prefill_bytes(db, 1, prompt_len, state.get("hit")), bw, out,
                        state.get("ref"), flops, peak_flops)
        return run

    with torch.inference_mode():
        attempt(f"{tag} reference (transformers generate, eager)", reference)
        for kernel in [None, GROUPED_MM] if shape.is_moe else [None]:
            label = "library" if kernel is None else kernel
            attempt(f"{tag} static eager, experts {label}", static(kernel, False))
            attempt(f"{tag} static graph, experts {label}", static(kernel, True))
        use_experts(model, None)
    # the engine, its cache and the reference's are freed on return


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mixtral-8x7b-8l")
    ap.add_argument("--twin", default="active", choices=["active", "total", "none"])
    ap.add_argument("--batches", default="1,64", help="decode batch sizes, comma-separated")
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--prefill-len", type=int, default=2048)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run of the script itself"
                    " (with --preset tiny-mixtral; no graphs there)")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    env = {**environment(), "transformers": transformers_version()}
    print(env, flush=True)
    bw = bandwidth(dev)
    gpu = lookup(torch.cuda.get_device_name()) if dev.type == "cuda" else None
    peak_flops = gpu.peak_flops("bfloat16") if gpu else None
    print(f"HBM ceiling (large bf16 read, measured): {bw / 1e12:.2f} TB/s"
          + (f"; datasheet {gpu.memory_bytes_per_s / 1e12:.2f} TB/s, bf16 {peak_flops / 1e12:.0f} TFLOP/s"
             if gpu and peak_flops else ""), flush=True)
    moe = preset(args.preset).shape
    models = [("moe", moe)] + ([] if args.twin == "none" else [(f"dense/{args.twin}", match_dense(moe, args.twin))])
    for name, shape in models:
        t_build = time.perf_counter()
        try:
            model = build_model(shape, dev, dtype, 0, args.prefill_len + args.gen_tokens + 1)
        except Exception:  # noqa: BLE001
            print(f"--- {name}: build FAILED")
            traceback.print_exc()
            continue
        used = torch.cuda.memory_allocated() / 2**30 if dev.type == "cuda" else 0.0
        print(f"=== {name}: {shape.describe()}, {shape.params().total / 1e9:.2f} B parameters, built in"
              f" {time.perf_counter() - t_build:.1f} s; {used:.1f} GiB", flush=True)
        for batch in (int(b) for b in args.batches.split(",")):
            decode_forms(name, model, shape, batch, args.prompt_len, args.gen_tokens, bw, dtype, dev)
        prefill_forms(name, model, shape, args.prefill_len, bw, dtype, peak_flops, dev)
        del model
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    print_table(ROWS, ["form", "tokens_per_s", "ms", "hbm_frac", "roofline_frac", "rel_err", "tokens_agree",
                       "experts_hit", "error"])
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.out:
        write_json(args.out, {"environment": env, "hbm_bytes_per_s": bw, "rows": ROWS, "args": vars(args)})


if __name__ == "__main__":
    main()
