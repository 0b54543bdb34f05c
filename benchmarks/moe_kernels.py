"""Every MoE kernel at `xxl` over batch sizes, beside two ceilings and the plain library call, in one run.

Ceilings, measured in this process: (1) HBM read — every expert weight that receives a token read
once per batch, at the bandwidth a large read-only reduction (or half a copy) reaches; (2) the rate
of a dense GEMM of aligned shapes (8192^3) in the row's dtype (fp32 without TF32). A row's
`hbm_frac` = ceiling time / measured time for (1), `gemm_frac` the same for (2).

Rows per dtype and batch: the seed's `sorted` (eager, the reference), then `grouped` as a task
prepares it — every grouped kernel through the forms machinery (`workloads.forms`: tiles
of the fused Triton kernel tuned first, then every kernel checked against the first and timed
eagerly and as a CUDA graph, median of CUDA-event runs): `grouped[grouped_mm]` is the plain
`torch._grouped_mm` call per layer, `grouped[fused_triton]` the fused kernel, `grouped` the
choice — and the dense twin matched by total parameters at its own fastest form. With fp32, the
fused kernel's labelled TF32 options with their error against fp32 and float64.

    python benchmarks/moe_kernels.py --out benchmarks/results/moe_kernels_h100.json

writes the JSON and a plot beside it (`.png`); about five minutes on one H100, tuning included.
`--plot JSON` redraws the plot of a JSON written before (no GPU needed).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from _common import environment, print_table, time_cuda, write_json
from _moe_reference import reference_output
from moecluster.workloads.forms import FormCache, FormOption, choose_form, output_tolerance, rel_err
from moecluster.workloads.graphs import capture_graph, graph_policy
from moecluster.workloads.mlp import fused
from moecluster.workloads.mlp.dense import ADDMM_IN_OUT, F_LINEAR
from moecluster.workloads.mlp.experts import FUSED
from moecluster.workloads.mlp.form_options import model_options
from moecluster.workloads.mlp.models import DenseMLP, MoEMLP
from moecluster.spec.mlp.shapes import match_dense, preset
from moecluster.workloads.timing import time_call_s

DEVICE = torch.device("cuda")
DENSE_FEW_LAYOUTS_FROM_S = 0.3  # a dense call this long tries only its two weight layouts (seconds each)
DENSE_ONE_LAYOUT_FROM_S = 1.5  # and this long only F.linear (cuBLAS either way; each try costs seconds)
TARGETS = {"bf16 b128 hbm_frac": 0.85, "bf16 b8192 tflops / dense": 0.85, "fp32 b128 inferences_per_s": 17_000}


def read_bandwidth(numel: int = 2**31) -> float:
    """Bytes/s of a read-only reduction over a large bf16 tensor (numel * 2 bytes read)."""
    x = torch.empty(numel, device=DEVICE, dtype=torch.bfloat16).uniform_()
    t = time_cuda(lambda x=x: x.sum(dtype=torch.float32), reps=10)
    del x
    return numel * 2 / t


def copy_bandwidth(numel: int = 2**30) -> float:
    src = torch.empty(numel, device=DEVICE, dtype=torch.bfloat16).uniform_()
    dst = torch.empty_like(src)
    t = time_cuda(lambda: dst.copy_(src), reps=10)
    return 2 * numel * 2 / t


def gemm_rate(dtype: torch.dtype, n: int = 8192, tf32: bool = False) -> float:
    a = torch.randn(n, n, device=DEVICE, dtype=dtype)
    b = torch.randn(n, n, device=DEVICE, dtype=dtype)
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        return 2 * n**3 / time_cuda(lambda: a @ b, reps=10)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


class Rows:
    """The table: one row per measured form, with its fractions of the ceilings."""

    def __init__(self, hbm_bytes_per_s: float) -> None:
        self.hbm = hbm_bytes_per_s
        self.rows: list[dict[str, Any]] = []

    def add(self, dtype: torch.dtype, batch: int, model: str, time_s: float | None, flops: float, nbytes: float,
            gemm_flops_per_s: float, note: str = "", **extra: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"dtype": str(dtype).removeprefix("torch."), "batch": batch, "model": model,
                               "note": note, **extra}
        if time_s is not None:
            row.update(ms=time_s * 1e3, inferences_per_s=batch / time_s, hbm_frac=nbytes / self.hbm / time_s,
                       gemm_frac=flops / gemm_flops_per_s / time_s, tflops=flops / time_s / 1e12)
        self.rows.append(row)
        print({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        return row


def moe_forms(moe: MoEMLP, x: torch.Tensor) -> tuple[Any, tuple[str, ...], float, float, str]:
    """`grouped` prepared as a task prepares it: (choice, skipped candidates, seconds to build the
    candidates, which is where the fused kernel's tiles are tuned, the choice's seconds and label)."""
    moe.impl, moe.kernel = "grouped", None
    tokens = tuple(moe.expert_tokens(x))
    start = time.perf_counter()
    candidates = model_options(moe, x, tokens, compiled=False)
    build_s = time.perf_counter() - start
    chosen = choose_form(candidates.options, lambda: moe(x), device=DEVICE, policy=graph_policy(DEVICE, None),
                         tolerance=output_tolerance(x.dtype), cache=FormCache(), key="moe", keepalive=(x,))
    choice = chosen.choice
    time_s, label = best_time(choice, chosen.step)
    del chosen
    return choice, candidates.skipped, build_s, time_s, label


def dense_forms(dense: DenseMLP, x: torch.Tensor, estimate_s: float) -> tuple[float, str]:
    """The dense twin at its fastest form (fewer layouts where a call takes long): (seconds, form)."""
    options: tuple[FormOption, ...] = model_options(dense, x, (), compiled=False).options
    if estimate_s >= DENSE_ONE_LAYOUT_FROM_S:
        options = tuple(o for o in options if o.name == F_LINEAR)
    elif estimate_s >= DENSE_FEW_LAYOUTS_FROM_S:
        options = tuple(o for o in options if o.name in (F_LINEAR, ADDMM_IN_OUT))
    chosen = choose_form(options, lambda: dense(x), device=DEVICE, policy=graph_policy(DEVICE, None),
                         tolerance=output_tolerance(x.dtype), cache=FormCache(), key="dense", keepalive=(x,))
    time_s, label = best_time(chosen.choice, chosen.step)
    del chosen
    dense.release_derived()
    return time_s, label


def best_time(choice: Any, step: Any) -> tuple[float, str]:
    """The chosen form's measured time (timed here where it was the only candidate) and its label."""
    label = f"{choice.option} {'graph' if choice.graph else 'eager'}"
    chosen = [t for t in choice.timings if t.option == choice.option and t.graph == choice.graph]
    if chosen and chosen[0].time_s is not None:
        return chosen[0].time_s, label
    return time_call_s(step, DEVICE), f"{label} (the only candidate tried)"


def tf32_rows(rows: Rows, moe: MoEMLP, x: torch.Tensor, flops: float, nbytes: float, tf32_gemm: float) -> None:
    """The fused kernel's labelled TF32 options: error against its fp32 (ieee) output and float64, time."""
    ref = reference_output(moe, x)
    moe.impl, moe.kernel, moe.fused_precision = "grouped", FUSED, fused.DEFAULT_PRECISION
    with torch.inference_mode():
        exact = moe(x)
        exact_err = rel_err(exact, ref)
        for precision in ("tf32", "tf32x3"):
            moe.fused_precision = precision
            start = time.perf_counter()
            tiles = moe.tune_fused(x)
            tune_s = time.perf_counter() - start
            out = moe(x)
            eager_s = time_call_s(lambda: moe(x), DEVICE)
            graph = capture_graph(lambda: moe(x), [x])
            graph_s = time_call_s(graph.replay, DEVICE)
            del graph
            rows.add(x.dtype, x.shape[0], f"moe/grouped[{FUSED}:{precision}]", min(eager_s, graph_s), flops, nbytes,
                     tf32_gemm, note=f"{fused.PRECISIONS[precision]}; gemm_frac against the TF32 GEMM",
                     precision=precision, err_vs_fp32_fused=rel_err(out, exact), err_vs_fp64=rel_err(out, ref),
                     fp32_fused_err_vs_fp64=exact_err, graph=graph_s < eager_s, tiles=tiles.label(), tune_s=tune_s)
    moe.fused_precision = fused.DEFAULT_PRECISION


def plotted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the plot draws: timed, and each kernel's best of eager and graph."""
    return [r for r in rows if "ms" in r and r.get("best", True)]


def model_colors(rows: list[dict[str, Any]]) -> dict[str, str]:
    """One colour per plotted line for every panel: the seed's `sorted`, `grouped` and dense as in the
    report's figures (`report.plots.color`), each other kernel one of the report's spare colours, by name."""
    from moecluster.report.plots import FALLBACK, color

    fixed = {"moe/sorted": color("sorted"), "moe/grouped": color("grouped"), "dense/total": color("dense")}
    others = sorted({r["model"] for r in plotted(rows)} - set(fixed))
    palette = [*FALLBACK, "#ff7f0e", "#000080", "#808000"]
    return {**fixed, **{m: palette[i % len(palette)] for i, m in enumerate(others)}}


def plot(rows: list[dict[str, Any]], path: Path, gpu: str = "") -> None:
    """Share of the roofline (the larger of the two fractions) per batch, one panel per dtype, each
    line the same colour in both panels; the title names the preset, the dtype and the GPU."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = model_colors(rows)
    dtypes = sorted({r["dtype"] for r in rows})
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6 * len(dtypes), 4.2), squeeze=False)
    for ax, dtype in zip(axes[0], dtypes):
        mine = [r for r in plotted(rows) if r["dtype"] == dtype]
        for model in dict.fromkeys(r["model"] for r in mine):
            pts = sorted((r["batch"], max(r["hbm_frac"], r["gemm_frac"])) for r in mine if r["model"] == model)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=model, color=colors[model])
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("batch (tokens)")
        ax.set_ylabel("share of the roofline (HBM read or dense GEMM)")
        ax.set_title(f"xxl MoE · {dtype} · batch {', '.join(f'{b:,}' for b in sorted({r['batch'] for r in mine}))}"
                     + (f" · {gpu}" if gpu else ""), fontsize=9)
        ax.grid(alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.tight_layout()
    fig.legend(list(handles.values()), list(handles), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4,
               fontsize=7, frameon=False)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    print(f"wrote {path}")


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's three figures from this run's rows, each with its target."""
    def get(dtype: str, batch: int, model: str) -> dict[str, Any]:
        return next((r for r in rows if (r["dtype"], r["batch"], r["model"]) == (dtype, batch, model)), {})
    out: dict[str, Any] = {}
    grouped, dense = get("bfloat16", 128, "moe/grouped"), get("bfloat16", 128, "dense/total")
    if "hbm_frac" in grouped:
        out["bf16 b128 hbm_frac"] = {"value": grouped["hbm_frac"], "target": TARGETS["bf16 b128 hbm_frac"],
                                     "kernel": grouped["note"], "dense_hbm_frac": dense.get("hbm_frac")}
    grouped, dense = get("bfloat16", 8192, "moe/grouped"), get("bfloat16", 8192, "dense/total")
    if "tflops" in grouped and "tflops" in dense:
        out["bf16 b8192 tflops / dense"] = {
            "value": grouped["tflops"] / dense["tflops"], "moe_tflops": grouped["tflops"],
            "dense_tflops": dense["tflops"], "kernel": grouped["note"], "target": TARGETS["bf16 b8192 tflops / dense"]}
    grouped = get("float32", 128, "moe/grouped")
    if "inferences_per_s" in grouped:
        out["fp32 b128 inferences_per_s"] = {"value": grouped["inferences_per_s"], "kernel": grouped["note"],
                                             "target": TARGETS["fp32 b128 inferences_per_s"]}
    for figure in out.values():
        figure["reached"] = figure["value"] >= figure["target"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="xxl")
    ap.add_argument("--batches", default="128,512,2048,8192,32768")
    ap.add_argument("--fp32-batches", default="128,2048,8192,32768")
    ap.add_argument("--tf32-batches", default="128", help="fp32 batches that also run the fused kernel's TF32 options")
    ap.add_argument("--out", default="benchmarks/results/moe_kernels.json")
    ap.add_argument("--plot", metavar="JSON", help="only draw the plot of a JSON this script wrote, beside it")
    args = ap.parse_args()
    if args.plot:
        doc = json.loads(Path(args.plot).read_text())
        plot(doc["rows"], Path(args.plot).with_suffix(".png"), doc.get("environment", {}).get("gpu", ""))
        return
    start = time.perf_counter()
    shape = preset(args.preset)
    torch.manual_seed(0)
    read_bw, copy_bw = read_bandwidth(), copy_bandwidth()
    ceilings = {"read_bytes_per_s": read_bw, "copy_bytes_per_s": copy_bw,
                "gemm_bf16_flops": gemm_rate(torch.bfloat16), "gemm_fp32_flops": gemm_rate(torch.float32),
                "gemm_tf32_flops": gemm_rate(torch.float32, tf32=True)}
    rows = Rows(max(read_bw, copy_bw / 2))
    print({k: f"{v:.3e}" for k, v in ceilings.items()}, flush=True)
    forms_log: dict[str, Any] = {}
    twin = match_dense(shape, "total")
    tf32_batches = {int(v) for v in args.tf32_batches.split(",") if v}
    for dtype, batches in ((torch.bfloat16, args.batches), (torch.float32, args.fp32_batches)):
        with DEVICE:
            moe = MoEMLP(shape).to(dtype).eval().requires_grad_(False)
            dense = DenseMLP(twin).to(dtype).eval().requires_grad_(False)
        gemm = ceilings["gemm_bf16_flops" if dtype == torch.bfloat16 else "gemm_fp32_flops"]
        for b in (int(v) for v in batches.split(",") if v):
            x = torch.randn(b, shape.input_dim, device=DEVICE, dtype=dtype)
            hit = sum(1 for t in moe.expert_tokens(x) if t)
            nbytes = shape.bytes_per_batch(b, x.element_size(), experts_hit=hit)
            flops = shape.flops_per_item() * b
            with torch.inference_mode():
                moe.impl = "sorted"
                rows.add(dtype, b, "moe/sorted", time_call_s(lambda moe=moe, x=x: moe(x), DEVICE), flops, nbytes, gemm,
                         note="the seed's code, eager")
            choice, skipped, build_s, time_s, label = moe_forms(moe, x)
            for timing in choice.timings:
                mode = "graph" if timing.graph else "eager"
                extra: dict[str, Any] = {"mode": mode, "best": False}
                if timing.option == FUSED:
                    extra.update(tiles=dict(choice.form).get("tiles") if choice.option == FUSED
                                 else moe.fused_tiles(b * shape.top_k, x).label(), tune_and_options_s=build_s)
                rows.add(dtype, b, f"moe/grouped[{timing.option}] {mode}", timing.time_s, flops, nbytes, gemm,
                         note=timing.failure or "", **extra)
            rows.add(dtype, b, "moe/grouped", time_s, flops, nbytes, gemm, note=label,
                     candidates=dict(choice.form)["candidates"])
            for kernel in dict.fromkeys(t.option for t in choice.timings):  # best of eager/graph per kernel, plotted
                ok = [t for t in choice.timings if t.option == kernel and t.time_s is not None]
                if ok:
                    best = min(ok, key=lambda t: t.time_s)
                    rows.add(dtype, b, f"moe/grouped[{kernel}]", best.time_s, flops, nbytes, gemm,
                             note="graph" if best.graph else "eager")
            forms_log[f"{dtype} {b}"] = {"chosen": label, "skipped": list(skipped), "fused_trials":
                                         [t.label() for t in moe.fused_trials], "tune_and_options_s": build_s}
            dense_estimate_s = twin.flops_per_item() * b / gemm
            with torch.inference_mode():
                time_s, label = dense_forms(dense, x, dense_estimate_s)
            rows.add(dtype, b, "dense/total", time_s, twin.flops_per_item() * b,
                     twin.bytes_per_batch(b, x.element_size()), gemm, note=label)
            if dtype == torch.float32 and b in tf32_batches:
                tf32_rows(rows, moe, x, flops, nbytes, ceilings["gemm_tf32_flops"])
            del x
            torch.cuda.empty_cache()
        del moe, dense
        torch.cuda.empty_cache()
    shown = [r for r in rows.rows if r.get("best", True)]
    print_table(shown, ["dtype", "batch", "model", "ms", "inferences_per_s", "hbm_frac", "gemm_frac", "tflops", "note"])
    summary = targets(rows.rows)
    for name, figure in summary.items():
        verdict = "reached" if figure["reached"] else "NOT reached"
        print(f"{name}: {figure['value']:.4g} (target {figure['target']:g}) {verdict}")
    out = Path(args.out)
    write_json(out, {"environment": {**environment(), "triton": fused.kernels().version()}, "preset": args.preset,
                     "ceilings": ceilings, "hbm_ceiling_bytes_per_s": rows.hbm, "rows": rows.rows, "forms": forms_log,
                     "targets": summary, "wall_s": time.perf_counter() - start})
    plot(rows.rows, out.with_suffix(".png"), environment().get("gpu", ""))


if __name__ == "__main__":
    main()
