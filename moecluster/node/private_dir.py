"""A directory only this user can write: where tasks publish their labels and lock their devices.

Both live under `/tmp` by default (`/tmp/moecluster-<uid>/...`), a path anyone can guess: another
user who made it first could feed the agent false task labels, read what runs, or hold a lock
file open. So the directory is created `0700` (each missing component), and refused where it is
not ours alone: not a directory (a symlink included), owned by another user, or writable by the
group or the world; an ancestor owned by another user (not root) is refused too, as that user
could swap the directory. Root-owned ancestors are trusted, and so are sticky world-writable ones
such as `/tmp` itself (no one can rename another's entries there).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafeDirectory(ValueError):
    """The directory is not this user's alone; one line naming it and why."""


def _describe(path: Path, st: os.stat_result, me: int) -> str | None:
    if st.st_uid not in (me, 0):
        return f"owned by uid {st.st_uid}, not by you (uid {me})"
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        return f"writable by every user (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def check_private_dir(path: Path, *, what: str = "directory") -> None:
    """UnsafeDirectory unless `path` is a real directory of this user's, writable by no one else."""
    me = os.geteuid()
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise UnsafeDirectory(f"{what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{what} {path} is not a directory of its own (a link or a file): remove it"
                              " or choose another")
    if st.st_uid != me:
        raise UnsafeDirectory(f"{what} {path} is owned by uid {st.st_uid}, not by you (uid {me}):"
                              " remove it or choose another")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeDirectory(f"{what} {path} is writable by its group or every user (mode"
                              f" {stat.S_IMODE(st.st_mode):04o}): chmod 700 it or choose another")
    for parent in path.parents:
        try:
            why = _describe(parent, os.stat(parent), me)
        except OSError:
            continue
        if why:
            raise UnsafeDirectory(f"{what} {path}: its parent {parent} is {why}: choose another")


def private_dir(path: Path, *, what: str = "directory") -> Path:
    """`path`, created `0700` where missing (each missing component), after `check_private_dir`."""
    path = Path(path).absolute()
    missing = []
    for p in (path, *path.parents):
        if os.path.lexists(p):
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)  # the umask can only take bits away
        except FileExistsError:
            pass  # made meanwhile by another process: checked below like any other
        except OSError as exc:
            raise UnsafeDirectory(f"{what} {path}: cannot create {p}: {exc.strerror or exc}") from None
    check_private_dir(path, what=what)
    return path
