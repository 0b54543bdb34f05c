"""LLM pairs as series over the batch: tokens/J of an MoE beside its dense twins, per phase, with the
analytic estimate and the GPU's critical batch size. Computes; never measures.

A series holds the LLM pairs that differ only in how many tokens one forward processes: the batch
size for decode (one token per sequence per step), batch × prompt length for prefill (so a prefill
sweep over prompt lengths is a series too). Its points are the MoE's tokens/J beside each twin's
(total- and active-matched) and their ratios with the pairs' intervals (`pairs`).

Beside each point, seed 004's analytic view (`head.estimate`): tokens/J at the roofline of
the GPU's datasheet (FLOPs = 2 × active parameters per token, bytes = the weights a forward reads
once, the experts hit under uniform routing, over its tokens; energy at the board's TDP), and the
MoE/dense ratio it predicts. The estimator leaves attention and the KV cache out (short context),
which the measured roofline (`TaskResult.roofline`) counts.

The critical batch size is where a dense matmul turns compute-bound: peak FLOP/s ÷ memory bandwidth
× bytes per parameter / 2 (≈ 295 tokens on an H100 in bf16, seed 004's "around 300"); an MoE expert
sees only k/E of the tokens, so the MoE reaches it at E/k times that. From the datasheet where the
GPU is known, else from the peaks the runner measured on the device.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from moecluster.spec.records import TaskSpec
from moecluster.spec.llm.shapes import LlmShape
from moecluster.head.estimate import GpuSpec, estimate, from_llm, lookup
from moecluster.head.estimate.formulas import DTYPE_BYTES, critical_batch
from moecluster.workloads.registry import workload

from moecluster.report.aggregate.breakeven import sort_fields
from moecluster.report.aggregate.pairs import PairRatio
from moecluster.report.aggregate.tasks import TaskStats, custom_name


@dataclass(frozen=True)
class LlmSeriesKey:
    """Everything fixed along one series: all but the batch size (and, for prefill, the prompt length)."""

    model: str
    impl: str
    phase: str
    dtype: str
    path: str
    prompt_len: int  # decode only (0 for prefill, whose prompt length is along the series)
    gen_tokens: int
    device: str
    cuda_graphs: bool | None
    seed: int
    gpu: str
    expert_parallel: int = 1  # issue 25: the MoE's experts over this many GPUs (its twins data parallel on as many)

    def label(self) -> str:
        """"mixtral-8x7b-8l grouped · decode p512 g128 · bfloat16 · fast", plus the GPU."""
        phase = f"decode p{self.prompt_len} g{self.gen_tokens}" if self.phase == "decode" else "prefill"
        parts = [f"{self.model} {self.impl}", phase, self.dtype, self.path]
        if self.cuda_graphs is not None:
            parts.append("CUDA graphs required" if self.cuda_graphs else "eager")
        if self.expert_parallel > 1:  # issue 25
            parts.append(f"EP{self.expert_parallel}")
        parts.append(self.gpu or self.device)
        return " · ".join(parts)

    def sort_key(self) -> tuple[tuple[int, float, str], ...]:
        """The fields in order, numbers compared as numbers (p512 before p2048)."""
        return sort_fields(self)


@dataclass(frozen=True)
class LlmEstimate:
    """Seed 004's analytic view of one point on one GPU: tokens/J at the roofline and TDP per task kind
    (`moe`, `dense/total`, `dense/active`) and the MoE/dense ratios it predicts, by match."""

    gpu: str
    tokens_per_j: dict[str, float]
    ratio: dict[str, float]
    bound: dict[str, str]


@dataclass(frozen=True)
class LlmPoint:
    batch_size: int
    prompt_len: int
    tokens_per_forward: int
    moe: TaskStats
    twins: dict[str, TaskStats]  # by match
    ratios: dict[str, PairRatio]  # by match
    estimate: LlmEstimate | None
    estimate_note: str | None  # why there is no estimate


@dataclass(frozen=True)
class Critical:
    """The critical batch size (tokens per forward) of the series' GPU and dtype, and the MoE's."""

    dense_tokens: float
    moe_tokens: float
    source: str


@dataclass(frozen=True)
class LlmSeries:
    key: LlmSeriesKey
    points: tuple[LlmPoint, ...]
    critical: Critical | None
    notes: tuple[str, ...] = field(default_factory=tuple)


def shape_of(spec: TaskSpec) -> LlmShape:
    return LlmShape.from_model(spec.architecture or "", spec.model)


def tokens_per_forward(spec: TaskSpec) -> int:
    """Tokens one forward processes: every prompt token in prefill, one per sequence in decode."""
    return spec.batch_size * (spec.prompt_len if spec.phase == "prefill" else 1)


def tokens_per_response(spec: TaskSpec) -> int:
    """Tokens of one response: the generated ones in decode, the prompt in prefill."""
    return spec.gen_tokens if spec.phase == "decode" else spec.prompt_len


def model_label(spec: TaskSpec) -> str:
    """The preset, else the name the sweep gave the model, else its shape in brief."""
    return spec.preset or custom_name(spec) or shape_of(spec).describe()


def series_key(p: PairRatio) -> LlmSeriesKey:
    s = p.moe.spec
    decode = s.phase == "decode"
    return LlmSeriesKey(model=model_label(s), impl=s.impl, phase=s.phase or "", dtype=s.dtype, path=s.path or "",
                        prompt_len=s.prompt_len if decode else 0, gen_tokens=s.gen_tokens if decode else 0,
                        device=s.device, cuda_graphs=s.cuda_graphs, seed=s.seed,
                        gpu=", ".join(sorted({g.name for g in p.moe.result.gpus})),
                        expert_parallel=s.expert_parallel)  # issue 25


def _gpu_spec(key: LlmSeriesKey) -> GpuSpec | None:
    """The datasheet of the series' GPU; None for an unknown GPU, a CPU, or a mix of GPU models."""
    specs = [lookup(n.strip()) for n in key.gpu.split(",") if n.strip()]
    if not specs or any(s is None for s in specs) or len({s.key for s in specs if s is not None}) != 1:
        return None
    return specs[0]


def _estimate(moe: TaskStats, twins: dict[str, TaskStats], gpu: GpuSpec) -> LlmEstimate | None:
    spec = moe.spec
    if spec.dtype not in gpu.flops_per_s:
        return None
    tokens = tokens_per_forward(spec)
    per: dict[str, float] = {}
    bound: dict[str, str] = {}
    for name, stats in [("moe", moe), *((f"dense/{m}", t) for m, t in twins.items())]:
        e = estimate(from_llm(shape_of(stats.spec), name), gpu, spec.dtype, tokens)
        per[name] = 1.0 / e.roofline_j_per_token
        bound[name] = e.roofline_bound
    ratio = {m: per["moe"] / per[f"dense/{m}"] for m in twins}
    return LlmEstimate(gpu=gpu.key, tokens_per_j=per, ratio=ratio, bound=bound)


def _critical(key: LlmSeriesKey, points: Sequence[LlmPoint]) -> Critical | None:
    shape = shape_of(points[0].moe.spec)
    factor = shape.num_experts / shape.top_k
    gpu = _gpu_spec(key)
    if gpu is not None and key.dtype in gpu.flops_per_s:
        b = critical_batch(gpu, key.dtype)
        return Critical(b, b * factor, f"{gpu.label} datasheet: peak FLOP/s ÷ bandwidth × {DTYPE_BYTES[key.dtype]}"
                                       " bytes / 2")
    rl = points[0].moe.result.roofline
    if rl is None or rl.peak_bytes_per_s <= 0:
        return None
    b = rl.peak_flops / rl.peak_bytes_per_s * DTYPE_BYTES.get(key.dtype, 4) / 2
    return Critical(b, b * factor, "peaks measured on the device (no datasheet for it)")


def llm_series(pairs: Sequence[PairRatio]) -> list[LlmSeries]:
    """Every LLM series of a run's pairs, its points by tokens per forward."""
    groups: dict[LlmSeriesKey, dict[str, list[PairRatio]]] = defaultdict(lambda: defaultdict(list))
    for p in pairs:
        if not workload(p.moe.spec.workload).series_over_batch:
            continue
        groups[series_key(p)][p.moe.task_id].append(p)
    out: list[LlmSeries] = []
    for key in sorted(groups, key=LlmSeriesKey.sort_key):
        gpu = _gpu_spec(key)
        points = []
        for ratios in groups[key].values():
            moe = ratios[0].moe
            twins = {str(r.match): r.dense for r in ratios}
            est, note = None, None
            if gpu is None:
                note = f"no datasheet for {key.gpu or key.device}"
            else:
                est = _estimate(moe, twins, gpu)
                note = None if est is not None else f"{gpu.label} has no datasheet peak for {key.dtype}"
            points.append(LlmPoint(batch_size=moe.spec.batch_size, prompt_len=moe.spec.prompt_len,
                                   tokens_per_forward=tokens_per_forward(moe.spec), moe=moe, twins=twins,
                                   ratios={str(r.match): r for r in ratios}, estimate=est, estimate_note=note))
        points.sort(key=lambda pt: (pt.tokens_per_forward, pt.batch_size))
        out.append(LlmSeries(key=key, points=tuple(points), critical=_critical(key, points)))
    return out
