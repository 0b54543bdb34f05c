"""The report of one run: terminal tables (rich), exports (CSV, Parquet, JSON) and a self-contained HTML page.

Everything is computed by `moecluster.orchestrator.aggregate`; this package only formats it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moecluster.agents.records import TaskResult
from moecluster.orchestrator.store import RunStore

from .export import FORMATS, write
from .frames import Frames, frames
from .html import page, write_html
from .tables import render

__all__ = ["FORMATS", "Frames", "frames", "load_run", "page", "render", "run_meta", "write", "write_html"]

META_FILES = ("environment.json",)
SWEEP_FILES = ("sweep.yaml", "sweep.yml", "sweep.json")


def load_run(run_dir: Path) -> list[TaskResult]:
    with RunStore(run_dir) as store:
        return store.results()


def _flat(d: Any, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    if not isinstance(d, dict) or depth > 1:
        return {prefix: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, (dict,)):
            out.update(_flat(v, key, depth + 1))
        elif isinstance(v, (str, int, float, bool)) or v is None:
            out[key] = v
    return out


def run_meta(run_dir: Path, max_items: int = 12) -> dict[str, Any]:
    """What the run directory says about itself besides the results: sweep file, environment."""
    meta: dict[str, Any] = {"run directory": str(run_dir)}
    sweep = next((run_dir / n for n in SWEEP_FILES if (run_dir / n).exists()), None)
    if sweep is not None:
        meta["sweep"] = sweep.name
    env = run_dir / "environment.json"
    if env.exists():
        try:
            flat = _flat(json.loads(env.read_text()))
        except (OSError, ValueError) as exc:
            meta["environment"] = f"unreadable ({exc})"
        else:
            meta["environment"] = ", ".join(f"{k} {v}" for k, v in list(flat.items())[:max_items])
    return meta
