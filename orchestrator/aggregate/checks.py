"""What a reader should be warned of about one task before trusting its figures.

The node records its own warnings (`TaskResult.warnings`: an energy counter too coarse for the
window, an idle reading that did not settle, ...); this adds the ones only the head states from
the record: fewer than `MIN_WINDOWS` windows (a t interval with one degree of freedom is very
wide, with one window there is none) and a roofline fraction above 1 (the task ran faster than
the peaks measured on its device allow, so the peaks are off; the node's `Roofline.note` says why).
"""
from __future__ import annotations

from moecluster.agents.records import TaskResult

MIN_WINDOWS = 3


def few_windows(n_windows: int) -> str | None:
    """The warning for a task measured over fewer than `MIN_WINDOWS` windows, else None."""
    if n_windows >= MIN_WINDOWS:
        return None
    what = "no interval" if n_windows < 2 else f"a t interval with {n_windows - 1} degree of freedom, very wide"
    return f"fewer than {MIN_WINDOWS} windows ({n_windows}): {what}"


def roofline_above_one(result: TaskResult) -> str | None:
    """The warning for a roofline fraction above 1, with the node's note when it gave one."""
    rl = result.roofline
    if rl is None or not rl.fraction > 1.0:
        return None
    why = rl.note or "faster than the peaks measured on the device allow"
    return f"roofline fraction {rl.fraction:.2f} above 1: {why}"


def task_warnings(result: TaskResult) -> tuple[str, ...]:
    """The node's warnings followed by the head's, each once, in that order."""
    derived = (few_windows(len(result.windows)), roofline_above_one(result))
    return tuple(dict.fromkeys([*result.warnings, *(w for w in derived if w is not None)]))
