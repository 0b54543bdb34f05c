"""Energy of a set of GPUs over a window of work: the hardware counter, read on its own updates.

`EnergyMeter.measure(work)` reads NVML's monotonic energy counter of every GPU the task owns at
the start and at the end of `work`. A background `PowerTrace` integrates instantaneous power
(trapezoids) over the same window: it gives average and maximum power, the cross-check of the
counter, and the energy itself on GPUs without a counter (labelled as such). With no GPU the
reading is unavailable, with the reason; it is never a zero. Samples that do not cover the whole
window (the trace's GPU read failed part-way, or its samples begin late or end early) give no
sampled energy and no maximum at all, with the reason, rather than the energy of part of it.

Why windows are aligned. The counter does not count continuously: it steps when the driver
updates it (about every 100 ms on an H100). A reading taken at an arbitrary moment is the value
of the latest update, up to one update period old, so each edge of a plain window is off by up
to one period of power: up to ~3 % of a 3 s window, ~10 % of a 1 s idle reading. So, with one
GPU and its counter, the meter (`Alignment`, on by default):

* measures the counter's update period once (`update_period_s()`: a few changes, polled);
* opens the window on an update: it polls the counter until its value changes and starts the
  window's clock, and the work, right there (the GPU is idle meanwhile: up to one period);
* closes the window on an update, in one of two ways:

  - `measure(work, keep_busy=...)` (what the runner does, the least biased): after `work` has
    finished (synchronised), `keep_busy(until)` runs more of the same work, uncounted, until
    `until()` says the counter has changed. The counter's span [opening update, closing update]
    then covers the same load throughout, and the window's energy is that span's average power
    times the work's own duration. Nothing of an idle tail enters; what is left is the time
    between the polls that bracket each update (`CounterEdge.uncertainty_s`) and the assumption
    that the extra work draws what the counted work drew (the same model, the same steady state).
  - `measure(work)` (opaque work, e.g. a gang whose ranks cannot run extra steps alone): after
    `work` it polls until the next update. The energy then includes the device's tail after the
    work (up to one period, at whatever the device draws once idle): subtracted nothing, but
    bounded in `energy_resolution_j` by the tail's length times the highest power seen.

`EnergyReading.energy_resolution_j` is the worst-case error left in `energy_j`, in joules: the edge
uncertainties times the power (and, without `keep_busy`, the tail bound), plus the counter's
quantum (NVML counts whole millijoules). Where the edges cannot be aligned (several GPUs, whose
counters update independently; a counter that did not change before `Alignment.timeout_s`; the
alignment switched off) the window is read the plain way, `aligned` is False, `note` says why,
and the resolution is one update period of the window's highest power (None if the period is
unknown). Polling never hangs: every wait ends at `timeout_s` on the meter's clock, and after a
bounded number of polls for a clock that does not move.

`min_window_s` turns an update period into the shortest window that stays within a tolerance even
unaligned, for the head to warn before a sweep starts.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from moecluster.devices import DeviceError, DeviceSet, Gpu, Unsupported
from moecluster.measure.meters.ticker import Ticker

SOURCE_COUNTER = "nvml-energy-counter"
SOURCE_SAMPLED = "nvml-sampled-power"
SOURCE_FAKE = "fake-power-model"
COUNTER_QUANTUM_J = {"nvml": 1e-3}  # NVML reports the counter in whole millijoules; fake counters are exact

T = TypeVar("T")
Until = Callable[[], bool]
KeepBusy = Callable[[Until], object]


def min_window_s(update_period_s: float, tolerance: float = 0.01) -> float:
    """The shortest window whose energy stays within `tolerance` (a fraction) even unaligned.

    Unaligned, a reading is off by at most one update period of power (the opening reading counts
    up to a period before the window, the closing one misses up to a period of it), so the relative
    error is at most update_period_s / duration_s. Aligned windows usually do far better and report
    their own bound (`EnergyReading.energy_resolution_j`); this is the guarantee to warn against
    before a sweep starts, e.g. 10 s for a 100 ms counter at 1 %.
    """
    if not math.isfinite(update_period_s) or update_period_s < 0:
        raise ValueError(f"update_period_s must be a finite number >= 0, not {update_period_s}")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be a fraction in (0, 1), not {tolerance}")
    return update_period_s / tolerance


@dataclass(frozen=True)
class Alignment:
    """How the meter places window edges on counter updates (see the module's docstring).

    `poll_s`: pause between polls while waiting for an update (the edge uncertainty is about
    this); `timeout_s`: the longest wait for one update; `period_changes`: counter changes
    observed to measure the update period; `max_busy_polls`: polls of one wait while `keep_busy`
    runs (no pause between them), a guard against a clock that does not move.
    """

    enabled: bool = True
    poll_s: float = 0.0005
    timeout_s: float = 1.0
    period_changes: int = 3
    max_busy_polls: int = 1_000_000

    def __post_init__(self) -> None:
        if self.poll_s <= 0 or self.timeout_s <= 0 or self.period_changes < 2 or self.max_busy_polls < 1:
            raise ValueError(f"invalid alignment {self}")

    @property
    def max_sleep_polls(self) -> int:
        """Polls of one paused wait: the timeout's worth, plus two."""
        return math.ceil(self.timeout_s / self.poll_s) + 2


@dataclass(frozen=True)
class CounterEdge:
    """An update of the energy counter seen by polling: it happened in (before_s, at_s] on the meter's clock."""

    before_s: float  # when the last poll that still saw the old value began
    at_s: float  # when the first poll that saw the new value returned
    energy_j: float  # the new value

    @property
    def uncertainty_s(self) -> float:
        return self.at_s - self.before_s


class CounterWatch:
    """Polls one counter for its next update; `changed()` polls once and says whether to stop.

    It stops on an update (then `edge` is set) or when the wait is over (`timeout_s` on `clock`,
    or `max_polls` polls), whichever comes first, so a caller's loop `while not watch.changed()`
    always ends.
    """

    def __init__(self, read: Callable[[], float], clock: Callable[[], float], timeout_s: float,
                 max_polls: int) -> None:
        self._read, self._clock = read, clock
        self._before_s = clock()
        self.value_j = read()
        self.read_at_s = clock()
        self._deadline_s = self.read_at_s + timeout_s
        self._polls_left = max_polls
        self.edge: CounterEdge | None = None
        self.done = False  # an update was seen, or the wait is over

    def changed(self) -> bool:
        if self.done:
            return True
        t_a = self._clock()
        value = self._read()
        t_b = self._clock()
        self._polls_left -= 1
        if value != self.value_j:
            self.edge = CounterEdge(before_s=self._before_s, at_s=t_b, energy_j=value)
            self.done = True
            return True
        self._before_s, self.read_at_s = t_a, t_b
        self.done = t_b >= self._deadline_s or self._polls_left <= 0
        return self.done


@dataclass(frozen=True)
class EnergyReading:
    """One window: `energy_j` is None exactly when `unavailable_reason` says why.

    `energy_resolution_j`: the worst-case error left in `energy_j` (None where unknown or not a
    counter's); `aligned`: both edges were placed on counter updates; `note`: why not, where they
    could have been; `update_period_s`: the counter's measured update period.
    """

    duration_s: float
    energy_j: float | None
    source: str | None
    unavailable_reason: str | None = None
    sampled_energy_j: float | None = None
    avg_power_w: float | None = None
    max_power_w: float | None = None
    samples: int = 0
    energy_resolution_j: float | None = None
    aligned: bool = False
    note: str | None = None
    update_period_s: float | None = None


class PowerTrace:
    """The summed instantaneous power of `gpus`, sampled every `interval_s` on a `Ticker`; every
    sample is kept, so the energy of any span inside the trace can be integrated afterwards."""

    def __init__(self, gpus: Sequence[Gpu], interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._gpus = list(gpus)
        self._interval_s = interval_s
        self._clock = clock
        self._ticker = Ticker(self._tick, interval_s, name="power-trace", clock=clock)
        self.times: list[float] = []
        self.power_w: list[float] = []
        self.error: str | None = None

    def _sample(self) -> None:
        total = sum(g.power_w() for g in self._gpus)
        self.times.append(self._clock())
        self.power_w.append(total)

    def _tick(self) -> bool:
        """One sample; False (the trace stops) at the first failed read, kept in `error`."""
        try:
            self._sample()
        except DeviceError as exc:
            self.error = str(exc)
            return False
        return True

    def start(self) -> None:
        if self._tick():  # the window's opening is covered before the thread runs
            self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()
        if self.error is None:
            self._tick()  # close the window with a final point

    def coverage_problem(self, start_s: float, end_s: float) -> str | None:
        """Why the samples do not stand for all of [start_s, end_s] (None: they do).

        A failed read (the trace stops at the first) leaves the rest of the window unsampled, so
        any failure counts; otherwise the samples must reach each edge within one interval.
        """
        if len(self.times) < 2:
            return f"too few power samples ({self.error})" if self.error else "too few power samples"
        first, last = self.times[0], self.times[-1]
        covered = max(0.0, min(end_s, last) - max(start_s, first))
        share = f"{100 * covered / (end_s - start_s):.0f} %" if end_s > start_s else "none"
        if self.error:
            return f"power sampling failed part-way ({self.error}): the samples cover {share} of the window"
        if first > start_s + self._interval_s or last < end_s - self._interval_s:
            return f"the power samples cover only {share} of the window"
        return None

    def _power_at(self, t: float) -> float:
        """Power at `t` within the samples' span, linear between samples."""
        for i in range(len(self.times) - 1):
            t_a, t_b = self.times[i], self.times[i + 1]
            if t_a <= t <= t_b:
                if t_b == t_a:
                    return self.power_w[i + 1]
                return self.power_w[i] + (self.power_w[i + 1] - self.power_w[i]) * (t - t_a) / (t_b - t_a)
        return self.power_w[-1] if t > self.times[-1] else self.power_w[0]

    def _span(self, start_s: float | None, end_s: float | None) -> tuple[float, float] | None:
        if len(self.times) < 2:
            return None
        a = self.times[0] if start_s is None else max(start_s, self.times[0])
        b = self.times[-1] if end_s is None else min(end_s, self.times[-1])
        return (a, b) if b > a else None

    def energy_j(self, start_s: float | None = None, end_s: float | None = None) -> float | None:
        """Trapezoid integral of the samples, optionally clipped to [start_s, end_s] (trace clock)."""
        span = self._span(start_s, end_s)
        if span is None:
            return None
        a, b = span
        points = [(a, self._power_at(a))]
        points += [(t, w) for t, w in zip(self.times, self.power_w) if a < t < b]
        points.append((b, self._power_at(b)))
        return sum((w0 + w1) / 2 * (t1 - t0) for (t0, w0), (t1, w1) in zip(points, points[1:]))

    def avg_power_w(self, start_s: float | None = None, end_s: float | None = None) -> float | None:
        span = self._span(start_s, end_s)
        e = self.energy_j(start_s, end_s)
        return e / (span[1] - span[0]) if e is not None and span is not None else None

    def max_power_w(self, start_s: float | None = None, end_s: float | None = None) -> float | None:
        """Highest sample in [start_s, end_s] (all samples without bounds; None without samples)."""
        lo = -math.inf if start_s is None else start_s
        hi = math.inf if end_s is None else end_s
        inside = [w for t, w in zip(self.times, self.power_w) if lo <= t <= hi]
        return max(inside) if inside else (max(self.power_w) if self.power_w else None)


@dataclass(frozen=True)
class _Closing:
    """How a window ended: the counter's value and clock at its end, and what that leaves uncertain."""

    t_s: float
    energy_j: float
    aligned: bool
    edge_uncertainty_s: float = 0.0  # of the closing update
    busy: bool = False  # the work's load ran on until the closing update (keep_busy)
    note: str | None = None


class EnergyMeter:
    """Measures the energy of `gpus` (all from `devices`) over windows of work.

    `clock` and `sleep` are injectable (tests drive a fake clock); `alignment` says how window
    edges are placed on counter updates (see the module's docstring; `Alignment(enabled=False)`
    reads plain windows).
    """

    def __init__(self, devices: DeviceSet, gpus: Sequence[Gpu], *, sample_interval_s: float | None = 0.1,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 alignment: Alignment = Alignment()) -> None:
        self.devices = devices
        self.gpus = list(gpus)
        self.sample_interval_s = sample_interval_s
        self.clock = clock
        self.sleep = sleep
        self.alignment = alignment
        self.unavailable_reason = devices.unavailable_reason or (None if self.gpus else "no GPU assigned to the task")
        self._has_counter = self._probe_counter()
        self._period_measured = False
        self._period_s: float | None = None
        self._period_note: str | None = None
        self._fresh_edge: CounterEdge | None = None  # the period measurement's last update, for the next window

    def _probe_counter(self) -> bool:
        if self.unavailable_reason:
            return False
        try:
            for g in self.gpus:
                g.energy_j()
            return True
        except Unsupported:
            return False

    def for_gpus(self, gpus: Sequence[Gpu]) -> "EnergyMeter":
        """A meter like this one over other GPUs of the same device set (e.g. one GPU of several)."""
        return EnergyMeter(self.devices, gpus, sample_interval_s=self.sample_interval_s, clock=self.clock,
                           sleep=self.sleep, alignment=self.alignment)

    @property
    def source(self) -> str | None:
        if self.unavailable_reason:
            return None
        if self.devices.kind == "fake":
            return SOURCE_FAKE
        return SOURCE_COUNTER if self._has_counter else SOURCE_SAMPLED

    @property
    def quantum_j(self) -> float:
        """The counters' step in joules, summed over the GPUs (one reading's truncation, at most)."""
        return COUNTER_QUANTUM_J.get(self.devices.kind, 0.0) * len(self.gpus)

    def _counter_j(self) -> float:
        return sum(g.energy_j() for g in self.gpus)

    def _watch(self, read: Callable[[], float], max_polls: int) -> CounterWatch:
        return CounterWatch(read, self.clock, self.alignment.timeout_s, max_polls)

    def _next_edge(self, read: Callable[[], float]) -> CounterEdge | None:
        """Poll `read` (pausing `poll_s`) until it changes; None if it did not within the timeout."""
        watch = self._watch(read, self.alignment.max_sleep_polls)
        while not watch.changed():
            self.sleep(self.alignment.poll_s)
        return watch.edge

    def update_period_s(self) -> float | None:
        """The counter's update period, measured once per meter from a few changes (None if unknown).

        The median interval between `Alignment.period_changes` successive changes of the first GPU's
        counter (all GPUs of a node are alike). None, with the reason kept for notes, when the meter
        has no counter or the counter did not change within the timeout.
        """
        if self._period_measured:
            return self._period_s
        self._period_measured = True
        if not self._has_counter:
            self._period_note = "no energy counter"
            return None
        read = self.gpus[0].energy_j
        edges: list[CounterEdge] = []
        for _ in range(self.alignment.period_changes + 1):
            edge = self._next_edge(read)
            if edge is None:
                break
            edges.append(edge)
        if len(edges) < 2:
            self._period_note = f"the energy counter did not change within {self.alignment.timeout_s:g} s"
            return None
        self._period_s = statistics.median(b.at_s - a.at_s for a, b in zip(edges, edges[1:]))
        if len(self.gpus) == 1:
            self._fresh_edge = edges[-1]
        return self._period_s

    def _why_unaligned(self) -> str | None:
        """Why this meter's windows cannot be aligned (None: they can; '': alignment is switched off)."""
        if not self.alignment.enabled or not self._has_counter:
            return ""
        if len(self.gpus) != 1:
            return f"edges not aligned: the {len(self.gpus)} GPUs' counters update independently"
        if self._period_s is None:
            return f"edges not aligned: {self._period_note}"
        return None

    def _opening_edge(self) -> tuple[CounterEdge | None, str | None]:
        """The update that opens a window (polled now), or None and why not (None if by choice)."""
        self.update_period_s()  # once per meter, aligned or not: the resolution of plain windows needs it
        why = self._why_unaligned()
        if why is not None:
            return None, why or None
        edge, self._fresh_edge = self._fresh_edge, None
        if edge is not None and self.clock() - edge.at_s <= self.alignment.poll_s:
            return edge, None  # the period measurement just saw one: no need to wait a period more
        edge = self._next_edge(self._counter_j)
        if edge is None:
            return None, f"edges not aligned: no counter update within {self.alignment.timeout_s:g} s"
        return edge, None

    def _close(self, keep_busy: KeepBusy | None) -> _Closing:
        """Wait, after the work has ended, for the counter update that closes an aligned window."""
        busy = False
        if keep_busy is not None:
            watch = self._watch(self._counter_j, self.alignment.max_busy_polls)
            keep_busy(watch.changed)
            busy = watch.done  # False: it stopped before the update, so the device idles into the span
        else:
            watch = self._watch(self._counter_j, self.alignment.max_sleep_polls)
        while not watch.changed():  # no keep_busy, or one that stopped early: wait idle for the update
            self.sleep(self.alignment.poll_s)
        if watch.edge is None:
            return _Closing(t_s=watch.read_at_s, energy_j=watch.value_j, aligned=False,
                            note=f"closing edge not aligned: no counter update within {self.alignment.timeout_s:g} s")
        return _Closing(t_s=watch.edge.at_s, energy_j=watch.edge.energy_j, aligned=True,
                        edge_uncertainty_s=watch.edge.uncertainty_s, busy=busy)

    def measure(self, work: Callable[[], T], *, keep_busy: KeepBusy | None = None) -> tuple[T, EnergyReading]:
        """Run `work()` in one window and return its result with the window's energy.

        `work` must end with the device idle (synchronise inside it). `keep_busy(until)`, if given,
        must run more of the same work, uncounted and without host syncs, until `until()` returns
        True, then synchronise: the window then closes on a counter update with no idle tail (see the
        module's docstring); without it the closing update's tail is bounded, not removed. In a gang,
        `keep_busy` must not run collectives that other ranks would not join.
        """
        return self._measure(work, keep_busy, sample=True)

    def _measure(self, work: Callable[[], T], keep_busy: KeepBusy | None, *, sample: bool) -> tuple[T, EnergyReading]:
        if self.unavailable_reason:
            t0 = self.clock()
            out = work()
            return out, EnergyReading(self.clock() - t0, None, None, self.unavailable_reason)
        interval = self.sample_interval_s if sample else None
        interval = interval or (None if self._has_counter else 0.1)
        trace = PowerTrace(self.gpus, interval, self.clock) if interval else None
        if trace:
            trace.start()
        try:
            opening, note = self._opening_edge() if self._has_counter else (None, None)
            if opening is not None:
                e0: float | None = opening.energy_j
                t0 = opening.at_s
            else:
                e0 = self._counter_j() if self._has_counter else None
                t0 = self.clock()
            out = work()
            t_work = self.clock()
        finally:
            if trace:
                trace.stop()
        closing: _Closing | None = None
        if e0 is not None:
            if opening is not None:
                closing = self._close(keep_busy)
            else:
                closing = _Closing(t_s=t_work, energy_j=self._counter_j(), aligned=False)
        return out, self._reading(t0, t_work, e0, closing, opening, note, trace)

    def _reading(self, t0: float, t_work: float, e0: float | None, closing: _Closing | None,
                 opening: CounterEdge | None, note: str | None, trace: PowerTrace | None) -> EnergyReading:
        duration = t_work - t0
        gap = trace.coverage_problem(t0, t_work) if trace else None
        sampled = trace.energy_j(t0, t_work) if trace and gap is None else None
        max_w = trace.max_power_w(t0, t_work) if trace and gap is None else None
        energy: float | None
        resolution: float | None = None
        aligned = False
        if e0 is not None and closing is not None:
            counted = closing.energy_j - e0
            span = closing.t_s - t0
            if closing.aligned and opening is not None and span > 0:
                aligned = True
                edges_s = opening.uncertainty_s + closing.edge_uncertainty_s
                if closing.busy:  # keep_busy: the work's share of a span under one load
                    energy = counted * duration / span
                    resolution = energy * edges_s / span + self.quantum_j * duration / span
                else:  # idle tail inside: bounded by its length at the highest power seen
                    power_w = counted / span
                    tail_w = max(power_w, max_w or 0.0)
                    energy = counted
                    resolution = opening.uncertainty_s * power_w + (closing.t_s - t_work) * tail_w + self.quantum_j
            else:
                energy = counted
                note = note or closing.note
                period = self._period_s
                if period is not None:
                    peak_w = max(counted / duration if duration > 0 else 0.0, max_w or 0.0)
                    resolution = period * peak_w + self.quantum_j
        else:
            energy = sampled
        reason = None
        if energy is None:
            reason = gap or "too few power samples"
        elif gap is not None:  # the counter's energy stands; the samples' cross-check and maximum do not
            note = "; ".join(filter(None, (note, f"sampled power left out: {gap}")))
        return EnergyReading(
            duration_s=duration, energy_j=energy, source=self.source if energy is not None else None,
            unavailable_reason=reason, sampled_energy_j=sampled,
            avg_power_w=(energy / duration if energy is not None and duration > 0 else None),
            max_power_w=max_w, samples=len(trace.times) if trace else 0,
            energy_resolution_j=resolution, aligned=aligned, note=note, update_period_s=self._period_s)

    def idle_reading(self, duration_s: float = 1.0) -> EnergyReading:
        """The GPUs' energy over `duration_s` (or a little more) with nothing running on them.

        Both edges sit on counter updates where they can (the device idles until the closing one),
        so the average power is that of whole counter periods. No trace thread where a counter
        exists. Use before any work of the task, or after the device has settled (`measure.meters.idle`).
        """
        def idle_until(until: Until) -> None:
            while not until():
                self.sleep(self.alignment.poll_s)

        _, reading = self._measure(lambda: self.sleep(duration_s), idle_until, sample=False)
        return reading

    def idle_power_w(self, duration_s: float = 1.0) -> float | None:
        """Average power of the task's GPUs while nothing runs on them (see `idle_reading`)."""
        if self.unavailable_reason:
            return None
        return self.idle_reading(duration_s).avg_power_w
