"""`moecluster report <run-id>`: the run's answers as tables, files and an HTML page."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from moecluster.agents.extras import require
from moecluster.orchestrator.aggregate import aggregate
from moecluster.orchestrator.report import FORMATS, empty, frames, render, run_meta, write, write_html
from moecluster.orchestrator.rundir import find_run, runs_root
from moecluster.orchestrator.store import RunStore, StoreDamaged

from .errors import InputError
from .outdir import writable_dir

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
@click.argument("run_id")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs root (default: $MOECLUSTER_RUNS_DIR, else ./runs).")
@click.option("--format", "formats", multiple=True, callback=_formats, metavar="FORMAT...",
              help=f"Also write the tables in these formats ({', '.join(FORMATS)}): `--format csv json`,"
                   " `--format csv,json` or the flag repeated. One file per table for csv/parquet, one report.json"
                   " for json.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where --format writes (default: <run dir>/report).")
@click.option("--html", "html_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write a self-contained HTML page with the plots to DIR/index.html.")
@click.option("--prometheus", "prometheus_url", envvar="MOECLUSTER_PROMETHEUS_URL", metavar="URL", default=None,
              help="Prometheus URL for the cluster-wide energy (e.g. http://head:9090;"
                   " env MOECLUSTER_PROMETHEUS_URL).")
@click.option("--quiet", "-q", is_flag=True, help="Do not print the tables (only the paths written).")
def report(run_id: str, runs_dir: Path | None, formats: tuple[str, ...], out_dir: Path | None, html_dir: Path | None,
           prometheus_url: str | None, quiet: bool) -> None:
    """Tables, exports and plots of RUN_ID: MoE/dense pairs side by side (ratios of inferences/s, W,
    inferences/J with 95 % CIs), seed 000's normalisations, the break-even size, the roofline, expert
    parallelism and, with --prometheus, the energy of every GPU of the cluster over the run.
    """
    run_dir = find_run(runs_root(runs_dir), run_id)
    if "parquet" in formats:  # optional dependencies, checked before anything is written
        require("pyarrow", extra="report", feature="--format parquet")
    if html_dir is not None:
        require("matplotlib", extra="report", feature="--html (the report's figures)")
    for option, directory in (("--out", out_dir if formats else None), ("--html", html_dir)):
        if directory is not None:
            writable_dir(directory, option)
    try:
        with RunStore(run_dir, read_only=True) as store:  # a report never writes the store
            results = store.results()
    except StoreDamaged as exc:
        raise InputError(f"run {run_id!r} is damaged: {exc}") from None
    if not results:
        raise InputError(f"run {run_id!r} has no stored results yet ({run_dir})")
    err = Console(stderr=True)
    if prometheus_url and not prometheus_url.startswith(("http://", "https://")):
        raise InputError(f"--prometheus {prometheus_url!r}: expected an http:// or https:// URL")
    with err.status(f"reading Prometheus at {prometheus_url}" if prometheus_url else "aggregating"):
        agg = aggregate(results, prometheus_url)
    if prometheus_url and agg.cluster is None:
        err.print(f"[yellow]moecluster: warning: cluster-wide energy {escape(agg.cluster_note)}[/yellow]")
    meta = run_meta(run_dir)
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
        target = out_dir or run_dir / "report"
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
