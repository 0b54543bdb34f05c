"""Write the report's tables: one CSV or Parquet file per table, or one JSON document.

CSV and Parquet keep one file per table (`tasks.csv`, `pairs.parquet`, ...) so each loads
straight into pandas/R/a spreadsheet; JSON is a single `report.json` with the run's identity
and every table as a list of records (empty cells are `null`, never NaN).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .frames import Frames

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


def write(frames: Frames, out_dir: Path, fmt: str, meta: Mapping[str, Any]) -> list[Path]:
    """Write every table of `frames` under `out_dir` in `fmt` (one of `FORMATS`); the paths written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path = out_dir / "report.json"
        doc = {"meta": dict(meta), "tables": {name: records(df) for name, df in frames.items()}}
        path.write_text(json.dumps(doc, indent=1, allow_nan=False, default=str) + "\n")
        return [path]
    paths = []
    for name, df in frames.items():
        path = out_dir / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        else:
            df.to_parquet(path, index=False)
        paths.append(path)
    return paths
