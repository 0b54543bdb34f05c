"""Break-even: the model size where MoE inferences/J overtakes its dense twin's (seed 001).

A series is every pair that differs only in model size and seed: the key (`SeriesKey`) holds
every other axis of a sweep (implementation, dtype, batch size, expert-parallel degree, dense
matching mode, load and its Zipf exponent, training epochs, compile, CUDA graphs, workload,
device and the GPU model). Its points are x = log10 of the MoE's total parameters and y = the
MoE/dense ratio of inferences/J; the break-even is the first upward crossing of 1 (`crossing`).

Pairs at one size that differ only in seed or replicate (another process: `replicates: N`, or runs
pooled by `report`) are replicates. A size's ratio pools them: one keeps its window interval (Welch
t on the log ratio); several give their geometric mean with a t-interval over the per-process log
ratios ("t over seeds and replicates", df = processes − 1), which widens when they disagree.

The break-even's interval is a bootstrap that draws each size's ratio from that size's own interval
(`bootstrap`: t over the replicates where several processes measured it, else over the windows):
it is an interval of the break-even itself, open at an end where resamples leave the swept range,
and "undetermined" where it spans that range or too many resamples have no crossing. Where a size
has a single replicate measured over a single window there is no interval to draw from, and none.

A break-even interpolated between two measured sizes more than `MAX_GAP` times apart rests on
nothing measured in between (the seed study's presets are 6–24× apart): `gap_note` says so, in the
verdict too, and `sweep.refine` plans the sizes that fill the gap (`moecluster refine RUN`).
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from moecluster.report.aggregate.bootstrap import CrossingInterval, SizeRatio, crossing_interval
from moecluster.report.aggregate.crossing import CROSSING, all_crossings, first_upward
from moecluster.report.aggregate.pairs import PairRatio
from moecluster.report.aggregate.stats import Estimate, replicate_ci

Metric = Literal["inferences_per_j", "inferences_per_j_above_idle"]
WINDOWS_METHOD = "Welch t on the log ratio over windows"
SEEDS_METHOD = "t over seeds and replicates (per-process log ratios)"
MAX_GAP = 2.0  # a crossing between measured sizes further apart than this factor is flagged for refinement


def sort_fields(key: Any) -> tuple[tuple[int, float, str], ...]:
    """A dataclass's fields as a sort key: numbers as numbers, before text; None first."""
    out = []
    for f in fields(key):
        v = getattr(key, f.name)
        if v is None:
            out.append((0, 0.0, ""))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append((1, float(v), ""))
        else:
            out.append((2, 0.0, str(v)))
    return tuple(out)


@dataclass(frozen=True)
class SeriesKey:
    """What stays fixed along one size sweep: every axis but the model size and the seed."""

    impl: str
    dtype: str
    expert_parallel: int
    batch_size: int
    match: str
    workload: str = "mlp"
    device: str = "cuda"
    load: str = "router"
    zipf_s: float | None = None  # only for load zipf
    train_epochs: int = 0
    compile: bool = False
    cuda_graphs: bool | None = None
    gpu: str = ""  # the GPU model(s) of the MoE task, "" on CPU
    # workload llm: what an LLM pair measured (a size series never mixes phases or lengths)
    phase: str | None = None
    prompt_len: int = 0
    gen_tokens: int = 0
    path: str | None = None

    def sort_key(self) -> tuple[tuple[int, float, str], ...]:
        """The fields in order, numbers compared as numbers (batch 4 before batch 16)."""
        return sort_fields(self)

    def label(self) -> str:
        """"sorted float32 EP1 b128 vs dense/total", plus every other field off its default."""
        extra = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)[5:]
                 if getattr(self, f.name) != f.default and f.name != "gpu"]
        base = f"{self.impl} {self.dtype} EP{self.expert_parallel} b{self.batch_size} vs dense/{self.match}"
        return " ".join([base, *extra, *([f"on {self.gpu}"] if self.gpu else [])])


@dataclass(frozen=True)
class SweepPoint:
    """One size of a series: its replicates' ratios pooled, and how."""

    total_params: int
    ratio: Estimate
    pair_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    method: str
    name: str = ""  # the MoE model's name (preset or the sweep's name for it)
    shape: tuple[tuple[str, int], ...] = ()  # the MoE's shape fields (`TaskSpec.model`), to plan sizes between


@dataclass(frozen=True)
class Crossing:
    total_params: float
    direction: Literal["up", "down"]


@dataclass(frozen=True)
class BreakEven:
    """One series: its points, the break-even (first upward crossing) and its bootstrap interval."""

    key: SeriesKey
    metric: str
    points: tuple[SweepPoint, ...]
    params: float | None
    interval: CrossingInterval | None  # None without a break-even, or without an interval (`ci_note`)
    ci_note: str
    crossings: tuple[Crossing, ...]
    outcome: str  # "MoE overtakes dense", or why there is no break-even
    verdict: str  # the outcome with the break-even, its interval or the sizes swept

    @property
    def params_lo(self) -> float | None:
        """Lower end of the interval (None: open, undetermined or absent)."""
        return self.interval.lo if self.interval and not self.interval.undetermined else None

    @property
    def params_hi(self) -> float | None:
        """Upper end of the interval (None: open, undetermined or absent)."""
        return self.interval.hi if self.interval and not self.interval.undetermined else None

    @property
    def interval_text(self) -> str:
        """The interval as text: "106M – 118M", "≤ 2.69M – 118M", "undetermined: ...", "no CI: ..."."""
        if self.params is None:
            return ""
        return _ci_text(self.points, self.interval, self.ci_note)

    @property
    def bracket(self) -> tuple[SweepPoint, SweepPoint] | None:
        """The two measured sizes the break-even is interpolated between; None without a break-even."""
        if self.params is None:
            return None
        return next(((a, b) for a, b in zip(self.points, self.points[1:])
                     if a.total_params <= self.params <= b.total_params), None)

    @property
    def gap_factor(self) -> float | None:
        """How many times larger the upper bracketing size is than the lower; None without a break-even."""
        pair = self.bracket
        return pair[1].total_params / pair[0].total_params if pair else None

    @property
    def gap_note(self) -> str:
        """Why the break-even wants measured sizes near it ("" when its bracketing sizes are at most
        `MAX_GAP` times apart)."""
        pair, factor = self.bracket, self.gap_factor
        if pair is None or factor is None or factor <= MAX_GAP:
            return ""
        lo, hi = fmt_params(pair[0].total_params), fmt_params(pair[1].total_params)
        return (f"interpolated between {lo} and {hi}, {factor:.1f}× apart with nothing measured between:"
                " `moecluster refine` plans sizes there")

    @property
    def min_params(self) -> int:
        return self.points[0].total_params

    @property
    def max_params(self) -> int:
        return self.points[-1].total_params


def series_key(p: PairRatio) -> SeriesKey:
    s = p.moe.spec
    return SeriesKey(impl=s.impl, dtype=s.dtype, expert_parallel=s.expert_parallel, batch_size=s.batch_size,
                     match=str(p.dense.spec.match), workload=s.workload, device=s.device, load=s.load,
                     zipf_s=s.zipf_s if s.load == "zipf" else None, train_epochs=s.train_epochs, compile=s.compile,
                     cuda_graphs=s.cuda_graphs, gpu=", ".join(sorted({g.name for g in p.moe.result.gpus})),
                     phase=s.phase, prompt_len=s.prompt_len, gen_tokens=s.gen_tokens, path=s.path)


def fmt_params(p: float) -> str:
    """A parameter count in three significant digits with its unit: "12.2M", "2.79B"."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if p >= scale:
            return f"{p / scale:.3g}{unit}"
    return f"{p:.3g}"


def _ci_text(points: Sequence[SweepPoint], interval: CrossingInterval | None, note: str) -> str:
    if interval is None:
        return note
    if interval.undetermined:
        return f"undetermined: {interval.undetermined}"
    lo = fmt_params(interval.lo) if interval.lo is not None else f"≤ {fmt_params(points[0].total_params)}"
    hi = fmt_params(interval.hi) if interval.hi is not None else f"> {fmt_params(points[-1].total_params)}"
    return f"{lo} – {hi}"


def _outcome(points: Sequence[SweepPoint], central: float | None) -> str:
    ratios = [p.ratio.mean for p in points]
    if central is not None:
        return "MoE overtakes dense"
    if all(r >= 1 for r in ratios):
        return "no crossover: MoE ahead over the whole sweep"
    if all(r < 1 for r in ratios):
        return "no crossover: dense ahead over the whole sweep"
    return "no upward crossover: MoE falls behind dense as size grows"


def _verdict(points: Sequence[SweepPoint], central: float | None, ci: str, gap: str) -> str:
    outcome = _outcome(points, central)
    if central is not None:
        phrase = ci if ci.startswith("no CI") else f"95 % CI {ci}"
        return f"{outcome} at {fmt_params(central)} parameters ({phrase})" + (f"; {gap}" if gap else "")
    return f"{outcome} ({fmt_params(points[0].total_params)} – {fmt_params(points[-1].total_params)})"


def _point(size: int, pairs: Sequence[PairRatio], metric: Metric) -> SweepPoint:
    ratios: list[Estimate] = [r for r in (getattr(p, metric) for p in pairs) if r is not None]
    method = SEEDS_METHOD if len(ratios) > 1 else WINDOWS_METHOD
    spec = pairs[0].moe.spec
    return SweepPoint(size, replicate_ci(ratios), tuple(p.pair_id for p in pairs),
                      tuple(p.moe.spec.seed for p in pairs), method, spec.model_name or spec.preset or "custom",
                      tuple(sorted(spec.model.items())))


def _interval(xs: Sequence[float], points: Sequence[SweepPoint]) -> tuple[CrossingInterval | None, str]:
    """The bootstrap interval, or None and why there is none."""
    sizes = [SizeRatio.of(p.ratio) for p in points]
    drawn = [s for s in sizes if s is not None]
    if len(drawn) < len(sizes):
        return None, "no CI: a size has a single window and a single seed"
    return crossing_interval(xs, drawn), ""


def break_even(key: SeriesKey, pairs: Sequence[PairRatio], metric: Metric = "inferences_per_j") -> BreakEven | None:
    """The break-even of one series, None when it has fewer than two sizes with the metric."""
    by_size: dict[int, list[PairRatio]] = defaultdict(list)
    for p in pairs:
        total = p.moe.total_params
        if getattr(p, metric) is not None and total:
            by_size[total].append(p)
    if len(by_size) < 2:
        return None
    sizes = sorted(by_size)
    points = tuple(_point(size, by_size[size], metric) for size in sizes)
    xs = [math.log10(size) for size in sizes]
    logs = [math.log(p.ratio.mean) for p in points]
    at, side = first_upward(xs, [logs])
    central = 10 ** float(at[0]) if side[0] == CROSSING else None
    interval, note = _interval(xs, points) if central is not None else (None, "")
    crossings = tuple(Crossing(10**x, d) for x, d in all_crossings(xs, logs))
    be = BreakEven(key=key, metric=metric, points=points, params=central, interval=interval, ci_note=note,
                   crossings=crossings, outcome=_outcome(points, central), verdict="")
    return replace(be, verdict=_verdict(points, central, _ci_text(points, interval, note), be.gap_note))


def break_evens(pairs: Sequence[PairRatio], metric: Metric = "inferences_per_j") -> list[BreakEven]:
    """The break-even of every series that sweeps at least two sizes."""
    series: dict[SeriesKey, list[PairRatio]] = defaultdict(list)
    for p in pairs:
        series[series_key(p)].append(p)
    out = [break_even(k, series[k], metric) for k in sorted(series, key=SeriesKey.sort_key)]
    return [b for b in out if b is not None]
