"""Run directories: `<root>/<run-id>/` holding the resolved sweep, the environment and the store.

The root is `--runs-dir`, else `$MOECLUSTER_RUNS_DIR`, else `./runs`.
"""
from __future__ import annotations

import os
from pathlib import Path

from .cli.errors import InputError

ENV_VAR = "MOECLUSTER_RUNS_DIR"


def runs_root(option: str | os.PathLike[str] | None = None) -> Path:
    return Path(option or os.environ.get(ENV_VAR) or "runs")


def find_run(root: Path, run_id: str) -> Path:
    """The directory of `run_id` under `root`; InputError naming the run if absent."""
    path = root / run_id
    if not (path / "results.sqlite").exists():
        known = sorted(p.name for p in root.iterdir() if (p / "results.sqlite").exists()) if root.is_dir() else []
        hint = f" (known: {', '.join(known[-5:])})" if known else f" (no runs under {root})"
        raise InputError(f"run {run_id!r} not found{hint}")
    return path
