"""Run directories: `<root>/<run-id>/` holding the resolved sweep, the environment and the store.

The root is `--runs-dir`, else `$MOECLUSTER_RUNS_DIR`, else `./runs`. A run directory holds
`sweep.yaml` (the resolved sweep: every default filled in, every axis a list; what `--resume`
reloads), `sweep.source.yaml` (the file as the user wrote it), `environment.json` and
`results.sqlite`.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

from .cli.errors import InputError

ENV_VAR = "MOECLUSTER_RUNS_DIR"
SWEEP_FILE = "sweep.yaml"
SOURCE_FILE = "sweep.source.yaml"
ENVIRONMENT_FILE = "environment.json"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def runs_root(option: str | os.PathLike[str] | None = None) -> Path:
    return Path(option or os.environ.get(ENV_VAR) or "runs")


def find_run(root: Path, run_id: str) -> Path:
    """The directory of `run_id` under `root`; InputError naming the run if absent.

    The id is checked on every lookup, not only on creation: `../x`, `/etc` or `a/b` would
    otherwise reach outside `root` (report, status, --resume all come through here).
    """
    if not RUN_ID_PATTERN.match(run_id):
        raise InputError(f"run {run_id!r}: not a run id (letters, digits, '-', '_' and '.', starting with a"
                         " letter or digit; no path separators)")
    path = root / run_id
    if not (path / "results.sqlite").exists():
        known = sorted(p.name for p in root.iterdir() if (p / "results.sqlite").exists()) if root.is_dir() else []
        hint = f" (known: {', '.join(known[-5:])})" if known else f" (no runs under {root})"
        raise InputError(f"run {run_id!r} not found{hint}")
    return path


def list_runs(root: Path) -> list[Path]:
    """Every run directory under `root`, oldest first (by creation time of its store)."""
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "results.sqlite").exists()]
    return sorted(runs, key=lambda p: ((p / "results.sqlite").stat().st_mtime, p.name))


def check_run_id(run_id: str) -> str:
    if not RUN_ID_PATTERN.match(run_id):
        raise InputError(f"--run-id {run_id!r}: use letters, digits, '-', '_' and '.' (at most 128),"
                         " starting with a letter or digit")
    return run_id


def new_run_id(name: str, now: float | None = None) -> str:
    """`<sweep name>-<YYYYmmdd-HHMMSS>` in local time."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"


def create_run_dir(root: Path, run_id: str, *, explicit: bool) -> tuple[Path, str]:
    """Create `<root>/<run_id>/` exclusively and return it with its id.

    An explicit `--run-id` that exists is an error; a generated one that collides (two runs
    in one second) gets a `-2`, `-3`, ... suffix.
    """
    root.mkdir(parents=True, exist_ok=True)
    candidate, n = run_id, 1
    while True:
        try:
            (root / candidate).mkdir()
            return root / candidate, candidate
        except FileExistsError:
            if explicit:
                raise InputError(f"run {run_id!r} already exists under {root}"
                                 f" (use --resume {run_id} to finish it)") from None
            n += 1
            candidate = f"{run_id}-{n}"
