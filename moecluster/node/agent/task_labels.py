"""How a running task tells its node's agent what it is: one small JSON file per GPU.

Mechanism, and why: the task (through `FileTaskObserver`, the runner's observer) writes
`<state_dir>/<gpu-uuid>.json` atomically (write a temporary file, then `os.replace`), and
rewrites it with its completed-inference count on every progress call; the agent reads the
directory on each scrape. A file is local, needs no port, no protocol and no running agent
(a task never waits for or fails because of the agent), survives an agent restart, and is
inspectable with `cat`. Rename makes every read see a whole file. A task that dies without
cleaning up leaves a file whose PID is dead, which the reader ignores; where the agent cannot
see the task's PIDs (another PID namespace, e.g. a container), a file not rewritten for
`STALE_AFTER_S` is ignored instead.

The state directory is `$MOECLUSTER_STATE_DIR`, else `/tmp/moecluster-<uid>/tasks`: the
agent and the tasks must agree on it (same user, or the variable set for both). It is created
`0700` and refused where another user owns it or others may write it (`state_dir`): the agent
then does not start, and a task publishes no labels (one warning) but runs.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from moecluster.node.private_dir import private_dir

if TYPE_CHECKING:
    from moecluster.devices import GpuInfo
    from moecluster.spec.records import TaskResult, TaskSpec

ENV_VAR = "MOECLUSTER_STATE_DIR"
STALE_AFTER_S = 120.0
FORMAT_VERSION = 1
log = logging.getLogger(__name__)


def default_state_dir() -> Path:
    """`$MOECLUSTER_STATE_DIR`, else `/tmp/moecluster-<uid>/tasks` (per user, so not shared)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"moecluster-{os.getuid()}" / "tasks"


def state_dir(path: Path | None = None) -> Path:
    """The state directory (`path`, else the default), created 0700 where missing; UnsafeDirectory
    (one line) where another user owns it or others may write it (see `node.private_dir`)."""
    return private_dir(default_state_dir() if path is None else path, what="task-label state directory")


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


@dataclass(frozen=True)
class TaskLabel:
    """One task's claim on one GPU, as written by the task and read by the agent."""

    uuid: str
    gpu: int
    run: str
    task: str
    pair: str
    kind: str
    impl: str
    preset: str
    inferences_total: int
    pid: int
    pid_ns: str | None
    started_at: float
    updated_at: float

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> "TaskLabel":
        return cls(
            uuid=str(d["uuid"]), gpu=int(d["gpu"]), run=str(d["run"]), task=str(d["task"]),  # type: ignore[call-overload]
            pair=str(d["pair"]), kind=str(d["kind"]), impl=str(d["impl"]), preset=str(d.get("preset") or ""),
            inferences_total=int(d["inferences_total"]), pid=int(d["pid"]),  # type: ignore[call-overload]
            pid_ns=None if d.get("pid_ns") is None else str(d["pid_ns"]),
            started_at=float(d["started_at"]), updated_at=float(d["updated_at"]),  # type: ignore[arg-type]
        )


def _write_atomic(path: Path, payload: Mapping[str, object]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileTaskObserver:
    """A `TaskObserver` that publishes the running task to the node's agent via files.

    It never raises into the runner: a full disk or a read-only directory costs the live
    labels (with one warning), never the benchmark.
    """

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self._labels: list[TaskLabel] = []
        self._warned = False
        self._publishing = False  # the directory was found safe when the task started

    def _paths(self) -> list[tuple[Path, TaskLabel]]:
        return [(self.state_dir / f"{label.uuid}.json", label) for label in self._labels]

    def _guard(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - labels are a convenience; the task goes on
            if not self._warned:
                self._warned = True
                log.warning("task labels for the agent not published (%s in %s): %s", what, self.state_dir, exc)

    def started(self, spec: "TaskSpec", gpus: "Sequence[GpuInfo]") -> None:
        now = time.time()
        self._labels = [
            TaskLabel(uuid=g.uuid, gpu=g.index, run=spec.run_id, task=spec.task_id, pair=spec.pair_id,
                      kind=spec.kind, impl=spec.impl, preset=spec.preset or "", inferences_total=0,
                      pid=os.getpid(), pid_ns=_pid_namespace(), started_at=now, updated_at=now)
            for g in gpus
        ]

        def write() -> None:
            state_dir(self.state_dir)
            self._publishing = True
            self._write_all()

        self._guard("started", write)

    def progress(self, inferences_total: int) -> None:
        now = time.time()
        self._labels = [_replace(label, inferences_total=int(inferences_total), updated_at=now)
                        for label in self._labels]
        if self._publishing:
            self._guard("progress", self._write_all)

    def finished(self, result: "TaskResult") -> None:
        def remove() -> None:
            for path, _ in self._paths():
                path.unlink(missing_ok=True)

        if self._publishing:
            self._guard("finished", remove)
        self._labels = []
        self._publishing = False

    def _write_all(self) -> None:
        for path, label in self._paths():
            _write_atomic(path, {"version": FORMAT_VERSION, **asdict(label)})


def _replace(label: TaskLabel, **changes: object) -> TaskLabel:
    return TaskLabel(**{**asdict(label), **changes})  # type: ignore[arg-type]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def is_live(label: TaskLabel, *, now: float, own_pid_ns: str | None) -> bool:
    """Whether `label` belongs to a running task: by PID where we share its PID namespace,
    else by the file's freshness."""
    if label.pid_ns is not None and label.pid_ns == own_pid_ns:
        return _pid_alive(label.pid)
    return now - label.updated_at < STALE_AFTER_S


def read_task_labels(state_dir: Path, *, now: float | None = None) -> dict[str, TaskLabel]:
    """The live task labels in `state_dir`, keyed by GPU UUID (unreadable files are skipped)."""
    now = time.time() if now is None else now
    own_ns = _pid_namespace()
    out: dict[str, TaskLabel] = {}
    try:
        paths = sorted(state_dir.glob("*.json"))
    except OSError:
        return out
    for path in paths:
        try:
            label = TaskLabel.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.debug("ignoring task label file %s: %s", path, exc)
            continue
        if is_live(label, now=now, own_pid_ns=own_ns):
            out[label.uuid] = label
    return out
