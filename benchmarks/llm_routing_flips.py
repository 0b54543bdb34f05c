"""Why an MoE's first decode step can differ from transformers' reference by far more than rounding.

The scaled Mixtral preset at batch 1 (prompt 256), in bf16 with moecluster's grouped_mm experts: the
first decode step of transformers' `generate` against moecluster's static-cache engine, free and with
the routing pinned to the reference's (`moecluster/workloads/llm/routing.py`), and per layer the router's
input error against the reference's, and the top-k indices and weights each run chose.

    . benchmarks/device_env.sh && python3 benchmarks/llm_routing_flips.py > $OUT/routing_flips.txt

Committed output: `benchmarks/results/llm_h100/routing_flips.txt`.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from moecluster.workloads.forms import rel_err
from moecluster.workloads.llm.build import build_model
from moecluster.workloads.llm.engine import StaticEngine
from moecluster.workloads.llm.experts import GROUPED_MM, use_experts
from moecluster.workloads.llm.forms import DecodeRun, Outputs
from moecluster.spec.llm.presets import preset
from moecluster.workloads.llm.reference import ReferenceDecode, dynamic_cache
from moecluster.workloads.llm.routing import pin_routing, record_routing, routers

PROMPT, GEN, BATCH = 256, 64, 1
Seen = tuple[Tensor, Tensor, Tensor]  # a router call's input, its own top-k weights and indices


def first_step(model: nn.Module, layers: int, run: Any) -> tuple[Outputs, list[Seen]]:
    """`run()`'s outputs, and what each router saw and chose itself in the first `layers` calls."""
    seen: list[Seen] = []

    def grab(_module: nn.Module, inputs: Any, output: Any) -> None:
        if len(seen) < layers:
            seen.append((inputs[0].float().clone(), output[-2].clone(), output[-1].clone()))

    handles = [r.register_forward_hook(grab) for r in routers(model)]  # before any pin: the router's own choice
    try:
        return run(), seen
    finally:
        for h in handles:
            h.remove()


def main() -> None:
    shape = preset("mixtral-8x7b-8l").shape
    dev, dt = torch.device("cuda"), torch.bfloat16
    model = build_model(shape, dev, dt, 0, PROMPT + GEN)
    prompt = torch.randint(0, shape.vocab_size, (BATCH, PROMPT), generator=torch.Generator().manual_seed(0)).to(dev)
    layers = shape.num_layers
    with torch.inference_mode():
        engine = StaticEngine(model, BATCH, PROMPT - 1 + GEN, GEN, dev, dt)
        engine.start_from(prompt)
        cache = dynamic_cache(model, [k[:, :, :PROMPT - 1] for k in engine.keys],
                              [v[:, :, :PROMPT - 1] for v in engine.values])
        ref = ReferenceDecode(model, prompt, GEN, cache)
        use_experts(model, GROUPED_MM)
        with record_routing(model) as recorded:
            reference, ref_seen = first_step(model, layers, lambda: ref.outputs(8))
        run = DecodeRun(engine, GEN)
        with pin_routing(model, recorded, replace=False) as flips:
            free, free_seen = first_step(model, layers, run.outputs)

        def pinned_run() -> Outputs:
            with pin_routing(model, recorded) as _:
                return run.outputs()
        pinned, pinned_seen = first_step(model, layers, pinned_run)
    print(f"first-step logits vs transformers generate: free {rel_err(free.logits, reference.logits):.3e},"
          f" pinned {rel_err(pinned.logits, reference.logits):.3e}; free run: {flips.describe()}")
    for i, (r, f, p) in enumerate(zip(ref_seen, free_seen, pinned_seen)):
        print(f"layer {i}: router input error free {rel_err(f[0], r[0]):.3e}, pinned run {rel_err(p[0], r[0]):.3e};"
              f" top-k reference {r[2].tolist()} {[round(w, 4) for w in r[1].flatten().tolist()]},"
              f" free {f[2].tolist()} {[round(w, 4) for w in f[1].flatten().tolist()]},"
              f" pinned run's own {p[2].tolist()}")


if __name__ == "__main__":
    main()
