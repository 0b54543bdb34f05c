"""Estimates with 95 % intervals: geometric means over windows, their ratios, and replicates pooled.

Figures measured per window (inferences/s, W, J, inferences/J) are positive and vary by a factor
rather than by a difference, so their intervals are computed on the log scale ("log-scale t"):
the point estimate is the geometric mean over the windows, exp(mean ln x), and the interval
exp(mean ln x ± t(n − 1) · s_ln / √n) with Student's t, because windows are few (3 to 10). Such an
interval is always positive and asymmetric, and it reads the same whether one looks at
inferences/J or at J/inference (the geometric mean of reciprocals is the reciprocal of the
geometric mean). At the few-percent spread of benchmark windows the geometric mean lies within
cv²/2 of the arithmetic one (2e-4 at a 2 % spread).

A ratio of two such estimates (MoE over dense) is the difference of their mean logs: Welch's t on
the log scale (Welch–Satterthwaite degrees of freedom), so `r · exp(±t · se)`.

Replicates (the same comparison run again with other seeds) are pooled by a t-interval over
their log values, degrees of freedom = replicates − 1 ("t over seeds"), so the pooled interval
widens when the seeds disagree instead of narrowing with every added window. Replicates that ran on
several GPUs are pooled over the GPUs (`clustered_ci`): a GPU's offset is shared by its processes.

With one window (or one replicate) there is no interval (None), never a made-up one. `mean_ci`
keeps the arithmetic Student-t interval for figures that may be zero or negative. Quantiles come
from SciPy.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import t as student_t

CONFIDENCE = 0.95


def t_quantile(df: float, confidence: float = CONFIDENCE) -> float:
    """The two-sided `confidence` critical value of Student's t with `df` (> 0) degrees of freedom."""
    if not df > 0:
        raise ValueError(f"Student's t needs df > 0, got {df}")
    return float(student_t.ppf(0.5 + confidence / 2.0, df))


@dataclass(frozen=True)
class Estimate:
    """A point estimate over `n` repeats (windows, or replicates once pooled) with its 95 % interval.

    `mean` is the point estimate: the geometric mean when `log_scale`, else the arithmetic mean.
    `lo`/`hi` are None when there is no interval (n < 2). `se` is the standard error on the
    interval's scale (of ln x when `log_scale`) and `df` its degrees of freedom, kept so that
    ratios of estimates get their own intervals.
    """

    mean: float
    lo: float | None
    hi: float | None
    n: int
    se: float | None = None
    df: float | None = None
    log_scale: bool = False

    @property
    def has_ci(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def se_log(self) -> float | None:
        """The standard error of ln(mean): exact on the log scale, by the delta method otherwise."""
        if self.se is None:
            return None
        return self.se if self.log_scale else self.se / self.mean

    def scale(self, factor: float) -> Estimate:
        """The same estimate times a positive constant (a unit change, a normalisation)."""
        if not factor > 0:
            raise ValueError(f"scale factor must be positive, got {factor}")
        se = self.se if self.se is None or self.log_scale else self.se * factor
        return Estimate(self.mean * factor, None if self.lo is None else self.lo * factor,
                        None if self.hi is None else self.hi * factor, self.n, se, self.df, self.log_scale)

    def crosses(self, value: float) -> bool | None:
        """Whether the interval contains `value` (None without an interval)."""
        if self.lo is None or self.hi is None:
            return None
        return self.lo <= value <= self.hi

    @property
    def crosses_one(self) -> bool | None:
        """For a ratio: True when the data cannot tell which side is better."""
        return self.crosses(1.0)


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate | None:
    """Arithmetic mean and Student-t interval of `values` (any sign); None for an empty sequence."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return None
    mean = sum(vals) / n
    if n < 2:
        return Estimate(mean, None, None, n)
    se = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1) / n)
    half = t_quantile(n - 1, confidence) * se
    return Estimate(mean, mean - half, mean + half, n, se, float(n - 1))


def _log_t(logs: Sequence[float], confidence: float) -> Estimate:
    """exp(mean ± t · se) of values already on the log scale (at least one)."""
    n = len(logs)
    centre = sum(logs) / n
    point = math.exp(centre)
    if n < 2:
        return Estimate(point, None, None, n, log_scale=True)
    se = math.sqrt(sum((v - centre) ** 2 for v in logs) / (n - 1) / n)
    half = t_quantile(n - 1, confidence) * se
    return Estimate(point, math.exp(centre - half), math.exp(centre + half), n, se, float(n - 1), True)


def log_mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate | None:
    """Geometric mean of positive `values` with the log-scale t interval; None for an empty sequence."""
    vals = [float(v) for v in values]
    if not vals:
        return None
    if any(not v > 0 for v in vals):
        raise ValueError(f"a log-scale interval needs positive values, got {vals}")
    return _log_t([math.log(v) for v in vals], confidence)


def ratio_ci(num: Estimate, den: Estimate, confidence: float = CONFIDENCE) -> Estimate:
    """`num.mean / den.mean` with Welch's t interval on the log scale.

    Both means must be positive (throughputs, powers, efficiencies). `n` of the result is the
    smaller of the two. Without an interval on either side the ratio has none.
    """
    if not (num.mean > 0 and den.mean > 0):
        raise ValueError(f"a ratio of means needs positive means, got {num.mean} / {den.mean}")
    r = num.mean / den.mean
    n = min(num.n, den.n)
    se_a, se_b = num.se_log, den.se_log
    if se_a is None or se_b is None or num.df is None or den.df is None:
        return Estimate(r, None, None, n, log_scale=True)
    va, vb = se_a**2, se_b**2
    if va + vb == 0.0:
        return Estimate(r, r, r, n, 0.0, num.df + den.df, True)
    df = (va + vb) ** 2 / (va**2 / num.df + vb**2 / den.df)
    se = math.sqrt(va + vb)
    half = t_quantile(df, confidence) * se
    return Estimate(r, r * math.exp(-half), r * math.exp(half), n, se, df, True)


def replicate_ci(estimates: Sequence[Estimate], confidence: float = CONFIDENCE) -> Estimate:
    """Positive estimates of one quantity from independent replicates (seeds), pooled.

    One replicate is returned as it is (its own window interval). Several give their geometric
    mean with a t-interval over their log values (df = replicates − 1): "t over seeds". The
    interval reflects how much the replicates disagree; `n` is the number of replicates.
    """
    if not estimates:
        raise ValueError("no estimate to pool")
    if len(estimates) == 1:
        return estimates[0]
    if any(not e.mean > 0 for e in estimates):
        raise ValueError("pooling on the log scale needs positive estimates")
    return _log_t([math.log(e.mean) for e in estimates], confidence)


def clustered_ci(groups: Sequence[Sequence[Estimate]], confidence: float = CONFIDENCE) -> Estimate:
    """Replicates grouped by the GPU they ran on, pooled over the GPUs.

    Processes on one GPU share its offset (its clocks, its cooling, its host), which is larger than
    their spread between processes, so an interval meant to hold a re-measurement on another GPU
    has the GPUs as its samples: each GPU's geometric mean of its replicates, then a t-interval over
    those (df = GPUs − 1; `n` is the number of GPUs). One group is `replicate_ci` of it.
    """
    present = [g for g in groups if g]
    if not present:
        raise ValueError("no estimate to pool")
    if len(present) == 1:
        return replicate_ci(present[0], confidence)
    if any(not e.mean > 0 for g in present for e in g):
        raise ValueError("pooling on the log scale needs positive estimates")
    return _log_t([sum(math.log(e.mean) for e in g) / len(g) for g in present], confidence)
