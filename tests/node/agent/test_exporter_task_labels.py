"""The file mechanism by which a running task tells its node's agent what it is."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from moecluster.devices import GpuInfo
from moecluster.node.agent.task_labels import (
    STALE_AFTER_S, FileTaskObserver, default_state_dir, read_task_labels)
from moecluster.measure.observer import NullObserver, TaskObserver
from moecluster.spec.records import TaskResult, TaskSpec

GPUS = [GpuInfo(0, "GPU-aaaa", "Fake GPU"), GpuInfo(1, "GPU-bbbb", "Fake GPU")]


def _spec(**kw: object) -> TaskSpec:
    base = dict(task_id="t1", pair_id="p1", kind="moe", impl="sorted", model={"input_dim": 8},
                preset="small", run_id="run-7")
    return TaskSpec(**{**base, **kw})  # type: ignore[arg-type]


def test_observers_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(FileTaskObserver(tmp_path), TaskObserver)
    assert isinstance(NullObserver(), TaskObserver)


def test_lifecycle_publishes_then_removes_one_file_per_gpu(tmp_path: Path) -> None:
    obs = FileTaskObserver(tmp_path / "tasks")
    spec = _spec()
    obs.started(spec, GPUS)
    labels = read_task_labels(tmp_path / "tasks")
    assert set(labels) == {"GPU-aaaa", "GPU-bbbb"}
    first = labels["GPU-bbbb"]
    assert (first.gpu, first.run, first.task, first.pair, first.kind, first.impl, first.preset) == \
        (1, "run-7", "t1", "p1", "moe", "sorted", "small")
    assert first.inferences_total == 0

    obs.progress(1280)
    obs.progress(2560)
    assert {lab.inferences_total for lab in read_task_labels(tmp_path / "tasks").values()} == {2560}
    assert not list((tmp_path / "tasks").glob(".*"))  # no temporary files left behind

    obs.finished(TaskResult(spec=spec, status="ok"))
    assert read_task_labels(tmp_path / "tasks") == {}
    assert not list((tmp_path / "tasks").iterdir())


def test_dense_task_without_preset_has_empty_preset(tmp_path: Path) -> None:
    obs = FileTaskObserver(tmp_path)
    obs.started(_spec(kind="dense", impl="dense", preset=None), GPUS[:1])
    assert read_task_labels(tmp_path)["GPU-aaaa"].preset == ""


def test_file_of_a_dead_process_is_ignored(tmp_path: Path) -> None:
    obs = FileTaskObserver(tmp_path)
    obs.started(_spec(), GPUS[:1])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path = tmp_path / "GPU-aaaa.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "pid": int(dead.stdout)}))
    assert read_task_labels(tmp_path) == {}


def test_other_pid_namespace_falls_back_to_freshness(tmp_path: Path) -> None:
    obs = FileTaskObserver(tmp_path)
    obs.started(_spec(), GPUS[:1])
    path = tmp_path / "GPU-aaaa.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "pid": 1, "pid_ns": "pid:[1]"}))
    now = data["updated_at"]
    assert "GPU-aaaa" in read_task_labels(tmp_path, now=now + 1)
    assert read_task_labels(tmp_path, now=now + STALE_AFTER_S + 1) == {}


def test_garbage_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "GPU-x.json").write_text("{not json")
    (tmp_path / "GPU-y.json").write_text(json.dumps({"uuid": "GPU-y"}))
    FileTaskObserver(tmp_path).started(_spec(), GPUS[:1])
    assert set(read_task_labels(tmp_path)) == {"GPU-aaaa"}
    assert read_task_labels(tmp_path / "missing") == {}


def test_observer_never_raises_into_the_runner(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    obs = FileTaskObserver(blocker / "tasks")  # cannot be created: a file is in the way
    obs.started(_spec(), GPUS)
    obs.progress(10)
    obs.finished(TaskResult(spec=_spec(), status="failed", error="x"))
    warnings = [r for r in caplog.records if "not published" in r.getMessage()]
    assert len(warnings) == 1  # one warning, not one per progress call


def test_default_state_dir_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOECLUSTER_STATE_DIR", str(tmp_path / "s"))
    assert default_state_dir() == tmp_path / "s"
    monkeypatch.delenv("MOECLUSTER_STATE_DIR")
    assert default_state_dir().name == "tasks" and "moecluster-" in str(default_state_dir())


def test_labels_appear_while_a_writer_races(tmp_path: Path) -> None:
    """Atomic rename: a reader polling while another thread rewrites never sees a partial file."""
    obs = FileTaskObserver(tmp_path)
    obs.started(_spec(), GPUS)
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            obs.progress(n)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert set(read_task_labels(tmp_path)) == {"GPU-aaaa", "GPU-bbbb"}
    finally:
        stop.set()
        writer.join(5)
