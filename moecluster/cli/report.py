"""`moecluster report <run-id> [<run-id> ...]`: the run's answers as tables, files and an HTML page.

Several runs of one sweep (on other machines, other days) are pooled as replicates of one another,
after a check that they measured the same sweep with the same code (`report.pooled`); a run that
differs is refused in one line naming the difference, unless `--pool-anyway`.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from moecluster.spec.extras import require
from moecluster.report.aggregate import aggregate
from moecluster.report.export import FORMATS, empty, write
from moecluster.report.frames import frames
from moecluster.report.html import write_html
from moecluster.report.meta import run_meta
from moecluster.report.tables import render
from moecluster.report.pooled import caveat, difference, identity
from moecluster.head.rundir import find_run, runs_root
from moecluster.head.store import RunStore, StoreDamaged

from moecluster.cli.errors import InputError
from moecluster.cli.outdir import writable_dir

PIPE_WIDTH = 200  # columns of the tables when stdout is not a terminal and COLUMNS is not set


def _format_names(text: str) -> list[str]:
    return [w.lower() for w in re.split(r"[,\s]+", text) if w]


def _names_formats(token: str) -> bool:
    names = _format_names(token)
    return bool(names) and all(n in FORMATS for n in names)


def spread_formats(args: list[str]) -> list[str]:
    """`--format csv json parquet` read as `--format csv --format json --format parquet`.

    Click options take one value each; here the words right after --format's value that name
    formats belong to it too (up to `--`, after which everything is an argument).
    """
    out: list[str] = []
    expect_value = taking = False
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        if taking and _names_formats(arg):
            out += ["--format", arg]
            continue
        out.append(arg)
        taking = expect_value or arg.startswith("--format=")
        expect_value = arg == "--format"
    return out


def _formats(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """Every format named, in order, once; a name that is not a format is a usage error."""
    names = [n for v in values for n in _format_names(v)]
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise click.BadParameter(f"{unknown[0]!r} is not a format (choose from {', '.join(FORMATS)})", ctx, param)
    return tuple(dict.fromkeys(names))


class ReportCommand(click.Command):
    """The report command, whose --format also takes several formats after one flag."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_formats(args))


@click.command("report", cls=ReportCommand)
@click.argument("run_ids", metavar="RUN_ID...", nargs=-1, required=True)
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs root (default: $MOECLUSTER_RUNS_DIR, else ./runs).")
@click.option("--format", "formats", multiple=True, callback=_formats, metavar="FORMAT...",
              help=f"Also write the tables in these formats ({', '.join(FORMATS)}): `--format csv json`,"
                   " `--format csv,json` or the flag repeated. One file per table for csv/parquet, one report.json"
                   " for json.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where --format writes (default: <run dir>/report; runs pooled: the first's report-pooled).")
@click.option("--html", "html_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write a self-contained HTML page with the plots to DIR/index.html.")
@click.option("--prometheus", "prometheus_url", envvar="MOECLUSTER_PROMETHEUS_URL", metavar="URL", default=None,
              help="Prometheus URL for the cluster-wide energy (e.g. http://head:9090;"
                   " env MOECLUSTER_PROMETHEUS_URL).")
@click.option("--quiet", "-q", is_flag=True, help="Do not print the tables (only the paths written).")
@click.option("--pool-anyway", is_flag=True,
              help="Pool the runs given even where their sweeps or code revisions differ (refused otherwise).")
def report(run_ids: tuple[str, ...], runs_dir: Path | None, formats: tuple[str, ...], out_dir: Path | None,
           html_dir: Path | None, prometheus_url: str | None, quiet: bool, pool_anyway: bool) -> None:
    """Tables, exports and plots of RUN_ID: MoE/dense pairs side by side (ratios of inferences/s, W,
    inferences/J with 95 % CIs), seed 000's normalisations, the break-even size, the roofline, expert
    parallelism and, with --prometheus, the energy of every GPU of the cluster over the run.

    Several RUN_IDs of one sweep are pooled as replicates: every interval is then over the replicates of
    all of them. Runs whose sweeps or code revisions differ are refused unless --pool-anyway.
    """
    root = runs_root(runs_dir)
    run_ids = tuple(dict.fromkeys(run_ids))
    run_dirs = [find_run(root, r) for r in run_ids]
    run_id, run_dir = " + ".join(run_ids), run_dirs[0]
    err = Console(stderr=True)
    if len(run_dirs) > 1:
        identities = [identity(r, d) for r, d in zip(run_ids, run_dirs)]
        differs = difference(identities)
        if differs and not pool_anyway:
            raise InputError(f"{differs}: not pooled as replicates (--pool-anyway pools them regardless)")
        for line in filter(None, [f"pooled although {differs}" if differs else None, caveat(identities)]):
            err.print(f"[yellow]moecluster: warning: {escape(line)}[/yellow]")
    if "parquet" in formats:  # optional dependencies, checked before anything is written
        require("pyarrow", extra="report", feature="--format parquet")
    if html_dir is not None:
        require("matplotlib", extra="report", feature="--html (the report's figures)")
    for option, directory in (("--out", out_dir if formats else None), ("--html", html_dir)):
        if directory is not None:
            writable_dir(directory, option)
    results = []
    for one, directory in zip(run_ids, run_dirs):
        try:
            with RunStore(directory, read_only=True) as store:  # a report never writes the store
                stored = store.results()
        except StoreDamaged as exc:
            raise InputError(f"run {one!r} is damaged: {exc}") from None
        if not stored:
            raise InputError(f"run {one!r} has no stored results yet ({directory})")
        if len(run_dirs) > 1:  # the run each record came from, as given (a copied store may carry another id)
            stored = [replace(r, spec=replace(r.spec, run_id=one)) for r in stored]
        results += stored
    if prometheus_url and not prometheus_url.startswith(("http://", "https://")):
        raise InputError(f"--prometheus {prometheus_url!r}: expected an http:// or https:// URL")
    with err.status(f"reading Prometheus at {prometheus_url}" if prometheus_url else "aggregating"):
        agg = aggregate(results, prometheus_url)
    if prometheus_url and agg.cluster is None:
        err.print(f"[yellow]moecluster: warning: cluster-wide energy {escape(agg.cluster_note)}[/yellow]")
    meta = run_meta(run_dir)
    if len(run_dirs) > 1:
        meta["pooled runs"] = ", ".join(f"{r} ({d})" for r, d in zip(run_ids, run_dirs))
    if not quiet:
        wide = sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit()
        console = Console(width=None if wide else PIPE_WIDTH)
        for part in render(agg, run_id, meta):
            console.print(part)
            console.print()
    written: list[Path] = []
    unwritten: list[str] = []
    if formats:
        tables = frames(agg)
        target = out_dir or run_dir / ("report" if len(run_dirs) == 1 else "report-pooled")
        export_meta = {"run_id": run_id, **meta, "cluster": agg.cluster_note}
        for fmt in formats:
            try:
                written += write(tables, target, fmt, export_meta)
            except OSError as exc:
                raise InputError(f"--out {target}: cannot write: {exc.strerror or exc}") from None
        unwritten = empty(tables)
    if html_dir is not None:
        try:
            written.append(write_html(agg, run_id, meta, html_dir))
        except OSError as exc:
            raise InputError(f"--html {html_dir}: cannot write: {exc.strerror or exc}") from None
    for path in written:
        click.echo(f"wrote {path}", err=not quiet)
    if unwritten:
        click.echo(f"not written, no rows: {', '.join(unwritten)}", err=not quiet)


COMMANDS = [report]
