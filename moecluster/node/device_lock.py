"""Device locks on a node: two runs never measure on one device at the same time.

Two `moecluster submit`s on one machine each start a Ray instance that owns, as it believes, all
the machine's GPUs and CPUs; nothing in Ray stops both from placing a pair on one GPU, or from
running twice the pairs the cores can carry. Every pair (and every rank of a gang) therefore holds
its devices, node-locally, for the whole time it measures:

- a GPU, by its UUID: an exclusive `fcntl.flock` on `<lock dir>/<uuid>.lock`;
- the CPU (a task with `device: cpu`): the CPU is one device shared by the tasks of one run (the
  user sized that run's slots) but never by two runs. Each run holds a shared lock on its own
  file, `cpu.run-<run>.lock`; a task may take it only while no other run's file is held, checked
  under a short exclusive `cpu.guard` lock. A run that has waited goes first: it leaves a
  `cpu.wait-<run>` marker, and a run arriving later waits behind every earlier waiter, so a long
  run whose pairs overlap cannot starve a second one.

A task that finds its device busy polls every `POLL_S` until it is free, up to `wait_s`
(`$MOECLUSTER_DEVICE_WAIT_S`, default 300 s: below the head's watchdog slack), logging once whom it
waits for; then `DeviceBusy` names the device and its holder. The claim says how the task got its
devices (`exclusive`: at once; `waited`: after waiting for another run, how long in `wait_s`;
`unlocked`: the lock directory was unusable, so another run may have shared the device) and every
result records it (`TaskResult.device_access`, `device_wait_s`).

The locks live in `$MOECLUSTER_LOCK_DIR`, else `/tmp/moecluster-<uid>/locks`, created 0700 and
refused where another user could write it (`node.private_dir`). flock locks belong to the open
file: a process that dies releases them at once, so no stale lock outlives its task. The locks
exclude the runs of one user (or of all users sharing one lock directory through the variable).
"""
from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from moecluster.node.private_dir import UnsafeDirectory, private_dir
from moecluster.spec.records import TaskResult, TaskSpec

LOCK_DIR_ENV = "MOECLUSTER_LOCK_DIR"
WAIT_ENV = "MOECLUSTER_DEVICE_WAIT_S"
DEFAULT_WAIT_S = 300.0
POLL_S = 0.2
CPU = "cpu"
Access = Literal["exclusive", "waited", "unlocked"]
log = logging.getLogger(__name__)


class DeviceBusy(RuntimeError):
    """A device stayed held by another run for the whole wait; one line naming it and its holder."""


@dataclass(frozen=True)
class DeviceClaim:
    """How a task got its devices: `access`, how long it waited, and a note for its results."""

    devices: tuple[str, ...]
    access: Access
    wait_s: float = 0.0
    note: str | None = None

    def stamp(self, results: Sequence[TaskResult]) -> list[TaskResult]:
        """`results` recording this claim (`device_access`, `device_wait_s`, the note as a warning)."""
        return [replace(r, device_access=self.access, device_wait_s=self.wait_s,
                        warnings=(*r.warnings, self.note) if self.note else r.warnings) for r in results]


def default_lock_dir() -> Path:
    """`$MOECLUSTER_LOCK_DIR`, else `/tmp/moecluster-<uid>/locks` (beside the task labels)."""
    env = os.environ.get(LOCK_DIR_ENV)
    return Path(env) if env else Path(tempfile.gettempdir()) / f"moecluster-{os.getuid()}" / "locks"


def wait_limit_s() -> float:
    """The longest wait for a busy device: `$MOECLUSTER_DEVICE_WAIT_S`, else `DEFAULT_WAIT_S`."""
    text = os.environ.get(WAIT_ENV)
    if not text:
        return DEFAULT_WAIT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{WAIT_ENV}={text!r}: expected seconds, a finite number >= 0")
    return value


def task_devices(device: str) -> list[str]:
    """The devices a task on `device` measures on: the UUID of the current CUDA device (the one the
    runner uses; Ray shows a task only its own), or the CPU. Empty where CUDA is asked for but
    absent (the runner then fails the task with its own error)."""
    if device != "cuda":
        return [CPU]
    import torch

    from moecluster.devices.cuda import cuda_uuid

    if not torch.cuda.is_available():
        return []
    return [cuda_uuid(torch.device("cuda", torch.cuda.current_device()))]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:200]


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _write_info(fd: int, info: dict[str, object]) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


def _read_info(path: Path) -> dict[str, object]:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _who(info: dict[str, object]) -> str:
    """"run r1 (pair p3, pid 412 on gpu-01)" from a lock file's holder record."""
    if not info:
        return "another run"
    run, holder, pid, host = (info.get(k, "?") for k in ("run", "holder", "pid", "host"))
    return f"run {run} ({holder}, pid {pid} on {host})"


class _Locks:
    """The lock files of one claim and the attempts to take them (one per `try_take`)."""

    def __init__(self, directory: Path, devices: Sequence[str], run_id: str, holder: str) -> None:
        self.dir = directory
        self.gpus = sorted(d for d in devices if d != CPU)
        self.cpu = CPU in devices
        self.run = _safe(run_id)
        self.info: dict[str, object] = {"run": run_id, "holder": holder, "pid": os.getpid(),
                                        "host": socket.gethostname(), "since": time.time()}
        self.held = ExitStack()
        self._waiting: int | None = None  # fd of this task's cpu.wait marker while it waits

    def try_take(self) -> list[str]:
        """Take every lock, or none: [] when taken, else who holds what is busy."""
        attempt = ExitStack()
        busy: list[str] = []
        for device in self.gpus:
            path = self.dir / f"{_safe(device)}.lock"
            fd = _open(path)
            attempt.callback(os.close, fd)
            if not _try_lock(fd, fcntl.LOCK_EX):
                busy.append(f"{device} is held by {_who(_read_info(path))}")
                break
            _write_info(fd, self.info)
            attempt.callback(os.ftruncate, fd, 0)  # released: no holder left on record
        if not busy and self.cpu:
            busy = self._take_cpu(attempt)
        if busy:
            attempt.close()
        else:
            self.held.push(attempt.pop_all())
        return busy

    def _take_cpu(self, attempt: ExitStack) -> list[str]:
        guard = _open(self.dir / "cpu.guard")
        try:
            fcntl.flock(guard, fcntl.LOCK_EX)  # held for a few file operations only
            busy = [f"cpu is used by {_who(info)}" for info in self._other_runs("run", since=None)]
            mine = self._wait_since()
            busy += [f"cpu is awaited first by {_who(info)}" for info in self._other_runs("wait", since=mine)]
            if busy:
                self._mark_waiting()
                return busy
            fd = _open(self.dir / f"cpu.run-{self.run}.lock")
            attempt.callback(os.close, fd)
            if _try_lock(fd, fcntl.LOCK_EX):  # the run's first task here: it records the run
                _write_info(fd, self.info)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._stop_waiting()
            return []
        finally:
            os.close(guard)

    def _other_runs(self, kind: str, since: float | None) -> list[dict[str, object]]:
        """Holder records of the other runs' `cpu.<kind>-*` files that are held (a waiter only
        where it began waiting before `since`); files no one holds are removed."""
        out = []
        for path in sorted(self.dir.glob(f"cpu.{kind}-*")):
            if path.name in (f"cpu.{kind}-{self.run}.lock", f"cpu.{kind}-{self.run}"):
                continue
            fd = _open(path)
            try:
                if _try_lock(fd, fcntl.LOCK_EX):
                    path.unlink(missing_ok=True)  # left by a process that is gone (under the guard: safe)
                    continue
                info = _read_info(path)
                began = info.get("since")
                if since is None or (isinstance(began, (int, float)) and began < since):
                    out.append(info)
            finally:
                os.close(fd)
        return out

    def _wait_since(self) -> float:
        """When this run began waiting for the CPU (now, where it does not wait yet)."""
        began = _read_info(self.dir / f"cpu.wait-{self.run}").get("since") if self._waiting is not None else None
        return float(began) if isinstance(began, (int, float)) else time.time()

    def _mark_waiting(self) -> None:
        if self._waiting is not None:
            return
        fd = _open(self.dir / f"cpu.wait-{self.run}")
        if _try_lock(fd, fcntl.LOCK_EX):  # the run's first waiter: it says since when the run waits
            _write_info(fd, {**self.info, "since": time.time()})
        fcntl.flock(fd, fcntl.LOCK_SH)
        self._waiting = fd

    def _stop_waiting(self) -> None:
        if self._waiting is not None:
            os.close(self._waiting)
            self._waiting = None

    def release(self) -> None:
        self._stop_waiting()
        self.held.close()


def _acquire(locks: _Locks, wanted: Sequence[str], holder: str, wait_s: float, poll_s: float,
             clock: Callable[[], float], sleep: Callable[[float], None]) -> float | None:
    """Take `locks`, polling while busy; seconds waited (None: not at all). DeviceBusy after `wait_s`."""
    start = clock()
    busy = locks.try_take()
    if not busy:
        return None
    log.warning("%s waits for its devices: %s", holder, "; ".join(busy))
    while busy:
        if clock() - start >= wait_s:
            raise DeviceBusy(f"{', '.join(wanted)} still busy after {wait_s:g} s: {'; '.join(busy)}; let that"
                             f" run finish (moecluster submit --resume runs this pair again) or raise {WAIT_ENV}")
        sleep(poll_s)
        busy = locks.try_take()
    return clock() - start


@contextmanager
def hold_devices(devices: Sequence[str], *, run_id: str, holder: str, lock_dir: Path | None = None,
                 wait_s: float | None = None, poll_s: float = POLL_S,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> Iterator[DeviceClaim]:
    """Hold `devices` (GPU UUIDs and/or `CPU`) for the block, waiting up to `wait_s` for another
    run to release them; DeviceBusy (one line) if it does not. Yields how they were got: where the
    lock directory or its files are unusable, `unlocked` with the reason (the task still runs)."""
    wanted = tuple(dict.fromkeys(devices))
    wait_s = wait_limit_s() if wait_s is None else wait_s
    locks: _Locks | None = None
    problem = None
    try:
        directory = private_dir(default_lock_dir() if lock_dir is None else lock_dir, what="device lock directory")
        locks = _Locks(directory, wanted, run_id, holder)
        waited = _acquire(locks, wanted, holder, wait_s, poll_s, clock, sleep)
    except (UnsafeDirectory, OSError) as exc:
        problem = f"devices not locked ({exc}): another run may have measured on them at the same time"
    except DeviceBusy:
        if locks is not None:
            locks.release()  # its wait marker
        raise
    try:
        if problem is not None:
            log.warning("%s: %s", holder, problem)
            yield DeviceClaim(wanted, "unlocked", note=problem)
        elif waited is not None:
            note = f"waited {waited:.1f} s for {', '.join(wanted)}, used by another run"
            log.warning("%s %s", holder, note)
            yield DeviceClaim(wanted, "waited", waited, note)
        else:
            yield DeviceClaim(wanted, "exclusive")
    finally:
        if locks is not None:
            locks.release()


def run_holding_devices(specs: Sequence[TaskSpec], run: Callable[[], list[TaskResult]], *, node: str,
                        raise_busy: bool = False, run_id: str | None = None) -> list[TaskResult]:
    """`run()` while holding the devices `specs` measure on; its results record how they were got.
    The holder is the specs' run (`run_id` names another, e.g. one `moecluster bench` process).

    A device still busy after the wait fails every spec (a failure is data: the head stores it and
    `--resume` runs it again), or raises DeviceBusy with `raise_busy` (a gang's rank: the gang
    fails as one). An unreadable `$MOECLUSTER_DEVICE_WAIT_S` fails every spec the same way.
    """
    spec = specs[0]
    started = time.time()

    def failed(exc: Exception, access: str) -> list[TaskResult]:
        if raise_busy:
            raise exc
        return [TaskResult(spec=s, status="failed", error=f"{type(exc).__name__}: {exc}", node=node,
                           started_at=started, finished_at=time.time(), device_access=access,
                           device_wait_s=time.time() - started) for s in specs]

    try:
        wait_s = wait_limit_s()
    except ValueError as exc:
        return failed(exc, "")
    try:
        with hold_devices(task_devices(spec.device), run_id=run_id or spec.run_id, holder=f"pair {spec.pair_id}",
                          wait_s=wait_s) as claim:
            results = run()
    except DeviceBusy as exc:
        return failed(exc, "waited")
    return claim.stamp(results)
