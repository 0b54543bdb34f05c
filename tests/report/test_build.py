"""`report.build.build_report`, the report's use case, without the CLI: it shows the aggregate through its
view before it writes anything, writes what was asked where asked, and refuses bad input before writing."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import moecluster_synthetic as syn
from moecluster.head.errors import InputError
from moecluster.report.aggregate import Aggregate
from moecluster.report.build import ReportRequest, build_report


class Recorder:
    """A view that records what it was shown, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def warn(self, line: str) -> None:
        self.events.append(f"warn {line}")

    @contextmanager
    def aggregating(self, prometheus_url: str | None) -> Iterator[None]:
        self.events.append("aggregating")
        yield

    def show(self, agg: Aggregate, run_id: str, meta: dict[str, Any]) -> None:
        self.events.append(f"show {run_id} {len(agg.pairs)} pairs")


def test_a_report_is_shown_then_written_where_asked(tmp_path: Path) -> None:
    syn.write_run(tmp_path / "runs", "r1", syn.demo_results())
    view = Recorder()
    files = build_report(ReportRequest(run_ids=("r1", "r1"), runs_dir=tmp_path / "runs", formats=("json", "csv"),
                                       out_dir=tmp_path / "out"), view)
    assert view.events[0] == "aggregating" and view.events[1].startswith("show r1 ") and len(view.events) == 2
    assert files.written and all(p.parent == tmp_path / "out" and p.exists() for p in files.written)
    assert tmp_path / "out" / "report.json" in files.written


def test_bad_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    syn.write_run(tmp_path / "runs", "r1", syn.demo_results())
    view = Recorder()
    with pytest.raises(InputError, match="--prometheus 'ftp://x': expected an http"):
        build_report(ReportRequest(run_ids=("r1",), runs_dir=tmp_path / "runs", formats=("csv",),
                                   out_dir=tmp_path / "out", prometheus_url="ftp://x"), view)
    assert view.events == [] and list((tmp_path / "out").iterdir()) == []
