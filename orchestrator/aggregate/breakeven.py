"""Break-even: the model size where MoE inferences/J overtakes its dense twin's (seed 001).

A sweep over sizes gives, per series (implementation, dtype, expert-parallel degree, batch
size, dense matching mode, and the other settings that must stay fixed along a size axis),
points (x = log10 of the MoE's total parameters, y = MoE/dense ratio of inferences/J with
its interval). The break-even is where ln(ratio) crosses zero, interpolated linearly in
log10(parameters) between the two sizes that bracket the crossing, i.e. geometric
interpolation of the ratio in log-parameters.

Its interval comes from the ratio's interval: the upper bound of the ratio crossing 1 is
the smallest size at which MoE may already be ahead; the lower bound crossing 1 is the size
from which MoE is ahead beyond doubt (95 %). Where a bound does not cross inside the swept
range, that end is open and the verdict says so.

Several pairs at the same size in one series (e.g. different seeds) are pooled: geometric
mean of their ratios, standard errors of the log ratios combined as for a mean of
independent estimates, the smallest degrees of freedom.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, fields
from typing import Literal, Sequence

from .pairs import PairRatio
from .stats import CONFIDENCE, Estimate, t_ppf

Metric = Literal["inferences_per_j", "inferences_per_j_above_idle"]


@dataclass(frozen=True, order=True)
class SeriesKey:
    """What stays fixed along one size sweep."""

    impl: str
    dtype: str
    expert_parallel: int
    batch_size: int
    match: str
    workload: str = "mlp"
    device: str = "cuda"
    load: str = "router"
    compile: bool = False
    cuda_graphs: bool = False

    def label(self) -> str:
        extra = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)[5:]
                 if getattr(self, f.name) != f.default]
        base = f"{self.impl} {self.dtype} EP{self.expert_parallel} b{self.batch_size} vs dense/{self.match}"
        return " ".join([base, *extra])


@dataclass(frozen=True)
class SweepPoint:
    total_params: int
    ratio: Estimate
    pair_ids: tuple[str, ...]


@dataclass(frozen=True)
class Crossing:
    total_params: float
    direction: Literal["up", "down"]


@dataclass(frozen=True)
class BreakEven:
    """One series: its points, the central break-even and its interval."""

    key: SeriesKey
    metric: str
    points: tuple[SweepPoint, ...]
    params: float | None          # first upward crossing of the ratio
    params_lo: float | None       # upper CI bound crosses 1: MoE may be ahead from here
    params_hi: float | None       # lower CI bound crosses 1: MoE ahead beyond doubt from here
    crossings: tuple[Crossing, ...]
    verdict: str

    @property
    def interval_text(self) -> str:
        """The 95 % interval of the break-even as text ("106M – 118M", "≤ 2.69M – 118M", "no CI: ...")."""
        if self.params is None:
            return ""
        return _ci_text(self.points, self.params_lo, self.params_hi).removeprefix("95 % CI ")

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
                     compile=s.compile, cuda_graphs=s.cuda_graphs)


def _pool(ratios: Sequence[Estimate]) -> Estimate:
    if len(ratios) == 1:
        return ratios[0]
    m = len(ratios)
    log_mean = sum(math.log(r.mean) for r in ratios) / m
    mean = math.exp(log_mean)
    n = sum(r.n for r in ratios)
    if any(r.se is None or r.df is None for r in ratios):
        return Estimate(mean, None, None, n)
    se_log = math.sqrt(sum((r.se / r.mean) ** 2 for r in ratios)) / m  # type: ignore[operator]
    df = min(r.df for r in ratios)  # type: ignore[type-var]
    half = t_ppf(0.5 + CONFIDENCE / 2.0, df) * se_log  # type: ignore[arg-type]
    return Estimate(mean, mean * math.exp(-half), mean * math.exp(half), n, mean * se_log, df)


def _crossings(xs: Sequence[float], ys: Sequence[float | None]) -> list[tuple[float, str]]:
    """Where ln(y) changes sign between consecutive points: (log10 x at the crossing, direction)."""
    out: list[tuple[float, str]] = []
    for i in range(len(xs) - 1):
        a, b = ys[i], ys[i + 1]
        if a is None or b is None:
            continue
        la, lb = math.log(a), math.log(b)
        if la < 0 <= lb or (la >= 0 > lb):
            x = xs[i] if la == lb else xs[i] + (0.0 - la) * (xs[i + 1] - xs[i]) / (lb - la)
            out.append((x, "up" if lb > la else "down"))
    return out


def _first_up(xs: Sequence[float], ys: Sequence[float | None]) -> float | None:
    ups = [x for x, d in _crossings(xs, ys) if d == "up"]
    return 10 ** ups[0] if ups else None


def _fmt(p: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if p >= scale:
            return f"{p / scale:.3g}{unit}"
    return f"{p:.3g}"


def _ci_text(points: Sequence[SweepPoint], lo: float | None, hi: float | None) -> str:
    if not all(p.ratio.has_ci for p in points):
        return "no CI: a size has a single window"
    if lo is not None:
        lo_txt = _fmt(lo)
    elif (points[0].ratio.hi or 0.0) >= 1.0:
        lo_txt = f"≤ {_fmt(points[0].total_params)}"
    else:
        lo_txt = f"> {_fmt(points[-1].total_params)}"
    hi_txt = _fmt(hi) if hi is not None else f"> {_fmt(points[-1].total_params)}"
    return f"95 % CI {lo_txt} – {hi_txt}"


def _verdict(points: Sequence[SweepPoint], central: float | None, lo: float | None, hi: float | None) -> str:
    ratios = [p.ratio.mean for p in points]
    span = f"{_fmt(points[0].total_params)} – {_fmt(points[-1].total_params)}"
    if central is not None:
        return f"MoE overtakes dense at {_fmt(central)} parameters ({_ci_text(points, lo, hi)})"
    if all(r >= 1 for r in ratios):
        return f"no crossover: MoE ahead over the whole sweep ({span})"
    if all(r < 1 for r in ratios):
        return f"no crossover: dense ahead over the whole sweep ({span})"
    return f"no upward crossover: MoE falls behind dense as size grows ({span})"


def break_even(key: SeriesKey, pairs: Sequence[PairRatio], metric: Metric = "inferences_per_j") -> BreakEven | None:
    """The break-even of one series, None when it has fewer than two sizes with the metric."""
    by_size: dict[int, list[PairRatio]] = defaultdict(list)
    for p in pairs:
        r: Estimate | None = getattr(p, metric)
        total = p.moe.total_params
        if r is not None and total:
            by_size[total].append(p)
    if len(by_size) < 2:
        return None
    points = tuple(SweepPoint(size, _pool([getattr(p, metric) for p in ps]), tuple(p.pair_id for p in ps))
                   for size, ps in sorted(by_size.items()))
    xs = [math.log10(p.total_params) for p in points]
    central = _first_up(xs, [p.ratio.mean for p in points])
    lo = _first_up(xs, [p.ratio.hi for p in points])
    hi = _first_up(xs, [p.ratio.lo for p in points])
    found = _crossings(xs, [p.ratio.mean for p in points])
    crossings = tuple(Crossing(10**x, d) for x, d in found)  # type: ignore[arg-type]
    return BreakEven(key=key, metric=metric, points=points, params=central, params_lo=lo, params_hi=hi,
                     crossings=crossings, verdict=_verdict(points, central, lo, hi))


def break_evens(pairs: Sequence[PairRatio], metric: Metric = "inferences_per_j") -> list[BreakEven]:
    """The break-even of every series that sweeps at least two sizes."""
    series: dict[SeriesKey, list[PairRatio]] = defaultdict(list)
    for p in pairs:
        series[series_key(p)].append(p)
    out = [break_even(k, ps, metric) for k, ps in sorted(series.items())]
    return [b for b in out if b is not None]
