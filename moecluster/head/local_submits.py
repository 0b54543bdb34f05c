"""The `moecluster submit`s running on this machine, so that a second one knows of the first.

Two submits at once each start (or join) a Ray instance that believes it owns every GPU and
CPU slot of the machine. What keeps their measurements apart is node-side: every pair holds its
devices (`node.device_lock`), so a pair of one run waits while the other run measures on
its device. The head only says so: each submit registers itself here for as long as it runs, and
one that finds another registered prints a warning naming it, and what it means (pairs wait
their turn on shared devices, up to the wait limit, and the sweeps take longer).

Why warn rather than shrink the second Ray instance: the locks already prevent a shared
measurement, whatever the slot counts; a split of the slots would be a guess (the first run may
end a second later, or use few of its slots), would leave devices idle, and could not stop the
first run from using the slots it already believes it has.

Mechanism: one file per submit, `<dir>/<pid>.json`, holding its run, address and start time,
locked (`fcntl.flock`) for the submit's lifetime. A file whose lock can be taken belongs to a
process that is gone and is removed; so a crashed submit never counts as running. The directory
is `/tmp/moecluster-<uid>/submits` (0700, checked like the task labels').
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from moecluster.node.device_lock import wait_limit_s
from moecluster.node.private_dir import UnsafeDirectory, private_dir


@dataclass(frozen=True)
class LocalSubmit:
    """One running submit: its process, run and Ray address (`local`: an instance of its own)."""

    pid: int
    run_id: str
    address: str
    started_at: float

    def describe(self) -> str:
        ray = "its own local Ray instance" if self.address == "local" else f"Ray at {self.address}"
        since = time.strftime("%H:%M:%S", time.localtime(self.started_at))
        return f"run {self.run_id} (pid {self.pid}, {ray}, since {since})"


def default_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"moecluster-{os.getuid()}" / "submits"


def _others(directory: Path, own: Path) -> list[LocalSubmit]:
    out = []
    for path in sorted(directory.glob("*.json")):
        if path == own:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: that submit runs
                try:
                    out.append(LocalSubmit(**json.loads(path.read_text())))
                except (OSError, ValueError, TypeError):
                    pass
                continue
            path.unlink(missing_ok=True)  # no one holds it: its submit is gone
        finally:
            os.close(fd)
    return out


@contextmanager
def registered_submit(run_id: str, address: str | None, *, say: Callable[[str], None] | None = None,
                      directory: Path | None = None) -> Iterator[list[LocalSubmit]]:
    """Register this submit for the block; yields the other submits running on this machine, and
    tells `say` the `concurrency_warning` first where there are any. Where the directory is
    unusable, nothing is registered and none are reported (no reason to refuse a sweep)."""
    me = LocalSubmit(pid=os.getpid(), run_id=run_id, address=address or "local", started_at=time.time())
    try:
        d = private_dir(default_dir() if directory is None else directory, what="submit registry directory")
        fd, own = _publish(d, me)
    except (UnsafeDirectory, OSError):
        fd = None
    if fd is None:
        yield []
        return
    try:
        others = _others(d, own)
        warning = concurrency_warning(others)
        if say is not None and warning is not None:
            say(warning)
        yield others
    finally:
        own.unlink(missing_ok=True)
        os.close(fd)


def _publish(directory: Path, me: LocalSubmit) -> tuple[int, Path]:
    """This submit's file, locked before it appears under its name (so no one takes it for a dead one's)."""
    tmp = directory / f".{me.pid}.tmp"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps(asdict(me)).encode())
        own = directory / f"{me.pid}.json"
        os.replace(tmp, own)
    except OSError:
        os.close(fd)
        raise
    return fd, own


def concurrency_warning(others: list[LocalSubmit]) -> str | None:
    """The one line a submit prints when others run on this machine, else None."""
    if not others:
        return None
    try:
        wait = f"up to {wait_limit_s():g} s"
    except ValueError as exc:
        wait = f"but {exc}"
    names = "; ".join(o.describe() for o in others)
    return (f"another moecluster submit runs on this machine: {names}. Both see every device; a pair waits"
            f" while the other run measures on its device ({wait}; then it fails and --resume runs it again),"
            " and each result records whether it waited. Run one sweep at a time for the quickest results.")
