"""The `moecluster report` use case: read one run (or several runs of one sweep, pooled as replicates),
aggregate their results, have them shown, and write the exports and the HTML page asked for.

Every input is checked before anything is written (the runs, their pooling, the optional dependencies
the formats need, the output directories), so a report either writes everything or starts nothing;
bad input is an `InputError` naming the culprit. How the report is shown is the caller's (`ReportView`).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from moecluster.spec.extras import require
from moecluster.spec.records import TaskResult

from moecluster.head.errors import InputError
from moecluster.head.rundir import find_run, runs_root
from moecluster.head.store import RunStore, StoreDamaged

from moecluster.report.aggregate import Aggregate, aggregate
from moecluster.report.export import empty, write
from moecluster.report.frames import frames
from moecluster.report.html import write_html
from moecluster.report.meta import run_meta
from moecluster.report.outdir import writable_dir
from moecluster.report.pooled import caveat, difference, identity


@dataclass(frozen=True)
class ReportRequest:
    """What a report is asked for: the runs (ids as given), and what to write where."""

    run_ids: tuple[str, ...]
    runs_dir: Path | None = None  # default: $MOECLUSTER_RUNS_DIR, else ./runs
    formats: tuple[str, ...] = ()  # of `export.FORMATS`
    out_dir: Path | None = None  # default: <run dir>/report (pooled: the first's report-pooled)
    html_dir: Path | None = None
    prometheus_url: str | None = None
    pool_anyway: bool = False  # pool runs whose sweeps or code revisions differ


@dataclass(frozen=True)
class ReportFiles:
    """What the report wrote, and the tables no export wrote for having no rows."""

    written: tuple[Path, ...]
    unwritten: tuple[str, ...]


class ReportView(Protocol):
    """How the caller shows the report while it is made (the CLI: rich on the terminal)."""

    def warn(self, line: str) -> None:
        """A warning that does not stop the report (runs pooled although they differ, no cluster energy)."""

    def aggregating(self, prometheus_url: str | None) -> AbstractContextManager[object]:
        """Held while the results are aggregated (and Prometheus read)."""

    def show(self, agg: Aggregate, run_id: str, meta: dict[str, Any]) -> None:
        """The aggregate, before anything is written."""


def _runs(request: ReportRequest, view: ReportView) -> tuple[tuple[str, ...], list[Path]]:
    """The run ids (each once) and their directories; runs that differ refused unless `pool_anyway`."""
    root = runs_root(request.runs_dir)
    run_ids = tuple(dict.fromkeys(request.run_ids))
    run_dirs = [find_run(root, r) for r in run_ids]
    if len(run_dirs) > 1:
        identities = [identity(r, d) for r, d in zip(run_ids, run_dirs)]
        differs = difference(identities)
        if differs and not request.pool_anyway:
            raise InputError(f"{differs}: not pooled as replicates (--pool-anyway pools them regardless)")
        for line in filter(None, [f"pooled although {differs}" if differs else None, caveat(identities)]):
            view.warn(line)
    return run_ids, run_dirs


def _check_outputs(request: ReportRequest) -> None:
    """The optional dependencies the outputs need, and their directories writable, before anything is written."""
    if "parquet" in request.formats:
        require("pyarrow", extra="report", feature="--format parquet")
    if request.html_dir is not None:
        require("matplotlib", extra="report", feature="--html (the report's figures)")
    for option, directory in (("--out", request.out_dir if request.formats else None), ("--html", request.html_dir)):
        if directory is not None:
            writable_dir(directory, option)


def _results(run_ids: tuple[str, ...], run_dirs: list[Path]) -> list[TaskResult]:
    """Every stored result of the runs (read only); pooled, each record names the run it came from as given."""
    results: list[TaskResult] = []
    for one, directory in zip(run_ids, run_dirs):
        try:
            with RunStore(directory, read_only=True) as store:  # a report never writes the store
                stored = store.results()
        except StoreDamaged as exc:
            raise InputError(f"run {one!r} is damaged: {exc}") from None
        if not stored:
            raise InputError(f"run {one!r} has no stored results yet ({directory})")
        if len(run_dirs) > 1:  # a copied store may carry another id
            stored = [replace(r, spec=replace(r.spec, run_id=one)) for r in stored]
        results += stored
    return results


def _write(request: ReportRequest, agg: Aggregate, run_id: str, meta: dict[str, Any], target: Path) -> ReportFiles:
    """The exports in every format asked for under `target`, and the HTML page."""
    written: list[Path] = []
    unwritten: list[str] = []
    if request.formats:
        tables = frames(agg)
        export_meta = {"run_id": run_id, **meta, "cluster": agg.cluster_note}
        for fmt in request.formats:
            try:
                written += write(tables, target, fmt, export_meta)
            except OSError as exc:
                raise InputError(f"--out {target}: cannot write: {exc.strerror or exc}") from None
        unwritten = empty(tables)
    if request.html_dir is not None:
        try:
            written.append(write_html(agg, run_id, meta, request.html_dir))
        except OSError as exc:
            raise InputError(f"--html {request.html_dir}: cannot write: {exc.strerror or exc}") from None
    return ReportFiles(written=tuple(written), unwritten=tuple(unwritten))


def build_report(request: ReportRequest, view: ReportView) -> ReportFiles:
    """The report of `request.run_ids`: checked, aggregated, shown through `view`, then written."""
    run_ids, run_dirs = _runs(request, view)
    _check_outputs(request)
    results = _results(run_ids, run_dirs)
    url = request.prometheus_url
    if url and not url.startswith(("http://", "https://")):
        raise InputError(f"--prometheus {url!r}: expected an http:// or https:// URL")
    with view.aggregating(url):
        agg = aggregate(results, url)
    if url and agg.cluster is None:
        view.warn(f"cluster-wide energy {agg.cluster_note}")
    run_id, run_dir = " + ".join(run_ids), run_dirs[0]
    meta = run_meta(run_dir)
    if len(run_dirs) > 1:
        meta["pooled runs"] = ", ".join(f"{r} ({d})" for r, d in zip(run_ids, run_dirs))
    view.show(agg, run_id, meta)
    target = request.out_dir or run_dir / ("report" if len(run_dirs) == 1 else "report-pooled")
    return _write(request, agg, run_id, meta, target)
