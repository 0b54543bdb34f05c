"""The report of one run: terminal tables (rich), exports (CSV, Parquet, JSON) and a self-contained HTML page.

Everything is computed by `moecluster.orchestrator.aggregate`; this package only formats it.
"""
from __future__ import annotations

from .export import FORMATS, empty, write
from .frames import Frames, frames
from .html import page, write_html
from .meta import environment_line, run_meta
from .tables import render

__all__ = ["FORMATS", "Frames", "empty", "environment_line", "frames", "page", "render", "run_meta",
           "write", "write_html"]

