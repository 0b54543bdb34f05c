"""Directories only this user can write: created 0700, refused where another user could write them."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from moecluster.node.agent.task_labels import FileTaskObserver, read_task_labels
from moecluster.devices import GpuInfo
from moecluster.node.private_dir import UnsafeDirectory, private_dir
from moecluster.spec.records import TaskSpec


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_each_missing_component_is_created_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        made = private_dir(tmp_path / "moecluster-1000" / "tasks")
    finally:
        os.umask(old)
    assert made == tmp_path / "moecluster-1000" / "tasks"
    assert _mode(made) == 0o700 and _mode(made.parent) == 0o700
    assert private_dir(made) == made  # an existing safe directory is taken as it is


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_a_directory_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    d = tmp_path / "tasks"
    d.mkdir()
    d.chmod(mode)
    with pytest.raises(UnsafeDirectory) as exc:
        private_dir(d, what="task-label state directory")
    message = str(exc.value)
    assert "\n" not in message and str(d) in message and f"mode {mode:04o}" in message and "chmod 700" in message


def test_a_directory_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "tasks"
    d.mkdir(mode=0o700)
    me = os.geteuid()
    if me == 0:
        os.chown(d, 4321, -1)  # really another user's
        other = 4321
    else:  # no chown without root: this process plays another user instead
        other = me
        monkeypatch.setattr(os, "geteuid", lambda: me + 1)
    with pytest.raises(UnsafeDirectory, match=rf"is owned by uid {other}, not by you"):
        private_dir(d)


def test_a_parent_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    parent = tmp_path / "moecluster-1000"
    parent.mkdir(mode=0o755)
    os.chown(parent, 4321, -1)
    with pytest.raises(UnsafeDirectory, match=r"its parent .*moecluster-1000 is owned by uid 4321"):
        private_dir(parent / "tasks")


def test_a_link_or_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "file").write_text("")
    for name in ("link", "file"):
        with pytest.raises(UnsafeDirectory, match="not a directory of its own"):
            private_dir(tmp_path / name)


def test_a_task_publishes_no_labels_into_an_unsafe_directory_and_runs_on(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    obs = FileTaskObserver(shared)
    spec = TaskSpec(task_id="t1", pair_id="p1", kind="moe", impl="sorted", model={})
    obs.started(spec, [GpuInfo(0, "GPU-aaaa", "Fake GPU")])  # never raises into the runner
    obs.progress(10)
    assert not list(shared.iterdir()) and read_task_labels(shared) == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "writable by its group or every user" in warnings[0]
