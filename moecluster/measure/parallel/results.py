"""A gang's task as one `TaskResult`, like any other task's: the gang's GPUs, windows, roofline.

`world_size` says how many GPUs measured it; `gpus` lists them in rank order (the order of each
window's `gpu_energy_j`); idle power is the sum of the ranks' settled idle powers; the roofline
is the task's work over the N GPUs' summed peaks (`roofline`); `phases` and `alltoall` carry the
expert-parallel step's phases and the raw all-to-all (empty for a data-parallel dense task).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from moecluster.measure.meters.roofline import roofline
from moecluster.spec.records import AllToAllPoint, PhaseStat, Roofline, TaskResult, Window
from moecluster.measure.session import record_warnings, resolution_warning, window_drift
from moecluster.measure.parallel.merge import merge_idle
from moecluster.measure.parallel.rank_setup import RankFacts
from moecluster.measure.parallel.roofline import gang_peaks
from moecluster.measure.parallel.tasks import GangTask


@dataclass(frozen=True)
class GangWindow:
    """One merged window with how its energy was obtained: source, or why none, and the ranks' meter notes."""

    window: Window
    source: str | None
    unavailable_reason: str | None
    notes: tuple[str, ...] = ()


def _energy(windows: Sequence[GangWindow]) -> tuple[str | None, str | None]:
    sources = list(dict.fromkeys(w.source for w in windows))
    reason = next((w.unavailable_reason for w in windows if w.unavailable_reason), None)
    if len(sources) == 1 and sources[0] is not None:
        return sources[0], None
    if len(sources) > 1 and None not in sources:
        return None, f"energy sources differ between windows: {sources}"
    return None, reason or "no window measured energy"


def _roofline(task: GangTask, windows: Sequence[Window], facts: Sequence[RankFacts]) -> Roofline | None:
    per_rank = [f.peaks.get(task.spec.dtype) for f in facts]
    present = [p for p in per_rank if p is not None]
    if not windows or len(present) != len(per_rank):
        return None
    return roofline(task.flops_per_item, task.bytes_per_batch, task.items_per_step, windows, gang_peaks(present))


def _warnings(task: GangTask, windows: Sequence[GangWindow], facts: Sequence[RankFacts]) -> tuple[str, ...]:
    per_window = [(*gw.notes, resolution_warning(gw.window.energy_j, gw.window.energy_resolution_j, None))
                  for gw in windows]
    return record_warnings(merge_idle([f.idle for f in facts]), per_window, first=task.warnings)


def gang_result(task: GangTask, windows: Sequence[GangWindow], facts: Sequence[RankFacts], *,
                phases: tuple[PhaseStat, ...], alltoall: tuple[AllToAllPoint, ...], started_at: float,
                finished_at: float) -> TaskResult:
    """The gang's record of a task whose windows all ran (`facts`: every rank's, in rank order)."""
    ws = tuple(gw.window for gw in windows)
    source, reason = _energy(windows)
    idle = merge_idle([f.idle for f in facts])
    notes = {f"note{i}": n for i, n in enumerate(task.notes)}
    return TaskResult(
        spec=task.spec, status="ok", node=facts[0].node, gpus=tuple(g for f in facts for g in f.gpus),
        params=task.params, windows=ws, energy_source=source, energy_unavailable_reason=reason,
        idle_power_w=idle.power_w if idle else None, idle_settle_s=idle.settle_s if idle else None,
        idle_note=idle.note if idle else None, roofline=_roofline(task, ws, facts), expert_tokens=task.expert_tokens,
        versions={**facts[0].versions, **notes}, started_at=started_at, finished_at=finished_at,
        form=dict(task.form), choice=task.choice, drift=window_drift(ws), warnings=_warnings(task, windows, facts),
        world_size=len(facts), phases=phases, alltoall=alltoall)
