"""Each MoE implementation at `xxl` over batch sizes, against two ceilings measured in the same run.

Ceilings: (1) HBM read — every expert weight that receives a token read once per batch, at the
bandwidth a large read-only reduction reaches; (2) the rate of a dense bf16 GEMM of aligned
shapes (8192^3). A row's `hbm_frac` = ceiling time / measured time for (1), `gemm_frac` the
same for (2); the larger of the two says how close the implementation is to its roofline.

    python benchmarks/moe_kernels.py --out benchmarks/results/moe_kernels_h100.json
"""
from __future__ import annotations

import argparse

import torch

from _common import environment, print_table, time_cuda, write_json
from moecluster.agents.workloads.mlp.models import DenseMLP, MoEMLP
from moecluster.agents.workloads.mlp.shapes import match_dense, preset


def read_bandwidth(numel: int = 2**31) -> float:
    """Bytes/s of a read-only reduction over a large bf16 tensor (numel * 2 bytes read)."""
    x = torch.empty(numel, device="cuda", dtype=torch.bfloat16).uniform_()
    t = time_cuda(lambda x=x: x.sum(dtype=torch.float32), reps=10)
    del x
    return numel * 2 / t


def copy_bandwidth(numel: int = 2**30) -> float:
    src = torch.empty(numel, device="cuda", dtype=torch.bfloat16).uniform_()
    dst = torch.empty_like(src)
    t = time_cuda(lambda: dst.copy_(src), reps=10)
    return 2 * numel * 2 / t


def gemm_rate(dtype: torch.dtype, n: int = 8192) -> float:
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    return 2 * n**3 / time_cuda(lambda: a @ b, reps=10)


def first_kernel(moe: MoEMLP, x: torch.Tensor) -> str:
    """The grouped kernel that runs before any is measured: the fallback order's first runnable one."""
    order = moe.kernel_order(x.shape[0] * moe.shape.top_k, x.device, x.dtype)
    return next(k for k, why_not in order if why_not is None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="xxl")
    ap.add_argument("--batches", default="128,2048,8192,32768")
    ap.add_argument("--fp32-batches", default="128,2048")
    ap.add_argument("--out", default="benchmarks/results/moe_kernels.json")
    args = ap.parse_args()
    shape = preset(args.preset)
    torch.manual_seed(0)
    read_bw = read_bandwidth()
    copy_bw = copy_bandwidth()
    ceilings = {"read_bytes_per_s": read_bw, "copy_bytes_per_s": copy_bw,
                "gemm_bf16_flops": gemm_rate(torch.bfloat16), "gemm_fp32_flops": gemm_rate(torch.float32)}
    hbm = max(read_bw, copy_bw / 2)
    print({k: f"{v:.3e}" for k, v in ceilings.items()})
    rows = []
    for dtype, batches in ((torch.bfloat16, args.batches), (torch.float32, args.fp32_batches)):
        with torch.device("cuda"):
            moe = MoEMLP(shape).to(dtype).eval().requires_grad_(False)
            dense = DenseMLP(match_dense(shape, "total")).to(dtype).eval().requires_grad_(False)
        gemm = ceilings["gemm_bf16_flops" if dtype == torch.bfloat16 else "gemm_fp32_flops"]
        for b in (int(v) for v in batches.split(",") if v):
            x = torch.randn(b, shape.input_dim, device="cuda", dtype=dtype)
            hit = sum(1 for t in moe.expert_tokens(x) if t)
            weight_bytes = shape.bytes_per_batch(b, x.element_size(), experts_hit=hit)
            variants = {f"moe/{impl}": impl for impl in ("naive", "sorted", "grouped", "grouped[padded_bmm]")}
            variants["dense/total"] = None
            for name, impl in variants.items():
                with torch.inference_mode():
                    if impl is None:
                        twin = match_dense(shape)
                        fn, flops, nbytes = (lambda dense=dense, x=x: dense(x)), twin.flops_per_item() * b, \
                            match_dense(shape).bytes_per_batch(b, x.element_size())
                    else:
                        moe.impl = impl.split("[")[0]
                        # force one kernel of the grouped implementation, else its fallback order's first
                        moe.kernel = "padded_bmm" if "[" in impl else None
                        fn, flops, nbytes = (lambda moe=moe, x=x: moe(x)), shape.flops_per_item() * b, weight_bytes
                    t = time_cuda(fn, reps=5 if impl == "naive" else 10)
                    rows.append({"dtype": str(dtype).removeprefix("torch."), "batch": b, "model": name,
                                 "ms": t * 1e3, "inferences_per_s": b / t,
                                 "hbm_frac": nbytes / hbm / t, "gemm_frac": flops / gemm / t,
                                 "tflops": flops / t / 1e12,
                                 "note": (moe.grouped_fallback_reason or first_kernel(moe, x))
                                 if impl == "grouped" else ""})
                    if impl == "grouped" and not moe.grouped_fallback_reason:
                        row = {"dtype": str(dtype).removeprefix("torch."), "batch": b, "model": "moe/grouped+graph"}
                        try:
                            graph = torch.cuda.CUDAGraph()
                            s = torch.cuda.Stream()
                            s.wait_stream(torch.cuda.current_stream())
                            with torch.cuda.stream(s):
                                fn()
                            torch.cuda.current_stream().wait_stream(s)
                            with torch.cuda.graph(graph):
                                fn()
                            t = time_cuda(graph.replay, reps=10)
                            row.update({"ms": t * 1e3, "inferences_per_s": b / t, "hbm_frac": nbytes / hbm / t,
                                        "gemm_frac": flops / gemm / t, "tflops": flops / t / 1e12, "note": ""})
                            del graph
                        except RuntimeError as exc:
                            row["note"] = f"capture failed: {str(exc).splitlines()[0][:60]}"
                        rows.append(row)
                    print(rows[-1], flush=True)
        del moe, dense
        torch.cuda.empty_cache()
    print_table(rows, ["dtype", "batch", "model", "ms", "inferences_per_s", "hbm_frac", "gemm_frac", "tflops", "note"])
    write_json(args.out, {"environment": environment(), "preset": args.preset, "ceilings": ceilings,
                          "hbm_ceiling_bytes_per_s": hbm, "rows": rows})


if __name__ == "__main__":
    main()
