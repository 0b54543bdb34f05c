"""Where a MoE/dense ratio crosses 1 along a size sweep, for one curve or thousands at once.

Sizes are given as x = log10(total parameters), ratios as ln(ratio). A crossing lies between
two consecutive sizes whose ln(ratio) changes sign (ratio ≥ 1 counts as MoE ahead); it is
interpolated linearly in x, i.e. geometric interpolation of the ratio in log-parameters. The
break-even is the first upward crossing. A curve without one is classified: MoE ahead at every
size (the break-even lies at or below the swept range), dense ahead at every size (above it,
if anywhere), or neither (MoE falls behind as size grows).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

Side = Literal["crossing", "below", "above", "neither"]
CROSSING, BELOW, ABOVE, NEITHER = 0, 1, 2, 3
SIDES: tuple[Side, ...] = ("crossing", "below", "above", "neither")


def first_upward(xs: Sequence[float], log_ratios: npt.ArrayLike) -> tuple[npt.NDArray[np.float64],
                                                                           npt.NDArray[np.int64]]:
    """The first upward crossing of each curve (rows of `log_ratios`, one column per size in `xs`).

    Returns (x at the crossing, NaN where there is none; the curve's class: `CROSSING`, `BELOW`
    for MoE ahead at every size, `ABOVE` for dense ahead at every size, `NEITHER`).
    """
    x = np.asarray(xs, dtype=float)
    lr = np.atleast_2d(np.asarray(log_ratios, dtype=float))
    a, b = lr[:, :-1], lr[:, 1:]
    up = (a < 0) & (b >= 0)
    has = up.any(axis=1)
    i = np.argmax(up, axis=1)
    rows = np.arange(lr.shape[0])
    la, lb = a[rows, i], b[rows, i]
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x[i] + (0.0 - la) * (x[i + 1] - x[i]) / (lb - la)
    at = np.where(has, at, np.nan)
    side = np.full(lr.shape[0], NEITHER, dtype=np.int64)
    side[(lr >= 0).all(axis=1)] = BELOW
    side[(lr < 0).all(axis=1)] = ABOVE
    side[has] = CROSSING
    return at, side


def all_crossings(xs: Sequence[float], log_ratios: Sequence[float]) -> list[tuple[float, Literal["up", "down"]]]:
    """Every sign change of one curve: (x at the crossing, direction), in order of size."""
    out: list[tuple[float, Literal["up", "down"]]] = []
    for i in range(len(xs) - 1):
        la, lb = log_ratios[i], log_ratios[i + 1]
        if (la < 0) != (lb < 0):
            out.append((xs[i] + (0.0 - la) * (xs[i + 1] - xs[i]) / (lb - la), "up" if lb > la else "down"))
    return out
