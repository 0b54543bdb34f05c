"""Smoke test of the fused Triton MoE kernel on one GPU, in about a minute: does it compile, is it right, how fast.

At xxl (E=32, h=4096, L=6, k=8), batch 128 and 8,192, bf16 and fp32: compiles the fused path with
its untuned default tiles, checks it against the float64 reference, times it eagerly and as a CUDA
graph beside the plain `torch._grouped_mm` path (TFLOP/s of active FLOPs); in fp32 also the
labelled TF32 options with their error against fp32 (at the first batch). Then tunes the tiles
for up to three loads, the hardest target first (every candidate's time or failure printed), and
re-times. Every step prints its traceback instead of
ending the run, and steps that would start after `--budget-s` are skipped (said so).

    python benchmarks/triton_smoke.py [--budget-s 45] [--json $OUT/triton_smoke.json]

(`--device cpu --preset small` with TRITON_INTERPRET=1 runs the same steps in Triton's interpreter,
a dry run of this script, not of the GPU.)
"""
from __future__ import annotations

import argparse
import platform
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from _common import write_json
from _moe_reference import reference_output
from moecluster.workloads import forms
from moecluster.workloads.graphs import capture_graph
from moecluster.workloads.mlp import fused
from moecluster.workloads.mlp.experts import FUSED, GROUPED_MM
from moecluster.workloads.mlp.fused_tiles import TileCache
from moecluster.workloads.mlp.models import MoEMLP
from moecluster.spec.mlp.shapes import preset
from moecluster.workloads.timing import time_call_s

TOLERANCE = {torch.bfloat16: 2e-2, torch.float32: 1e-4}  # against float64; fp32 products exact (ieee)
T0 = time.perf_counter()
DEVICE = torch.device("cuda")


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


class Steps:
    """Runs named steps under a time budget; a failing step prints its traceback and the run goes on."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.log: list[dict[str, Any]] = []

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        elapsed = time.perf_counter() - T0
        if elapsed > self.budget_s:
            print(f"[skip] {name}: {elapsed:.0f} s elapsed, over the {self.budget_s:.0f} s budget", flush=True)
            self.log.append({"step": name, "status": "skipped (budget)"})
            return None
        start = time.perf_counter()
        print(f"[....] {name} (at {elapsed:.1f} s)", flush=True)
        try:
            result = fn()
            sync()
        except Exception as exc:  # noqa: BLE001 - a smoke test reports every failure and goes on
            print(f"[FAIL] {name}: {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc()
            self.log.append({"step": name, "status": f"failed: {type(exc).__name__}: {str(exc)[:300]}"})
            return None
        print(f"[ ok ] {name} ({time.perf_counter() - start:.1f} s)", flush=True)
        self.log.append({"step": name, "status": "ok", "s": time.perf_counter() - start,
                         **(result if isinstance(result, dict) else {})})
        return result


def environment() -> dict[str, Any]:
    dev = DEVICE
    env: dict[str, Any] = {
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "fused_unavailable": {str(d): fused.unavailable(dev, d) for d in (torch.bfloat16, torch.float32)},
        "tf32_matmul_allowed": torch.backends.cuda.matmul.allow_tf32}
    if dev.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(dev), capability=torch.cuda.get_device_capability(dev))
    try:
        kernels = fused.kernels()
        env["triton"] = kernels.version()
        env["tma"] = kernels.tma_supported() or "supported"
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        env["triton"] = f"import failed: {type(exc).__name__}: {exc}"
    return env


def timed(fn: Callable[[], object]) -> float:
    return time_call_s(fn, DEVICE)


def graph_time(fn: Callable[[], torch.Tensor], eager_out: torch.Tensor, keep: list[torch.Tensor],
               tolerance: float, eager_s: float) -> tuple[float, float]:
    """(seconds per replay, relative error of the replay against eager); captured like the forms capture,
    except where a call is so long that launch gaps are negligible (as the forms skip it): the eager time."""
    if eager_s >= forms.GRAPH_NEEDLESS_FROM_S or DEVICE.type != "cuda":
        return eager_s, 0.0
    graph = capture_graph(fn, keep)
    graph.replay()
    err = forms.rel_err(graph.output, eager_out)
    if not err <= tolerance:
        raise RuntimeError(f"graph replay differs from eager: relative error {err:.2e}")
    return timed(graph.replay), err


def compiled_info(model: MoEMLP, x: torch.Tensor) -> dict[str, Any]:
    """Registers, spills and shared memory of the hidden layer's kernel at the tiles in use."""
    kernels = fused.kernels()
    with torch.inference_mode():
        tiles = model.fused_tiles(x.shape[0] * model.shape.top_k, x)
        _, idx = model.route(x)
        sorted_ids, block_expert = kernels.align(idx.flatten(), model.shape.num_experts, tiles.block_m)
        w, b = model.weight[1], model.bias[1]
        a = torch.zeros(sorted_ids.numel(), w.shape[2], dtype=x.dtype, device=x.device)
        c = torch.empty(sorted_ids.numel(), w.shape[1], dtype=x.dtype, device=x.device)
        t = tiles.hidden
        compiled = kernels.layer(a, w, b, c, sorted_ids, block_expert, num_copies=idx.numel(), top_k=1,
                                 gather=False, scatter=False, relu=True, gate=None,
                                 precision=fused.precision_for(x.dtype, model.fused_precision), block_m=tiles.block_m,
                                 block_n=t.block_n, block_k=t.block_k, group_m=t.group_m, num_warps=t.num_warps,
                                 num_stages=t.num_stages, tma=t.tma)
    meta = getattr(compiled, "metadata", None)
    return {"tiles": tiles.label(), "n_regs": getattr(compiled, "n_regs", None),
            "n_spills": getattr(compiled, "n_spills", None), "shared_bytes": getattr(meta, "shared", None)}


def check_case(model: MoEMLP, x: torch.Tensor, dtype: torch.dtype, tf32: bool) -> dict[str, Any]:
    """The fused path at default tiles and the torch._grouped_mm path: error against float64, eager and graph
    (graph only where a call is short); with `tf32`, also the labelled TF32 options of fp32."""
    tolerance = TOLERANCE[dtype]
    flops = model.shape.flops_per_item() * x.shape[0]
    out: dict[str, Any] = {}
    with torch.inference_mode():
        model.kernel, model.tile_cache, model.fused_precision = FUSED, TileCache(), fused.DEFAULT_PRECISION
        start = time.perf_counter()
        y = model(x)
        sync()
        out["first_call_s (compile)"] = time.perf_counter() - start
        print(f"       tiles: {model.fused_tiles(x.shape[0] * model.shape.top_k, x).label()}")
        ref = reference_output(model, x)
        out["fused_err_vs_fp64"] = err = forms.rel_err(y, ref)
        print(f"       fused vs float64: relative error {err:.3e} (tolerance {tolerance:.0e})")
        if not err <= tolerance:
            raise RuntimeError(f"fused output wrong: relative error {err:.3e} against float64 > {tolerance:.0e}")
        e_s = timed(lambda: model(x))
        out["fused_eager_ms"] = e_s * 1e3
        g_s, _ = graph_time(lambda: model(x), y, [x], tolerance, e_s)
        out["fused_graph_ms"] = g_s * 1e3
        out["fused_graph_tflops"] = flops / g_s / 1e12
        why = model.grouped_mm_unavailable(x.device, x.dtype)
        if why is None:
            model.kernel = GROUPED_MM
            y_g = model(x)
            out["grouped_mm_err_vs_fp64"] = forms.rel_err(y_g, ref)
            ge_s = timed(lambda: model(x))
            out["grouped_mm_eager_ms"] = ge_s * 1e3
            gm_s, _ = graph_time(lambda: model(x), y_g, [x], max(tolerance, 1e-3), ge_s)
            out["grouped_mm_graph_ms"] = gm_s * 1e3
            out["grouped_mm_graph_tflops"] = flops / gm_s / 1e12
            out["fused_over_grouped_mm (graph)"] = gm_s / g_s
        else:
            out["grouped_mm"] = why
        if dtype == torch.float32 and tf32:
            model.kernel = FUSED
            for precision in ("tf32", "tf32x3"):
                model.fused_precision = precision
                y_p = model(x)
                out[f"{precision}_err_vs_fp64"] = forms.rel_err(y_p, ref)
                out[f"{precision}_err_vs_fp32_fused"] = forms.rel_err(y_p, y)
                out[f"{precision}_eager_ms"] = timed(lambda: model(x)) * 1e3
            model.fused_precision = fused.DEFAULT_PRECISION
    for key, value in out.items():
        print(f"       {key}: {value:.4g}" if isinstance(value, float) else f"       {key}: {value}")
    return out


def tune_case(model: MoEMLP, x: torch.Tensor, dtype: torch.dtype) -> dict[str, Any]:
    """Tune the tiles for this load (every candidate printed), then the tuned forward: error and graph time."""
    with torch.inference_mode():
        model.kernel, model.tile_cache = FUSED, TileCache()
        start = time.perf_counter()
        tiles = model.tune_fused(x)
        tune_s = time.perf_counter() - start
        for trial in model.fused_trials:
            print(f"       {trial.label()}")
        print(f"       chosen: {tiles.label()} in {tune_s:.1f} s")
        y = model(x)
        err = forms.rel_err(y, reference_output(model, x))
        if not err <= TOLERANCE[dtype]:
            raise RuntimeError(f"tuned fused output wrong: relative error {err:.3e}")
        g_s, _ = graph_time(lambda: model(x), y, [x], TOLERANCE[dtype], timed(lambda: model(x)))
    tflops = model.shape.flops_per_item() * x.shape[0] / g_s / 1e12
    print(f"       tuned: relative error {err:.3e}, graph {g_s * 1e3:.3f} ms, {tflops:.1f} TFLOP/s")
    return {"tune_s": tune_s, "tiles": tiles.label(), "err_vs_fp64": err, "graph_ms": g_s * 1e3, "tflops": tflops,
            "failures": [t.label() for t in model.fused_trials if t.failure]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="xxl")
    ap.add_argument("--batches", default="128,8192")
    ap.add_argument("--budget-s", type=float, default=45.0, help="no step starts after this many seconds")
    ap.add_argument("--json", default="", help="also write every step's results here")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    steps = Steps(args.budget_s)
    env = steps.run("environment", environment)
    print(env, flush=True)
    shape = preset(args.preset)
    models: dict[torch.dtype, MoEMLP] = {}

    def build(dtype: torch.dtype) -> dict[str, Any]:
        torch.manual_seed(0)
        with DEVICE:
            models[dtype] = MoEMLP(shape, "grouped").to(dtype).eval().requires_grad_(False)
        return {"gib": sum(p.numel() * p.element_size() for p in models[dtype].parameters()) / 2**30}

    batches = [int(b) for b in args.batches.split(",") if b]
    inputs: dict[tuple[torch.dtype, int], torch.Tensor] = {}
    for dtype in (torch.bfloat16, torch.float32):
        steps.run(f"build {args.preset} {dtype}", lambda dtype=dtype: build(dtype))
        if dtype not in models:
            continue
        for batch in batches:
            gen = torch.Generator(device=DEVICE).manual_seed(batch)
            x = torch.randn(batch, shape.input_dim, device=DEVICE, generator=gen).to(dtype)
            inputs[(dtype, batch)] = x
            steps.run(f"check {dtype} batch {batch} (default tiles)",
                      lambda m=models[dtype], x=x, d=dtype, t=batch == batches[0]: check_case(m, x, d, t))
        steps.run(f"compiled hidden-layer kernel {dtype} batch {batches[-1]}",
                  lambda m=models[dtype], x=inputs[(dtype, batches[-1])]: compiled_info(m, x))
    for dtype, batch in ((torch.bfloat16, batches[-1]), (torch.bfloat16, batches[0]), (torch.float32, batches[0])):
        if (dtype, batch) in inputs:
            steps.run(f"tune {dtype} batch {batch}",
                      lambda m=models[dtype], x=inputs[(dtype, batch)], d=dtype: tune_case(m, x, d))
    failed = [s["step"] for s in steps.log if s["status"].startswith("failed")]
    print(f"\n{len(steps.log)} steps, {len(failed)} failed{': ' + '; '.join(failed) if failed else ''};"
          f" {time.perf_counter() - T0:.0f} s in all")
    if args.json:
        write_json(args.json, {"environment": env, "steps": steps.log})


if __name__ == "__main__":
    main()
