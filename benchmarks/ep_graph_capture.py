"""The `ep-static` expert-parallel MoE step captured whole in one CUDA graph, on one GPU.

A gang of one (NCCL on a GPU with `NCCL_NVLS_ENABLE=0`, gloo on the CPU) runs an xxl-like MoE
(32 experts, 6 layers of 4,096, top 8) in bf16: the `ep-static` step (route, dispatch, experts,
combine: no host sync) is captured in one `torch.cuda.CUDAGraph` and replayed; its output is
checked against the eager `ep-static` step and the eager `ep-hostsync` step; then ms per step of
`ep-hostsync` eager, `ep-static` eager and `ep-static` graph (median of CUDA-event timings, several
repeats). With one rank the all-to-alls are local copies: this proves the capture and measures
the host-sync cost, not the link.

    NCCL_NVLS_ENABLE=0 python benchmarks/ep_graph_capture.py --out benchmarks/results/ep_graph_capture.json
    python benchmarks/ep_graph_capture.py --device cpu --quick --out /tmp/ep.json   # no graph: a smoke run
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from _common import environment, time_call, write_json
from moecluster.workloads.mlp.expert_parallel import HOSTSYNC, STATIC, ExpertParallelMoE
from moecluster.measure.parallel.group import GangContext, free_port, process_group
from moecluster.workloads.graphs import capture_graph
from moecluster.workloads.mlp.models import MoEMLP
from moecluster.spec.mlp.shapes import MoEShape

XXL = MoEShape(num_experts=32, expert_hidden_dim=4096, expert_num_layers=6, top_k=8)
QUICK = MoEShape(num_experts=4, expert_hidden_dim=16, expert_num_layers=2, top_k=2, input_dim=12, output_dim=5)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build both forms in a gang of one, capture the static step, check and time (see the module)."""
    device = torch.device(args.device)
    dtype = torch.float32 if args.quick else torch.bfloat16
    shape = QUICK if args.quick else XXL
    ctx = GangContext(rank=0, world_size=1, master_addr="127.0.0.1", master_port=free_port(),
                      backend="nccl" if device.type == "cuda" else "gloo", device=args.device)
    out: dict[str, Any] = {"environment": environment(), "shape": dataclasses.asdict(shape), "dtype": str(dtype),
                           "batch": args.batch, "device": str(device), "backend": ctx.resolved_backend(device),
                           "NCCL_NVLS_ENABLE": os.environ.get("NCCL_NVLS_ENABLE")}
    with process_group(ctx), torch.inference_mode():
        torch.manual_seed(0)
        with torch.device(device):
            full = MoEMLP(shape, "grouped").eval()
            x = torch.randn(args.batch, shape.input_dim)
        full.to(dtype).requires_grad_(False)
        x = x.to(dtype)
        forms = {name: ExpertParallelMoE(full, 0, 1, dispatch=name) for name in (HOSTSYNC, STATIC)}
        del full
        static = forms[STATIC]
        eager = {name: ep(x) for name, ep in forms.items()}
        out["static_vs_hostsync_rel_err"] = rel_err(eager[STATIC], eager[HOSTSYNC])
        out["experts"] = {name: ep.experts_form for name, ep in forms.items()}
        steps: dict[str, Callable[[], object]] = {f"{name} eager": (lambda ep=ep: ep(x)) for name, ep in forms.items()}
        if device.type == "cuda" and not args.no_graph:
            graph = capture_graph(lambda: static(x), keepalive=(x, *static.experts.derived_tensors()))
            graph.replay()
            torch.cuda.synchronize()
            out["graph_vs_static_eager_rel_err"] = rel_err(graph.output, static(x))
            out["graph_vs_hostsync_rel_err"] = rel_err(graph.output, eager[HOSTSYNC])
            steps[f"{STATIC} graph"] = graph.replay
        else:
            out["graph"] = "not captured (CPU, or --no-graph)"
        out["ms_per_step"] = {name: [1e3 * time_call(fn, device, args.warmup, args.reps)
                                     for _ in range(args.repeats)] for name, fn in steps.items()}
        out["dropped_copies"] = int(static.dropped_copies)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    errs = [v for k, v in out.items() if k.endswith("rel_err")]
    out["ok"] = all(e <= tol for e in errs) and out["dropped_copies"] == 0
    out["tolerance"] = tol
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--batch", type=int, default=None, help="global batch (default 2048, --quick 8)")
    p.add_argument("--quick", action="store_true", help="a tiny fp32 MoE instead of xxl in bf16")
    p.add_argument("--no-graph", action="store_true", help="skip the capture")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=20, help="timed calls per repeat")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if args.batch is None:
        args.batch = 8 if args.quick else 2048
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: torch {torch.__version__} sees no GPU")
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    result = run(args)
    write_json(args.out, result)
    print({k: result[k] for k in ("ok", "ms_per_step") if k in result})
    raise SystemExit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
