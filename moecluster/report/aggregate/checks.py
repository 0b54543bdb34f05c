"""What a reader should be warned of about one task before trusting its figures.

The node records its own warnings (`TaskResult.warnings`: an energy counter too coarse for the
window, an idle reading that did not settle, ...); this adds the ones only the head states from
the record: fewer than `MIN_WINDOWS` windows (a t interval with one degree of freedom is very
wide, with one window there is none), windows that ran more than `MAX_OVERRUN` times the length
the sweep asked for plus one step (a window ends after the step in flight at its deadline; more is
work queued past the deadline, or a lock-step window's step count set too high: the figures stand,
but "5 s windows" would misdescribe them), and a roofline fraction
above 1 (the task ran faster than the peaks measured on its device allow, so the peaks are off;
the node's `Roofline.note` says why). Of a task measured by several replicates: that they ran
different forms (each chose afresh, `workloads.race`; the interval then holds the forms'
difference too).
"""
from __future__ import annotations

from collections.abc import Sequence

from moecluster.spec.records import TaskResult, Window

MIN_WINDOWS = 3
# Aligned edges wait for the energy counter's next update (tens of ms) and the last batch in flight
# drains: a few percent over the asked length is how a window ends, more is an overrun to report.
MAX_OVERRUN = 1.05


def few_windows(n_windows: int) -> str | None:
    """The warning for a task measured over fewer than `MIN_WINDOWS` windows, else None."""
    if n_windows >= MIN_WINDOWS:
        return None
    what = "no interval" if n_windows < 2 else f"a t interval with {n_windows - 1} degree of freedom, very wide"
    return f"fewer than {MIN_WINDOWS} windows ({n_windows}): {what}"


def few_replicates(replicates: int) -> str | None:
    """The warning for an interval over fewer than `MIN_WINDOWS` replicates (2 of them: 1 degree of
    freedom), else None; one replicate has its windows' interval instead (`few_windows`)."""
    if replicates < 2 or replicates >= MIN_WINDOWS:
        return None
    return f"fewer than {MIN_WINDOWS} replicates ({replicates}): a t interval with {replicates - 1} degree of" \
           " freedom, very wide"


def overrun(result: TaskResult) -> str | None:
    """The warning for windows longer than `MAX_OVERRUN` × the asked `duration_s` plus one of their
    own steps, else None."""
    asked_s = result.spec.duration_s
    if not asked_s > 0:
        return None
    items = result.items_per_batch

    def allowed_s(w: Window) -> float:
        step_s = w.duration_s * items / w.inferences if w.inferences > 0 else 0.0
        return asked_s * MAX_OVERRUN + step_s

    over = [w for w in result.windows if w.duration_s > allowed_s(w)]
    if not over:
        return None
    longest_s = max(w.duration_s for w in result.windows)
    return (f"{len(over)} of {len(result.windows)} windows overran the asked {asked_s:g} s by more than one step"
            f" (longest {longest_s:.2f} s, {longest_s / asked_s:.2f}×)")


def roofline_above_one(result: TaskResult) -> str | None:
    """The warning for a roofline fraction above 1, with the node's note when it gave one."""
    rl = result.roofline
    if rl is None or not rl.fraction > 1.0:
        return None
    why = rl.note or "faster than the peaks measured on the device allow"
    return f"roofline fraction {rl.fraction:.2f} above 1: {why}"


FORM_ASPECTS = ("layout", "kernel", "graph", "dispatch")


def form_ran(result: TaskResult) -> str:
    """What form a task's model ran in, for comparing replicates: the choice's label where recorded
    ("fused graph"), else the head of each recorded aspect ("addmm · captured"); with the fused kernel's
    tiles where it has them (without their measured times, which differ in every process)."""
    tiles = result.form.get("tiles")
    tuned = f" [{tiles.rsplit(' (', 1)[0]}]" if tiles else ""
    if result.choice is not None:
        return result.choice.chosen + tuned
    heads = [result.form[k].partition(": ")[0].partition(", ")[0] for k in FORM_ASPECTS if result.form.get(k)]
    return (" · ".join(heads) or "not recorded") + tuned


def forms_differ(replicates: Sequence[tuple[str, TaskResult]]) -> str | None:
    """The warning for replicates (name, e.g. "r2", and result) of one task that ran different forms,
    naming which ran which and, where the choice was within noise, saying so; else None."""
    ran: dict[str, list[str]] = {}
    for name, result in replicates:
        ran.setdefault(form_ran(result), []).append(name)
    if len(ran) < 2:
        return None
    tied = [name for name, result in replicates if result.choice is not None and result.choice.within_noise]
    which = "; ".join(f"{', '.join(names)}: {form}" for form, names in ran.items())
    why = f" ({', '.join(tied)} chose within noise, by tie-break order)" if tied else ""
    return f"replicates ran different forms ({which}){why}: the interval holds the forms' difference too"


def task_warnings(result: TaskResult) -> tuple[str, ...]:
    """The node's warnings followed by the head's, each once, in that order."""
    derived = (few_windows(len(result.windows)), overrun(result), roofline_above_one(result))
    return tuple(dict.fromkeys([*result.warnings, *(w for w in derived if w is not None)]))
