"""Run directories: `<root>/<run-id>/` holding the resolved sweep, the environment and the store.

The root is `--runs-dir`, else `$MOECLUSTER_RUNS_DIR`, else `./runs`. A run directory holds
`sweep.yaml` (the resolved sweep: every default filled in, every axis a list; what `--resume`
reloads), `sweep.source.yaml` (the file as the user wrote it), `environment.json`,
`results.sqlite` and `.lock`.

Results are the user's alone: a run directory is made `0700` and every file moecluster writes in
it `0600` (the store's `-wal`/`-shm` take the store's mode).

A run has one owner at a time: the head that creates or resumes it holds an exclusive
`fcntl.flock` on `<run dir>/.lock` for as long as it runs (the OS drops it when that process
ends, however it ends). The file names the holder (pid, host, start time), so a second submit of
the run is refused in one line naming it (`RunBusy`, exit 2). The run directory must be on a
filesystem whose locks every head using it sees (a local disk, NFSv4).
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from moecluster.head.errors import InputError

ENV_VAR = "MOECLUSTER_RUNS_DIR"
SWEEP_FILE = "sweep.yaml"
SOURCE_FILE = "sweep.source.yaml"
ENVIRONMENT_FILE = "environment.json"
LOCK_FILE = ".lock"
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# A runs directory whose filesystem has less free space than this is refused before Ray starts:
# a run needs a few hundred kB for its files and store before its first result.
MIN_FREE_BYTES = 1 << 20
# How long a head waits for a run's lock before calling the run busy: a `runs`/`status` that is
# probing the lock holds it for microseconds.
LOCK_WAIT_S = 2.0


def runs_root(option: str | os.PathLike[str] | None = None) -> Path:
    return Path(option or os.environ.get(ENV_VAR) or "runs")


def _where_hint(root: Path) -> str:
    """`root` as an absolute path, and, where it is the one chosen for the user (`$MOECLUSTER_RUNS_DIR`
    or `./runs`, as when a command runs from another directory), how to choose another."""
    if root != runs_root():
        return str(root.absolute())
    return f"{root.absolute()}; choose the runs directory with --runs-dir or ${ENV_VAR}"


def no_runs_line(root: Path) -> str:
    """What `runs` says when `root` holds no run: the absolute path searched and how to choose another."""
    return f"no runs under {_where_hint(root)}"


def is_run_id(run_id: str) -> bool:
    """Letters, digits, '-', '_' and '.', at most 128, starting with a letter or digit: nothing
    else (no newline, no path separator), so a run id is always one safe path component."""
    return RUN_ID_PATTERN.fullmatch(run_id) is not None


def find_run(root: Path, run_id: str) -> Path:
    """The directory of `run_id` under `root`; InputError naming the run if absent.

    The id is checked on every lookup, not only on creation: `../x`, `/etc` or `a/b` would
    otherwise reach outside `root` (report, status, --resume all come through here).
    """
    if not is_run_id(run_id):
        raise InputError(f"run {run_id!r}: not a run id (letters, digits, '-', '_' and '.', starting with a"
                         " letter or digit; no path separators)")
    path = root / run_id
    if not (path / "results.sqlite").exists():
        known = sorted(p.name for p in root.iterdir() if (p / "results.sqlite").exists()) if root.is_dir() else []
        hint = (f" (known under {root.absolute()}: {', '.join(known[-5:])})" if known
                else f" (no runs under {_where_hint(root)})")
        raise InputError(f"run {run_id!r} not found{hint}")
    return path


def list_runs(root: Path) -> list[Path]:
    """Every run directory under `root`, oldest first (by creation time of its store)."""
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "results.sqlite").exists()]
    return sorted(runs, key=lambda p: ((p / "results.sqlite").stat().st_mtime, p.name))


def check_run_id(run_id: str) -> str:
    if not is_run_id(run_id):
        raise InputError(f"--run-id {run_id!r}: use letters, digits, '-', '_' and '.' (at most 128),"
                         " starting with a letter or digit")
    return run_id


def new_run_id(name: str, now: float | None = None) -> str:
    """`<sweep name>-<YYYYmmdd-HHMMSS>` in local time."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"


# -- the disk --------------------------------------------------------------------------------
def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding `path` (or its nearest existing ancestor)."""
    path = _existing(path.absolute())
    while path != path.parent and os.stat(path).st_dev == os.stat(path.parent).st_dev:
        path = path.parent
    return path


def _existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged user may still write on the filesystem of `path` (or its nearest existing ancestor)."""
    st = os.statvfs(_existing(path.absolute()))
    return st.f_bavail * st.f_frsize


def disk_line(path: Path) -> str:
    """`the filesystem at /mnt/x (0 B free)`: which disk `path` is on and how full, for messages."""
    try:
        return f"the filesystem at {mount_point(path)} ({free_bytes(path):,} bytes free)"
    except OSError:
        return f"the filesystem of {path.absolute()}"


def check_writable(path: Path, what: str) -> None:
    """InputError (one line, naming `what` and the absolute path) unless `path` is a directory, or
    can be made one, that this process can write, on a filesystem with `MIN_FREE_BYTES` free.

    Called before Ray starts: a runs directory that is a file, read-only, or on a full disk is
    refused with nothing started, instead of a traceback once Ray is up."""
    shown = path.absolute()
    existing = _existing(shown)
    if existing != shown and not existing.is_dir():
        raise InputError(f"{what} {shown}: {existing} is not a directory")
    if existing == shown and not shown.is_dir():
        raise InputError(f"{what} {shown}: not a directory (a file is in the way)")
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "on a read-only filesystem" if _read_only_fs(existing) else "not writable by you"
        raise InputError(f"{what} {shown}: {existing} is {why}")
    if free_bytes(existing) < MIN_FREE_BYTES:
        raise InputError(f"{what} {shown}: {disk_line(existing)} is full; free some space or choose another"
                         " with --runs-dir")


def _read_only_fs(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by this user only (0600); OSError (e.g. ENOSPC) if any of it
    cannot be written, with nothing half-written left under the name."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


# -- one owner at a time -----------------------------------------------------------------------
@dataclass(frozen=True)
class LockHolder:
    """The head holding a run's lock, as it wrote itself into the lock file."""

    pid: int | None
    host: str
    started_at: float | None

    def describe(self) -> str:
        if self.pid is None:
            return "another moecluster process (starting)"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at)) if self.started_at else "?"
        return f"pid {self.pid} on {self.host} since {since}"


class RunBusy(InputError):
    """The run is held by another head; the message names it (exit 2, like any refused input)."""

    def __init__(self, run_id: str, holder: LockHolder) -> None:
        self.holder = holder
        super().__init__(f"run {run_id} is in use by {holder.describe()} (a submit or --resume of it);"
                         " wait for it to end or stop it first")


def _read_holder(fd: int) -> LockHolder:
    try:
        raw = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return LockHolder(pid=int(raw["pid"]), host=str(raw.get("host", "?")),
                          started_at=float(raw["started_at"]) if raw.get("started_at") else None)
    except (OSError, ValueError, KeyError, TypeError):
        return LockHolder(pid=None, host="?", started_at=None)


class RunLock:
    """The exclusive hold of a run (see the module): released by `release`, at the end of a
    `with` block, or when the process ends."""

    def __init__(self, fd: int, run_dir: Path) -> None:
        self._fd: int | None = fd
        self.run_dir = run_dir

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run(run_dir: Path, run_id: str, *, wait_s: float = LOCK_WAIT_S) -> RunLock:
    """Hold `run_dir` for this process; `RunBusy` naming the holder if another head keeps it for `wait_s`."""
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunBusy(run_id, holder) from None
            time.sleep(0.05)
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time()}).encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, me, 0)
    except OSError:
        pass  # a full disk: the lock holds all the same, only the holder's name is missing
    return RunLock(fd, run_dir)


def lock_holder(run_dir: Path) -> LockHolder | None:
    """Who holds the run's lock; None when no one does (or the run has no lock file). Creates and
    writes nothing, so it works on a read-only copy."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        except OSError:
            return None  # a filesystem without locks: nothing to tell
        return None
    finally:
        os.close(fd)  # drops the probe's shared lock


def has_lock_file(run_dir: Path) -> bool:
    return os.path.lexists(run_dir / LOCK_FILE)


def create_run_dir(root: Path, run_id: str, *, explicit: bool) -> tuple[Path, str, RunLock]:
    """Create `<root>/<run_id>/` (0700) exclusively, hold it, and return it with its id and lock.

    An explicit `--run-id` that exists is an error; a generated one that collides (two runs
    in one second) gets a `-2`, `-3`, ... suffix. The lock is taken before anything is written in
    it, so a `--resume` of the id never finds a store whose head has not got it yet.
    """
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    candidate, n = run_id, 1
    while True:
        try:
            (root / candidate).mkdir(mode=0o700)
        except FileExistsError:
            if explicit:
                raise InputError(f"run {run_id!r} already exists under {root.absolute()}"
                                 f" (use --resume {run_id} to finish it)") from None
            n += 1
            candidate = f"{run_id}-{n}"
            continue
        try:
            return root / candidate, candidate, lock_run(root / candidate, candidate)
        except OSError:
            shutil.rmtree(root / candidate, ignore_errors=True)
            raise


def remove_half_made(run_dir: Path, lock: RunLock) -> None:
    """Remove a run directory whose making failed (nothing was run in it), then drop its lock."""
    shutil.rmtree(run_dir, ignore_errors=True)
    lock.release()

