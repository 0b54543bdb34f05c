"""The two energy views of one verdict side by side: total energy (the headline) and energy above idle.

Total energy (what the GPU drew over the windows) is the headline: it is what a deployment pays.
Energy above idle subtracts the idle power the same GPUs drew just before the task, and answers
what the work itself costs; the two can disagree, most where the dense twin is small and fast and
idle is a large share of its energy (issue 26: at bf16 batch 128, `grouped` beats its
total-matched twin at small and medium above idle, not in total). Every place that shows a verdict
shows the above-idle one beside it and flags where they disagree:

- a comparison: the two ratios put different sides ahead (MoE ahead at a ratio ≥ 1), unless both
  intervals contain 1 (then neither view can tell, and they do not disagree);
- a break-even: one view has one and the other not (or another outcome), or both have one and either
  lies outside the other's 95 % interval (it moves by more than its interval).
"""
from __future__ import annotations

from collections.abc import Sequence

from moecluster.report.aggregate.breakeven import BreakEven, SeriesKey, fmt_params
from moecluster.report.aggregate.pairs import PairRatio
from moecluster.report.aggregate.stats import Estimate

FLAG = "‡"


def _side(ratio: float) -> str:
    return "MoE" if ratio >= 1.0 else "dense"


def pair_disagreement(p: PairRatio) -> str | None:
    """Why the two views of one comparison's inferences/J disagree on which side wins, else None."""
    return ratios_disagree(p.inferences_per_j, p.inferences_per_j_above_idle)


def ratios_disagree(total: Estimate | None, above: Estimate | None) -> str | None:
    """Why a total-energy ratio and its above-idle twin put different sides ahead, else None (also where
    either is missing, or both intervals contain 1)."""
    if total is None or above is None or _side(total.mean) == _side(above.mean):
        return None
    if total.crosses_one and above.crosses_one:
        return None
    return (f"the views disagree: in total energy {_side(total.mean)} wins ({total.mean:.2f}×), above idle"
            f" {_side(above.mean)} wins ({above.mean:.2f}×)")


def break_even_disagreement(total: BreakEven | None, above: BreakEven | None) -> str | None:
    """Why the two views' break-evens of one series disagree (another outcome, or a break-even outside the
    other view's 95 % interval), else None; None where either view lacks the series."""
    if total is None or above is None:
        return None
    if (total.params is None) != (above.params is None) or (total.params is None and total.outcome != above.outcome):
        return f"the views disagree: total energy says {_brief(total)}; above idle, {_brief(above)}"
    if total.params is None or above.params is None:
        return None
    outside = [b for b, other in ((total, above), (above, total))
               if b.interval is not None and b.interval.holds(other.params or 0.0) is False]
    if not outside:
        return None
    return (f"the views disagree: the break-even moves from {fmt_params(total.params)} (total energy) to"
            f" {fmt_params(above.params)} (above idle), outside the 95 % CI of"
            f" {' and of '.join('total energy' if b is total else 'above idle' for b in outside)}")


def _brief(b: BreakEven) -> str:
    return f"{b.outcome} at {fmt_params(b.params)}" if b.params is not None else b.outcome


def by_series(total: Sequence[BreakEven], above: Sequence[BreakEven]) -> list[tuple[SeriesKey, BreakEven | None,
                                                                                    BreakEven | None]]:
    """The break-evens of both views, one row per series (total energy's order, then series only above
    idle has)."""
    tot = {b.key: b for b in total}
    abv = {b.key: b for b in above}
    keys = list(dict.fromkeys([*tot, *abv]))
    return [(k, tot.get(k), abv.get(k)) for k in keys]
