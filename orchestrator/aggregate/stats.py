"""Means, Student-t confidence intervals and ratios of means with their intervals.

Repeats of one task are few (3 to 10 windows), so intervals use Student's t, not the normal
approximation. The t quantile is computed here from the regularised incomplete beta function
(continued fraction, as in Numerical Recipes §6.4) rather than pulling in SciPy for one call;
tests check it against the printed t table.

A ratio of two independent means (MoE over dense) gets its interval from the delta method on
the log scale: var(ln(a/b)) ≈ (se_a/a)² + (se_b/b)², with Welch–Satterthwaite degrees of
freedom, so the interval is `r·exp(±t·se)`: asymmetric, always positive, and the same
whether one looks at MoE/dense or dense/MoE. With one window on either side there is no
interval (None), never a made-up one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

CONFIDENCE = 0.95


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` (real, > 0) degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_pdf(t: float, df: float) -> float:
    return math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
                    - (df + 1) / 2 * math.log1p(t * t / df))


def t_ppf(q: float, df: float) -> float:
    """The `q` quantile of Student's t: Newton from the normal quantile, bisection if that strays."""
    if not 0.0 < q < 1.0 or df <= 0:
        raise ValueError(f"t_ppf needs 0 < q < 1 and df > 0, got q={q}, df={df}")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    t = NormalDist().inv_cdf(q)
    for _ in range(50):
        step = (t_cdf(t, df) - q) / t_pdf(t, df)
        t -= step
        if t <= 0 or not math.isfinite(t):
            break
        if abs(step) < 1e-12 * max(1.0, t):
            return t
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class Estimate:
    """A mean over `n` repeats with its 95 % interval.

    `lo`/`hi` are None when there is no interval (n < 2); `se` is the standard error and
    `df` its degrees of freedom, kept so ratios of estimates get their own intervals.
    """

    mean: float
    lo: float | None
    hi: float | None
    n: int
    se: float | None = None
    df: float | None = None

    @property
    def has_ci(self) -> bool:
        return self.lo is not None and self.hi is not None

    def scale(self, factor: float) -> "Estimate":
        """The same estimate times a positive constant (a unit change, a normalisation)."""
        if not factor > 0:
            raise ValueError(f"scale factor must be positive, got {factor}")
        return Estimate(self.mean * factor, None if self.lo is None else self.lo * factor,
                        None if self.hi is None else self.hi * factor, self.n,
                        None if self.se is None else self.se * factor, self.df)

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
    """Mean and Student-t interval of `values`; None for an empty sequence."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return None
    mean = sum(vals) / n
    if n < 2:
        return Estimate(mean, None, None, n)
    var = sum((v - mean) ** 2 for v in vals) / (n - 1)
    se = math.sqrt(var / n)
    half = t_ppf(0.5 + confidence / 2.0, n - 1) * se
    return Estimate(mean, mean - half, mean + half, n, se, float(n - 1))


def ratio_ci(num: Estimate, den: Estimate, confidence: float = CONFIDENCE) -> Estimate:
    """`num.mean / den.mean` with the log-scale delta-method interval (Welch df).

    Both means must be positive (throughputs, powers, efficiencies). `n` of the result is
    the smaller of the two. Without an interval on either side the ratio has none.
    """
    if not (num.mean > 0 and den.mean > 0):
        raise ValueError(f"a ratio of means needs positive means, got {num.mean} / {den.mean}")
    r = num.mean / den.mean
    n = min(num.n, den.n)
    if num.se is None or den.se is None or num.df is None or den.df is None:
        return Estimate(r, None, None, n)
    va, vb = (num.se / num.mean) ** 2, (den.se / den.mean) ** 2
    se_log = math.sqrt(va + vb)
    if se_log == 0.0:
        return Estimate(r, r, r, n, 0.0, num.df + den.df)
    df = (va + vb) ** 2 / (va**2 / num.df + vb**2 / den.df)
    half = t_ppf(0.5 + confidence / 2.0, df) * se_log
    return Estimate(r, r * math.exp(-half), r * math.exp(half), n, r * se_log, df)
