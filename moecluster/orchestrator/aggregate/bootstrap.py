"""The break-even's interval: a percentile bootstrap over windows and seeds.

One resample redraws, at every size of a series, the replicates (seeds) with replacement when
there are two or more, and inside each drawn replicate the MoE task's and the dense twin's
windows with replacement (each task apart); it recomputes each task's geometric mean, each
size's pooled MoE/dense ratio (geometric mean over the drawn replicates) and the first upward
crossing (`crossing.first_upward`). The interval holds the middle 95 % of the resamples'
crossings (percentile interval; `RESAMPLES` resamples from a fixed RNG seed, so a report is
reproducible). The break-even sits inside it by construction in all but pathological cases,
unlike where the pointwise bounds of the ratio cross 1.

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
import numpy.typing as npt

from .crossing import ABOVE, BELOW, CROSSING, NEITHER, first_upward
from .stats import CONFIDENCE

RESAMPLES = 2000
RNG_SEED = 0
METHOD = "percentile bootstrap over windows and seeds"


@dataclass(frozen=True)
class Replicate:
    """One MoE/dense comparison at one size: the per-window figures of each side (all positive)."""

    moe: tuple[float, ...]
    dense: tuple[float, ...]


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


def _log_means(values: tuple[float, ...], resamples: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Mean of ln(values) over `resamples` redraws of the values with replacement."""
    logs = np.log(np.asarray(values, dtype=float))
    idx = rng.integers(0, len(logs), size=(resamples, len(logs)))
    result: npt.NDArray[np.float64] = logs[idx].mean(axis=1)
    return result


def _size_log_ratios(replicates: Sequence[Replicate], resamples: int,
                     rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """ln of the pooled MoE/dense ratio at one size, per resample."""
    per_rep = np.stack([_log_means(r.moe, resamples, rng) - _log_means(r.dense, resamples, rng)
                        for r in replicates], axis=1)
    if len(replicates) > 1:
        drawn = rng.integers(0, len(replicates), size=(resamples, len(replicates)))
        per_rep = np.take_along_axis(per_rep, drawn, axis=1)
    result: npt.NDArray[np.float64] = per_rep.mean(axis=1)
    return result


def crossing_interval(xs: Sequence[float], sizes: Sequence[Sequence[Replicate]], *, resamples: int = RESAMPLES,
                      seed: int = RNG_SEED, confidence: float = CONFIDENCE) -> CrossingInterval:
    """The percentile bootstrap interval of the first upward crossing of a series.

    `xs` are log10 of the sizes (ascending), `sizes` the replicates at each size.
    """
    if len(xs) != len(sizes) or len(xs) < 2 or any(not reps for reps in sizes):
        raise ValueError("a crossing needs two or more sizes, each with a replicate")
    rng = np.random.default_rng(seed)
    curves = np.stack([_size_log_ratios(reps, resamples, rng) for reps in sizes], axis=1)
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
