"""What one `moecluster bench` pair's results say: the MoE/dense ratios over its windows, and which of
them have no interval (a single window, or a side without the figure), as a report reads a stored pair."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from moecluster.spec.records import TaskResult

from moecluster.report.aggregate.pairs import PairRatio, pair_ratio
from moecluster.report.aggregate.tasks import task_stats

#: `PairRatio` attribute → the word a warning uses for it
RATIO_NAMES = {"inferences_per_s": "throughput", "power_w": "power", "inferences_per_j": "efficiency"}


@dataclass(frozen=True)
class MissingIntervals:
    """The ratios of a pair that were computed but have no 95 % interval, and the fewest windows a side had."""

    names: tuple[str, ...]  # words of `RATIO_NAMES`, in its order
    windows: int


def bench_ratio(results: Sequence[TaskResult]) -> PairRatio | None:
    """The MoE/dense ratios of a bench's dense and MoE results with their window intervals (None if one failed)."""
    dense, moe = results[0], results[1]
    if not dense.status == moe.status == "ok":
        return None
    return pair_ratio(moe.spec.pair_id, task_stats(moe), task_stats(dense))


def missing_intervals(results: Sequence[TaskResult]) -> MissingIntervals | None:
    """The ratios printed without an interval (a figure without one is no result), else None."""
    ratios = bench_ratio(results)
    if ratios is None:
        return None
    bare = tuple(name for attr, name in RATIO_NAMES.items()
                 if (e := getattr(ratios, attr)) is not None and not e.has_ci)
    if not bare:
        return None
    return MissingIntervals(names=bare, windows=min(len(r.windows) for r in results))
