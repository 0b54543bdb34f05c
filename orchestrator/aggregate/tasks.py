"""Per-task figures over repeats: throughput, power, energy, efficiency and seed 000's normalisations.

Every figure is first computed per measurement window and then averaged over the windows
(mean and Student-t interval), so a task's interval reflects its own repeat-to-repeat spread.

Energy comes in two flavours: as measured (everything the task's GPUs drew), and above idle
(`energy_j - idle_power_w * duration_s` per window, the idle power being what the same GPUs
drew just before the task, measured by the runner). Seed 000's normalisations divide the
energy per inference by the model's total (trainable) or active parameters, and per token by
the active parameters. For the MLP workload one inference routes exactly one token (one input
row) through the router and its experts, so tokens equal inferences there; a workload that
produces several tokens per item declares it in `TOKENS_PER_ITEM`.

A task whose energy was not measured keeps `energy_note` = "unavailable: <reason>" and has
None for every energy figure: never a zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from moecluster.agents.records import TaskResult, Window

from .stats import Estimate, mean_ci

TOKENS_PER_ITEM = {"mlp": 1}


@dataclass(frozen=True)
class TaskStats:
    """What one task measured, averaged over its windows (None where not measurable)."""

    result: TaskResult
    inferences_per_s: Estimate | None
    power_w: Estimate | None
    energy_j: Estimate | None
    inferences_per_j: Estimate | None
    energy_above_idle_j: Estimate | None
    inferences_per_j_above_idle: Estimate | None
    j_per_inference: Estimate | None
    j_per_inference_above_idle: Estimate | None
    j_per_inference_per_total_param: Estimate | None
    j_per_inference_per_active_param: Estimate | None
    j_per_token_per_active_param: Estimate | None
    tokens_per_j: Estimate | None
    energy_note: str | None
    idle_note: str | None

    @property
    def spec(self):  # type: ignore[no-untyped-def]
        return self.result.spec

    @property
    def task_id(self) -> str:
        return self.result.spec.task_id

    @property
    def total_params(self) -> int | None:
        return self.result.params.total if self.result.params else None

    @property
    def active_params(self) -> int | None:
        return self.result.params.active_per_token if self.result.params else None

    @property
    def n_windows(self) -> int:
        return len(self.result.windows)

    @property
    def inferences(self) -> int:
        return sum(w.inferences for w in self.result.windows)

    @property
    def measured_s(self) -> float:
        return sum(w.duration_s for w in self.result.windows)

    @property
    def total_energy_j(self) -> float | None:
        """Energy summed over all windows (None when unavailable)."""
        if self.energy_note is not None:
            return None
        return sum(w.energy_j for w in self.result.windows if w.energy_j is not None)


def normalisations(energy_j: float, inferences: float, tokens: float, total_params: float,
                   active_params: float) -> dict[str, float]:
    """Seed 000's figures from totals: watt-seconds (J) per response (inference) per total and
    per active parameter, per token per active parameter, and tokens per watt-second."""
    per_response = energy_j / inferences
    return {"j_per_inference": per_response,
            "j_per_inference_per_total_param": per_response / total_params,
            "j_per_inference_per_active_param": per_response / active_params,
            "j_per_token_per_active_param": energy_j / tokens / active_params,
            "tokens_per_j": tokens / energy_j}


def energy_note(result: TaskResult) -> str | None:
    """None when every window has energy, else "unavailable: <reason>"."""
    if result.status != "ok":
        return f"unavailable: task {result.status}"
    if result.energy_source is None:
        return f"unavailable: {result.energy_unavailable_reason or 'no reason recorded'}"
    if not result.windows or any(w.energy_j is None for w in result.windows):
        return "unavailable: a window has no energy reading"
    return None


def tokens_per_item(result: TaskResult) -> int:
    return TOKENS_PER_ITEM.get(result.spec.workload, 1)


def _power(w: Window) -> float | None:
    if w.avg_power_w is not None:
        return w.avg_power_w
    if w.energy_j is not None and w.duration_s > 0:
        return w.energy_j / w.duration_s
    return None


def _positive(values: Iterable[float | None]) -> list[float] | None:
    """The values if all are positive numbers (else None: a figure that cannot be formed)."""
    vals = list(values)
    if not vals or any(v is None or not v > 0 for v in vals):
        return None
    return [float(v) for v in vals]  # type: ignore[arg-type]


def _ci(values: Sequence[float] | None) -> Estimate | None:
    return mean_ci(values) if values else None


def task_stats(result: TaskResult) -> TaskStats:
    """Per-window figures of `result`, averaged with their 95 % intervals."""
    ws = [w for w in result.windows if w.duration_s > 0]
    note = energy_note(result)
    rate = _ci(_positive(w.inferences / w.duration_s for w in ws))
    power = _ci(_positive(_power(w) for w in ws)) if note is None else None
    energy = per_inf = above = per_inf_above = eff = eff_above = None
    idle_note: str | None = None
    if note is None:
        e = _positive(w.energy_j for w in ws)
        energy = _ci(e)
        if e is not None and all(w.inferences > 0 for w in ws):
            eff = _ci([w.inferences / j for w, j in zip(ws, e)])
            per_inf = _ci([j / w.inferences for w, j in zip(ws, e)])
        if result.idle_power_w is None:
            idle_note = "idle power not measured"
        else:
            a = [w.energy_j - result.idle_power_w * w.duration_s for w in ws]  # type: ignore[operator]
            if any(v <= 0 for v in a):
                idle_note = "energy above idle not positive (idle reading above the busy one)"
            else:
                above = _ci(a)
                if all(w.inferences > 0 for w in ws):
                    eff_above = _ci([w.inferences / j for w, j in zip(ws, a)])
                    per_inf_above = _ci([j / w.inferences for w, j in zip(ws, a)])
    else:
        idle_note = note
    total = result.params.total if result.params else None
    active = result.params.active_per_token if result.params else None
    tokens = tokens_per_item(result)
    return TaskStats(
        result=result, inferences_per_s=rate, power_w=power, energy_j=energy, inferences_per_j=eff,
        energy_above_idle_j=above, inferences_per_j_above_idle=eff_above, j_per_inference=per_inf,
        j_per_inference_above_idle=per_inf_above,
        j_per_inference_per_total_param=per_inf.scale(1.0 / total) if per_inf and total else None,
        j_per_inference_per_active_param=per_inf.scale(1.0 / active) if per_inf and active else None,
        j_per_token_per_active_param=per_inf.scale(1.0 / (tokens * active)) if per_inf and active else None,
        tokens_per_j=eff.scale(tokens) if eff else None,
        energy_note=note, idle_note=idle_note)


def all_task_stats(results: Iterable[TaskResult]) -> list[TaskStats]:
    """Stats of every `ok` task, in the given order (failed tasks are reported apart)."""
    return [task_stats(r) for r in results if r.status == "ok"]
