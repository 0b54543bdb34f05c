"""Per-rank readings of a gang into one record: windows, phases, idle power (pure functions).

A gang's window is one interval on every rank (barriers at both ends, the same steps on every
rank), each rank's GPU metered by its own meter. So the gang's energy is the sum of the ranks'
energies, kept per GPU beside it (`Window.gpu_energy_j`, in rank order, the order of the gang's
GPUs); it is unavailable as soon as one rank lacks it, with that rank's reason. The duration is
the longest rank's (each rank's window spans the common interval plus its own edge placement),
so a rate is never overstated. The gang's average power is the sum of the ranks' averages. Its
highest power is left unset: the maximum of a sum of GPUs' powers was not measured, and the sum
of their separate maxima would overstate it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from moecluster.measure.meters.energy import EnergyReading
from moecluster.measure.meters.idle import IdleReading
from moecluster.spec.records import PhaseStat, Window
from moecluster.measure.parallel.phases import PhaseSample


@dataclass(frozen=True)
class RankWindow:
    """One rank's part of a gang window: the steps it ran, when it began (time.time()), its meter's reading."""

    rank: int
    steps: int
    started_at: float
    reading: EnergyReading


def sum_all(values: Sequence[float | None]) -> float | None:
    """The sum, or None if any value is missing (a partial sum is not the gang's)."""
    present = [v for v in values if v is not None]
    return sum(present) if values and len(present) == len(values) else None


def merge_window(parts: Sequence[RankWindow], items_per_step: int, position: int | None = None) -> Window:
    """The gang's window from every rank's part (rank order); a ValueError if the ranks' steps differ."""
    if not parts:
        raise ValueError("no rank's window to merge")
    steps = {p.steps for p in parts}
    if len(steps) != 1:
        raise ValueError(f"ranks ran different step counts in one window: {[p.steps for p in parts]}")
    readings = [p.reading for p in parts]
    energy = sum_all([r.energy_j for r in readings])
    return Window(
        inferences=steps.pop() * items_per_step, duration_s=max(r.duration_s for r in readings), energy_j=energy,
        sampled_energy_j=sum_all([r.sampled_energy_j for r in readings]),
        avg_power_w=sum_all([r.avg_power_w for r in readings]), max_power_w=None,
        started_at=min(p.started_at for p in parts),
        energy_resolution_j=sum_all([r.energy_resolution_j for r in readings]) if energy is not None else None,
        aligned=all(r.aligned for r in readings), position=position,
        gpu_energy_j=tuple(r.energy_j for r in readings if r.energy_j is not None) if energy is not None else ())


def energy_source(parts: Sequence[RankWindow]) -> tuple[str | None, str | None]:
    """(source, None) when every rank measured energy from the same source, else (None, why not)."""
    missing = [(p.rank, p.reading.unavailable_reason or "no energy reading") for p in parts
               if p.reading.energy_j is None]
    if missing:
        reasons = {why for _, why in missing}
        if len(missing) == len(parts) and len(reasons) == 1:
            return None, reasons.pop()
        return None, "; ".join(f"rank {rank}: {why}" for rank, why in missing)
    sources = sorted({p.reading.source or "" for p in parts})
    if len(sources) != 1:
        return None, f"ranks measured energy from different sources: {sources}"
    return sources[0] or None, None


def window_notes(parts: Sequence[RankWindow]) -> list[str]:
    """The ranks' meter notes (e.g. why an edge was not aligned), each named by its rank."""
    return [f"rank {p.rank}: {p.reading.note}" for p in parts if p.reading.note]


def merge_phases(per_rank: Sequence[Mapping[str, PhaseSample]], order: Sequence[str]) -> tuple[PhaseStat, ...]:
    """One `PhaseStat` per phase in `order`: time as the mean and the max over ranks, bytes summed over ranks."""
    out: list[PhaseStat] = []
    for name in order:
        samples = [r[name] for r in per_rank if name in r]
        if len(samples) != len(per_rank) or not samples:
            continue
        times = [s.time_s for s in samples]
        out.append(PhaseStat(name=name, time_s=sum(times) / len(times), time_max_s=max(times),
                             bytes_sent=float(sum(s.bytes_sent for s in samples))))
    return tuple(out)


def merge_idle(per_rank: Sequence[IdleReading | None]) -> IdleReading | None:
    """The gang's idle: powers summed (None if a rank has none), the longest settle, notes by rank."""
    if not per_rank or all(r is None for r in per_rank):
        return None
    readings = [r for r in per_rank if r is not None]
    powers = [r.power_w for r in per_rank if r is not None]
    settles = [r.settle_s for r in readings if r.settle_s is not None]
    spreads = [r.spread for r in readings if r.spread is not None]
    complete = len(readings) == len(per_rank)
    note = "; ".join(f"rank {i}: {r.note}" if r is not None else f"rank {i}: no idle reading"
                     for i, r in enumerate(per_rank))
    return IdleReading(power_w=sum_all(powers) if complete else None, settle_s=max(settles) if settles else None,
                       settled=complete and all(r.settled for r in readings), note=note,
                       spread=max(spreads) if spreads else None, measured_at=min(r.measured_at for r in readings))
