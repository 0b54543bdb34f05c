"""Write the report's tables: one CSV or Parquet file per table, or one JSON document.

Only tables with rows are written (a header-only file says nothing). CSV and Parquet keep one
file per table (`tasks.csv`, `pairs.parquet`, ...) so each loads straight into pandas/R/a
spreadsheet; JSON is a single `report.json` with the run's identity, every table with rows as a
list of records (empty cells are `null`, never NaN) and the names of the others.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from moecluster.report.frames import Frames

FORMATS: tuple[str, ...] = ("csv", "parquet", "json")


def _clean(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
        return _clean(v.item())
    return v


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of `df` as JSON-ready dicts (NaN and numpy scalars become null and Python numbers)."""
    return [{str(k): _clean(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def empty(frames: Frames) -> list[str]:
    """The names of the tables with no rows: no export writes them (a header-only file says nothing)."""
    return [name for name, df in frames.items() if df.empty]


def write(frames: Frames, out_dir: Path, fmt: str, meta: Mapping[str, Any]) -> list[Path]:
    """Write every table of `frames` that has rows under `out_dir` in `fmt` (one of `FORMATS`); the paths
    written. JSON lists the tables left out for having no rows under `tables_without_rows`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped = empty(frames)
    kept = [(name, df) for name, df in frames.items() if name not in skipped]
    if fmt == "json":
        path = out_dir / "report.json"
        doc = {"meta": dict(meta), "tables": {name: records(df) for name, df in kept},
               "tables_without_rows": skipped}
        path.write_text(json.dumps(doc, indent=1, allow_nan=False, default=str) + "\n")
        return [path]
    paths = []
    for name, df in kept:
        path = out_dir / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        else:
            df.to_parquet(path, index=False)
        paths.append(path)
    return paths
