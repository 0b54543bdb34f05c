"""The break-even's interval: a bootstrap that carries each size's own interval through.

One resample draws, at every size of a series, the MoE/dense ratio from that size's own 95 %
interval (`SizeRatio`): ln r = ln r̂ + se · T, T Student's t with the interval's degrees of
freedom. Where several processes measured a size (replicates, seeds, or runs `report` pools),
se and df are those of the t-interval over the processes' own ratios (df = processes − 1): the
resamples spread as far as the replicates disagree, however tight each process's windows were.
Where one process measured a size, they are its windows' (Welch's t on the log ratio). The
resample's first upward crossing (`crossing.first_upward`) is its break-even; the interval holds
the middle 95 % of the resamples' crossings (percentile interval; `RESAMPLES` resamples from a
fixed RNG seed, so a report is reproducible).

Why not redraw windows: a percentile bootstrap over three windows sees at most ten distinct means
and no t-widening, so it narrowed a break-even's interval below what the per-size intervals it
rests on allow (issue 26: 11.5–12.9 M where those intervals, carried through, give about
10.4–14.2 M); and windows of one process do not hold what moves a figure between processes.

A resample with MoE ahead at every size puts the break-even at or below the smallest size, one
with dense ahead at every size above the largest: they count as the interval's open ends. The
interval is `undetermined` when both ends are open (it spans the swept range), or when more than
5 % of the resamples have no upward crossing at all (MoE falls behind as size grows); the counts
are kept so the report says how many.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from moecluster.report.aggregate.crossing import ABOVE, BELOW, CROSSING, NEITHER, first_upward
from moecluster.report.aggregate.stats import CONFIDENCE, Estimate

RESAMPLES = 2000
RNG_SEED = 0
METHOD = "bootstrap of each size's ratio from its own interval (t over replicates, or one process's windows)"


@dataclass(frozen=True)
class SizeRatio:
    """One size's MoE/dense ratio as its interval describes it: ln of the point, its standard error and
    degrees of freedom (of the t over replicates, or of Welch's t over one process's windows)."""

    log_ratio: float
    se_log: float
    df: float

    @staticmethod
    def of(ratio: Estimate) -> SizeRatio | None:
        """`ratio` (a positive log-scale estimate) as a `SizeRatio`; None without an interval to draw from."""
        se, df = ratio.se_log, ratio.df
        if se is None or df is None or not ratio.mean > 0 or not df > 0:
            return None
        return SizeRatio(float(np.log(ratio.mean)), se, df)


@dataclass(frozen=True)
class CrossingInterval:
    """The bootstrap interval of a break-even (total parameters; None for an open end)."""

    lo: float | None        # None: at or below the smallest size swept
    hi: float | None        # None: above the largest size swept
    resamples: int
    below: int              # resamples with MoE ahead at every size
    above: int              # resamples with dense ahead at every size
    neither: int            # resamples without an upward crossing otherwise
    undetermined: str | None  # why there is no interval, else None
    confidence: float = CONFIDENCE
    method: str = METHOD

    @property
    def without_crossing(self) -> int:
        return self.below + self.above + self.neither

    def holds(self, params: float) -> bool | None:
        """Whether `params` lies inside the interval (an open end reaches past the swept range); None when
        the interval is undetermined."""
        if self.undetermined:
            return None
        lo = self.lo if self.lo is not None else 0.0
        hi = self.hi if self.hi is not None else float("inf")
        return lo <= params <= hi


def crossing_interval(xs: Sequence[float], sizes: Sequence[SizeRatio], *, resamples: int = RESAMPLES,
                      seed: int = RNG_SEED, confidence: float = CONFIDENCE) -> CrossingInterval:
    """The percentile bootstrap interval of the first upward crossing of a series.

    `xs` are log10 of the sizes (ascending), `sizes` the ratio measured at each.
    """
    if len(xs) != len(sizes) or len(xs) < 2:
        raise ValueError("a crossing needs two or more sizes, each with its ratio")
    rng = np.random.default_rng(seed)
    curves = np.stack([s.log_ratio + s.se_log * rng.standard_t(s.df, size=resamples) for s in sizes], axis=1)
    at, side = first_upward(xs, curves)
    counts = {k: int((side == k).sum()) for k in (CROSSING, BELOW, ABOVE, NEITHER)}
    alpha = 1.0 - confidence
    below, above, neither = counts[BELOW], counts[ABOVE], counts[NEITHER]
    if neither > alpha * resamples:
        why = f"{neither:,} of {resamples:,} resamples have no upward crossing"
        return CrossingInterval(None, None, resamples, below, above, neither, why, confidence)
    placed = np.concatenate([np.full(below, -np.inf), at[side == CROSSING], np.full(above, np.inf)])
    lo, hi = (float(np.quantile(placed, q, method="inverted_cdf")) for q in (alpha / 2, 1 - alpha / 2))
    if np.isinf(lo) and np.isinf(hi):
        if lo == hi:
            who, n = ("MoE", below) if lo < 0 else ("dense", above)
            why = f"{n:,} of {resamples:,} resamples have {who} ahead at every size"
        else:
            why = (f"the interval spans the swept range ({below:,} of {resamples:,} resamples have MoE ahead at"
                   f" every size, {above:,} dense ahead at every size)")
        return CrossingInterval(None, None, resamples, below, above, neither, why, confidence)
    return CrossingInterval(None if np.isinf(lo) else 10**lo, None if np.isinf(hi) else 10**hi, resamples,
                            below, above, neither, None, confidence)
