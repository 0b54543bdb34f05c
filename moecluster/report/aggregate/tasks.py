"""Per-task figures over repeats: throughput, power, energy, efficiency and seed 000's normalisations.

Every figure is first computed per measurement window and then summarised over the windows
(geometric mean and log-scale t interval, see `stats`), so a task's interval reflects its own
repeat-to-repeat spread. The per-window figures are kept (`TaskStats.samples`, a replicate's
windows pooled with the others'), and the warnings a reader needs (`checks`) beside them.

Energy comes in two flavours: as measured (everything the task's GPUs drew), and above idle
(`energy_j - idle_power_w * duration_s` per window, the idle power being what the same GPUs
drew just before the task, measured by the runner). Seed 000's normalisations divide the
energy per inference by the model's total (trainable) or active parameters, and per token by
the active parameters. For the MLP workload one inference routes exactly one token (one input
row) through the router and its experts, so tokens equal inferences there; a workload that
produces several tokens per item declares it in its plug-in (`WorkloadPlugin.tokens_per_item`).

A task whose energy was not measured keeps `energy_note` = "unavailable: <reason>" and has
None for every energy figure: never a zero.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import get_args

from moecluster.spec.records import TaskResult, TaskSpec, Window
from moecluster.head.sweep.pairs import DTYPE_SHORT
from moecluster.head.sweep.schema import Impl
from moecluster.workloads.registry import workload

from moecluster.report.aggregate.checks import few_replicates, few_windows, task_warnings
from moecluster.report.aggregate.stats import Estimate, log_mean_ci

def custom_name(spec: TaskSpec) -> str | None:
    """The name the sweep gave a model that is not a plain preset: `spec.model_name`, or for a task
    planned before tasks recorded it, read back from its pair id (`<name>[-<impl>]-<dtype>-b<batch>...`,
    the workloads' expansions, `moecluster.workloads`); None where neither says (a plain preset, an unnamed
    shape, a task not planned by a sweep)."""
    if spec.model_name or spec.preset:
        return spec.model_name
    tail = f"-{DTYPE_SHORT.get(spec.dtype, spec.dtype)}-b{spec.batch_size}"
    head, sep, rest = spec.pair_id.rpartition(tail)
    if not sep or not head or (rest and not rest.startswith("-")):
        return None
    for impl in get_args(Impl):
        if head.endswith(f"-{impl}") and len(head) > len(impl) + 1:
            head = head[:-len(impl) - 1]
            break
    return None if head == "custom" else head


@dataclass(frozen=True)
class TaskStats:
    """What one task measured, summarised over its windows (None where not measurable)."""

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
    above_idle_note: str | None  # why there is no figure above idle, when there is none
    samples: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # per-window figures by name
    warnings: tuple[str, ...] = ()
    # the processes (replicates, of one run or several) pooled into these figures (`replicates`); () for one
    replicates: tuple[TaskStats, ...] = ()

    @property
    def processes(self) -> tuple[TaskStats, ...]:
        """The per-process stats behind these figures: the replicates, or this task alone."""
        return self.replicates or (self,)

    @property
    def ci_covers(self) -> str:
        """What this task's intervals cover (`covers`); over GPUs where its replicates ran on several."""
        return covers(self.processes, between_gpus=True)

    @property
    def spec(self) -> TaskSpec:
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
        """Windows measured, over every replicate."""
        return sum(len(p.result.windows) for p in self.processes)

    @property
    def inferences(self) -> int:
        return sum(w.inferences for p in self.processes for w in p.result.windows)

    @property
    def measured_s(self) -> float:
        return sum(w.duration_s for p in self.processes for w in p.result.windows)

    @property
    def total_energy_j(self) -> float | None:
        """Energy summed over all windows of every replicate (None when unavailable)."""
        if self.energy_note is not None:
            return None
        return sum(w.energy_j for p in self.processes for w in p.result.windows if w.energy_j is not None)

    def few(self) -> str | None:
        """Why the interval is very wide or absent: too few replicates where it is over replicates, too few
        windows where it is over one process's windows; None otherwise."""
        return few_replicates(len(self.replicates)) if self.replicates else few_windows(self.n_windows)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def gpu_key(stats: TaskStats) -> tuple[str, ...]:
    """The GPUs a process ran on (UUIDs; a gang's in rank order), or its node where none is recorded."""
    return tuple(g.uuid for g in stats.result.gpus) or (stats.result.node,)


def covers(processes: Sequence[TaskStats], between_gpus: bool = False) -> str:
    """What an interval over these processes covers: "3 windows, 1 process", or "3 replicates on 2 GPUs
    of 1 node, 3 windows each" (and "from 2 runs" where `report` pooled runs; with `between_gpus`, a
    task's own figures, "t over the 2 GPUs" (or nodes, without GPUs) where they pool over them, `gpu_key`)."""
    windows = sorted({p.n_windows for p in processes})
    if len(processes) == 1:
        return f"{_count(windows[0], 'window')}, 1 process"
    runs = len({p.spec.run_id for p in processes})
    nodes = len({p.result.node for p in processes})
    gpus = len({g.uuid for p in processes for g in p.result.gpus})
    where = f"{_count(gpus, 'GPU')} of {_count(nodes, 'node')}" if gpus else f"the CPUs of {_count(nodes, 'node')}"
    each = f"{windows[0]}" if len(windows) == 1 else f"{windows[0]}–{windows[-1]}"
    source = f" from {runs} runs" if runs > 1 else ""
    keys = {gpu_key(p) for p in processes}
    # what `gpu_key` groups by: the GPUs, or the nodes where no GPU is recorded
    over = f"; t over the {len(keys)} {'GPUs' if gpus else 'nodes'}" if between_gpus and len(keys) > 1 else ""
    return f"{len(processes)} replicates{source} on {where}, {each} windows each{over}"


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
    return workload(result.spec.workload).tokens_per_item


def _power(w: Window) -> float | None:
    if w.avg_power_w is not None:
        return w.avg_power_w
    if w.energy_j is not None and w.duration_s > 0:
        return w.energy_j / w.duration_s
    return None


def _put(out: dict[str, tuple[float, ...]], name: str, values: Sequence[float | None]) -> None:
    """Keep `values` under `name` if every window has one and it is positive (a figure that can be formed)."""
    vals = [v for v in values if v is not None and v > 0]
    if values and len(vals) == len(values):
        out[name] = tuple(float(v) for v in vals)


def window_figures(result: TaskResult) -> dict[str, tuple[float, ...]]:
    """Each figure of `result` per window, by name, where every window has it positive.

    Energy figures only where `energy_note` is None; figures above idle only where the idle
    power was measured and lies below every window's average power.
    """
    ws = [w for w in result.windows if w.duration_s > 0]
    out: dict[str, tuple[float, ...]] = {}
    _put(out, "inferences_per_s", [w.inferences / w.duration_s for w in ws])
    if energy_note(result) is not None:
        return out
    _put(out, "power_w", [_power(w) for w in ws])
    _put(out, "energy_j", [w.energy_j for w in ws])
    counted = all(w.inferences > 0 for w in ws)
    energy = out.get("energy_j")
    if energy is None:
        return out
    if counted:
        _put(out, "inferences_per_j", [w.inferences / j for w, j in zip(ws, energy)])
        _put(out, "j_per_inference", [j / w.inferences for w, j in zip(ws, energy)])
    if result.idle_power_w is not None:
        idle_w = result.idle_power_w
        _put(out, "energy_above_idle_j", [j - idle_w * w.duration_s for w, j in zip(ws, energy)])
        above = out.get("energy_above_idle_j")
        if above is not None and counted:
            _put(out, "inferences_per_j_above_idle", [w.inferences / a for w, a in zip(ws, above)])
            _put(out, "j_per_inference_above_idle", [a / w.inferences for w, a in zip(ws, above)])
    return out


def _above_idle_note(result: TaskResult, figures: Mapping[str, tuple[float, ...]]) -> str | None:
    """Why the task has no energy above idle (None when it has one)."""
    note = energy_note(result)
    if note is not None:
        return note
    if result.idle_power_w is None:
        return "idle power not measured"
    if "energy_j" in figures and "energy_above_idle_j" not in figures:
        return "energy above idle not positive (idle reading above the busy one)"
    return None


def task_stats(result: TaskResult) -> TaskStats:
    """Per-window figures of `result`, summarised with their 95 % intervals (geometric mean, log-scale t)."""
    figures = window_figures(result)

    def est(name: str) -> Estimate | None:
        values = figures.get(name)
        return log_mean_ci(values) if values else None

    per_inf, eff = est("j_per_inference"), est("inferences_per_j")
    total = result.params.total if result.params else None
    active = result.params.active_per_token if result.params else None
    tokens = tokens_per_item(result)
    return TaskStats(
        result=result, inferences_per_s=est("inferences_per_s"), power_w=est("power_w"), energy_j=est("energy_j"),
        inferences_per_j=eff, energy_above_idle_j=est("energy_above_idle_j"),
        inferences_per_j_above_idle=est("inferences_per_j_above_idle"), j_per_inference=per_inf,
        j_per_inference_above_idle=est("j_per_inference_above_idle"),
        j_per_inference_per_total_param=per_inf.scale(1.0 / total) if per_inf and total else None,
        j_per_inference_per_active_param=per_inf.scale(1.0 / active) if per_inf and active else None,
        j_per_token_per_active_param=per_inf.scale(1.0 / (tokens * active)) if per_inf and active else None,
        tokens_per_j=eff.scale(tokens) if eff else None,
        energy_note=energy_note(result), above_idle_note=_above_idle_note(result, figures), samples=figures,
        warnings=task_warnings(result))


def all_task_stats(results: Iterable[TaskResult]) -> list[TaskStats]:
    """Stats of every `ok` task, in the given order (failed tasks are reported apart)."""
    return [task_stats(r) for r in results if r.status == "ok"]
