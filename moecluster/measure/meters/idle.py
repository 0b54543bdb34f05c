"""Idle power, read once the GPU has settled, once per GPU per run.

Why: a GPU just after load draws more than a cold one (on an H100: 124 W cold, 148 W right after
15 s at full load, ~135 W 0.5-5 s later), so an idle reading taken straight after a window is
9-19 % high, and more often so for whichever model runs second. "Above idle" figures subtract
idle power, so a biased idle biases them. Here idle is read once the power has settled, and one
value serves every task of the run on that GPU.

Settling (`measure_settled`): the meter reads idle power in blocks of `block_s` (each an energy
counter window whose edges sit on counter updates, `EnergyMeter.idle_reading`) until the blocks
of the last `span_s` agree within `tolerance` of their mean (by default: within 2 % over 2 s), or
`timeout_s` (60 s) has passed. The idle power is then the mean of that last span (all its energy
over all its seconds); the reading records how long it waited (`settle_s`: from the start to the
start of the accepted span, 0 when the GPU was settled already), whether it settled, and a note.

Caching (`IdleCache`, `idle_for_run`): per (run id, GPU uuid), in this process and in a node-local
JSON file `<tempdir>/moecluster-idle/<run_id>/<uuid>.json`, written atomically (a temporary file
renamed over it), because several worker processes of one node run tasks of one run on the same
GPU (the head gives every pair a fresh process). A hit older than `max_age_s` is measured again.
The run id `local` (a `TaskSpec`'s default: every `moecluster bench` and every test) names no run
and is cached in process only. Each replicate of a run (`TaskSpec.replicate`) reads its own idle
(`idle_scope`): a replicate is an independent measurement, idle reading included.
`refresh=True` measures again whatever the cache holds.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tempfile
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from moecluster.measure.meters.energy import EnergyMeter, EnergyReading

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
LOCAL_RUN_ID = "local"  # TaskSpec's default run id: no run, so kept in process only
DIRECTORY_NAME = "moecluster-idle"


def idle_scope(run_id: str, replicate: int) -> str:
    """The cache key of one replicate's idle readings: the run id for replicate 1 (as before replicates
    existed), `<run id>.r<k>` for replicate k, so each replicate reads idle afresh."""
    return run_id if replicate <= 1 or run_id == LOCAL_RUN_ID else f"{run_id}.r{replicate}"


def check_run_id(run_id: str) -> str:
    """`run_id` if it is safe as a directory name (letters, digits, '_', '.', '-'; not '.' or '..')."""
    if not RUN_ID_PATTERN.fullmatch(run_id) or run_id in (".", ".."):
        raise ValueError(f"run id {run_id!r}: use letters, digits, '_', '.' and '-' only")
    return run_id


def _file_name(uuid: str) -> str:
    """A GPU uuid as a file name (MIG uuids may hold '/')."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", uuid) + ".json"


@dataclass(frozen=True)
class SettlePolicy:
    """When idle power counts as settled: blocks over the last `span_s` within `tolerance` of their mean."""

    tolerance: float = 0.02
    span_s: float = 2.0
    block_s: float = 0.5
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if not (0 < self.tolerance < 1 and 0 < self.block_s <= self.span_s and self.timeout_s > 0):
            raise ValueError(f"invalid settle policy {self}")

    @property
    def blocks(self) -> int:
        """Blocks in one span."""
        return max(2, math.ceil(self.span_s / self.block_s - 1e-9))


@dataclass(frozen=True)
class IdleReading:
    """The idle power of some GPUs and how it was obtained.

    `power_w` is None only where the meter could not read energy (then `note` says why);
    `settle_s`: seconds waited before the accepted span began; `spread`: (max - min) / mean of
    the span's block powers; `measured_at`: wall clock (time.time()) when it was read.
    """

    power_w: float | None
    settle_s: float | None
    settled: bool
    note: str
    spread: float | None = None
    measured_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IdleReading":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _span_power_w(span: list[EnergyReading]) -> float:
    energy = sum(r.energy_j or 0.0 for r in span)
    seconds = sum(r.duration_s for r in span)
    return energy / seconds if seconds > 0 else 0.0


def measure_settled(meter: EnergyMeter, policy: SettlePolicy = SettlePolicy()) -> IdleReading:
    """Read the idle power of `meter`'s GPUs once it has settled (see the module's docstring).

    Nothing may run on the GPUs meanwhile. Time is the meter's clock (and sleep), so a test with a
    fake clock runs this in no real time.
    """
    if meter.unavailable_reason:
        return IdleReading(None, None, False, f"idle not read: {meter.unavailable_reason}", measured_at=time.time())
    clock = meter.clock
    t_start = clock()
    span: deque[tuple[float, EnergyReading]] = deque(maxlen=policy.blocks)
    t_block = t_start
    while True:
        reading = meter.idle_reading(policy.block_s)
        if reading.energy_j is None or reading.avg_power_w is None:
            return IdleReading(None, None, False, f"idle not read: {reading.unavailable_reason}",
                               measured_at=time.time())
        span.append((t_block - t_start, reading))
        t_block = clock()
        if len(span) < policy.blocks:
            continue
        readings = [r for _, r in span]
        power_w = _span_power_w(readings)
        powers = [r.avg_power_w or 0.0 for r in readings]
        spread = (max(powers) - min(powers)) / power_w if power_w > 0 else math.inf
        seconds = sum(r.duration_s for r in readings)
        if spread <= policy.tolerance:
            settle_s = span[0][0]
            note = (f"settled after {settle_s:.1f} s: {len(powers)} blocks over {seconds:.1f} s within "
                    f"{100 * spread:.1f} % (tolerance {100 * policy.tolerance:g} %)")
            return IdleReading(power_w, settle_s, True, note, spread, time.time())
        elapsed = clock() - t_start
        if elapsed >= policy.timeout_s:
            note = (f"did not settle within {policy.timeout_s:g} s: the last {seconds:.1f} s varied "
                    f"{100 * spread:.1f} % (tolerance {100 * policy.tolerance:g} %); their mean is used")
            return IdleReading(power_w, elapsed, False, note, spread, time.time())


class IdleCache:
    """Settled idle readings per (run id, GPU uuid): in this process, and in node-local files.

    `directory` defaults to `<tempfile.gettempdir()>/moecluster-idle`; `policy` is how readings
    this cache's user measures are settled; entries older than `max_age_s` are not used. A
    directory that cannot be written leaves the entry in process only.
    """

    def __init__(self, directory: Path | None = None, *, policy: SettlePolicy = SettlePolicy(),
                 max_age_s: float = 12 * 3600.0, now: Callable[[], float] = time.time) -> None:
        self.directory = directory if directory is not None else Path(tempfile.gettempdir()) / DIRECTORY_NAME
        self.policy = policy
        self.max_age_s = max_age_s
        self._now = now
        self._memory: dict[tuple[str, str], IdleReading] = {}

    def path(self, run_id: str, uuid: str) -> Path:
        return self.directory / check_run_id(run_id) / _file_name(uuid)

    def age_s(self, reading: IdleReading) -> float:
        """Seconds since `reading` was measured, on this cache's wall clock."""
        return max(0.0, self._now() - reading.measured_at)

    def _fresh(self, reading: IdleReading) -> bool:
        return self.age_s(reading) <= self.max_age_s

    def get(self, run_id: str, uuid: str) -> IdleReading | None:
        """The cached reading of `uuid` in `run_id`, from this process or the node's file; None if none."""
        check_run_id(run_id)
        hit = self._memory.get((run_id, uuid))
        if hit is None and run_id != LOCAL_RUN_ID:
            hit = self._read(self.path(run_id, uuid), uuid)
        if hit is None or not self._fresh(hit):
            return None
        self._memory[(run_id, uuid)] = hit
        return hit

    def _read(self, path: Path, uuid: str) -> IdleReading | None:
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            if d.get("uuid") != uuid:
                return None
            reading = IdleReading.from_dict(d)
        except (OSError, ValueError, TypeError, AttributeError):
            return None  # absent, half-readable or foreign: measure again
        return reading if reading.power_w is not None else None

    def put(self, run_id: str, uuid: str, reading: IdleReading) -> None:
        """Keep `reading` for `uuid` in `run_id` (a reading without power is not kept)."""
        check_run_id(run_id)
        if reading.power_w is None:
            return
        self._memory[(run_id, uuid)] = reading
        if run_id == LOCAL_RUN_ID:
            return
        path = self.path(run_id, uuid)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump({**reading.to_dict(), "uuid": uuid, "pid": os.getpid()}, f)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass  # an unwritable temp directory: this process still has it


def _combine(readings: list[tuple[str, IdleReading]]) -> IdleReading:
    """One reading for several GPUs: powers summed, the longest settle, notes per GPU."""
    if len(readings) == 1:
        return readings[0][1]
    rs = [r for _, r in readings]
    powers = [r.power_w for r in rs]
    settles = [r.settle_s for r in rs if r.settle_s is not None]
    spreads = [r.spread for r in rs if r.spread is not None]
    return IdleReading(
        power_w=None if any(p is None for p in powers) else sum(p for p in powers if p is not None),
        settle_s=max(settles) if settles else None, settled=all(r.settled for r in rs),
        note="; ".join(f"{uuid}: {r.note}" for uuid, r in readings),
        spread=max(spreads) if spreads else None, measured_at=min(r.measured_at for r in rs))


def idle_for_run(meter: EnergyMeter, run_id: str, cache: IdleCache, *, refresh: bool = False) -> IdleReading | None:
    """The settled idle power of `meter`'s GPUs for `run_id`: cached, else measured now and cached.

    One value per GPU per run (summed over the meter's GPUs), so every task of a run on a GPU
    subtracts the same idle. Call it while nothing runs on the GPUs (the runner: before the task's
    first warm-up). `refresh=True` measures again. None where the meter cannot read energy.
    """
    if meter.unavailable_reason:
        return None
    check_run_id(run_id)
    out: list[tuple[str, IdleReading]] = []
    for gpu in meter.gpus:
        uuid = gpu.info.uuid
        hit = None if refresh else cache.get(run_id, uuid)
        if hit is not None:
            note = f"cached for run {run_id} ({cache.age_s(hit):.0f} s old): {hit.note}"
            out.append((uuid, replace(hit, note=note)))
            continue
        one = meter if len(meter.gpus) == 1 else meter.for_gpus([gpu])
        reading = measure_settled(one, cache.policy)
        cache.put(run_id, uuid, reading)
        out.append((uuid, reading))
    return _combine(out)
