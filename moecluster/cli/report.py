"""`moecluster report <run-id> [<run-id> ...]`: the run's answers as tables, files and an HTML page.

Several runs of one sweep (on other machines, other days) are pooled as replicates of one another,
after a check that they measured the same sweep with the same code (`report.pooled`); a run that
differs is refused in one line naming the difference, unless `--pool-anyway`.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from moecluster.report.aggregate import Aggregate
from moecluster.report.build import ReportRequest, build_report
from moecluster.report.export import FORMATS
from moecluster.report.tables import render

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
    files = build_report(ReportRequest(run_ids=run_ids, runs_dir=runs_dir, formats=formats, out_dir=out_dir,
                                       html_dir=html_dir, prometheus_url=prometheus_url, pool_anyway=pool_anyway),
                         TerminalView(quiet=quiet))
    for path in files.written:
        click.echo(f"wrote {path}", err=not quiet)
    if files.unwritten:
        click.echo(f"not written, no rows: {', '.join(files.unwritten)}", err=not quiet)


class TerminalView:
    """The report on the terminal: its tables on stdout (none when `quiet`), warnings and a status line on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.err = Console(stderr=True)

    def warn(self, line: str) -> None:
        self.err.print(f"[yellow]moecluster: warning: {escape(line)}[/yellow]")

    @contextmanager
    def aggregating(self, prometheus_url: str | None) -> Iterator[None]:
        with self.err.status(f"reading Prometheus at {prometheus_url}" if prometheus_url else "aggregating"):
            yield

    def show(self, agg: Aggregate, run_id: str, meta: dict[str, Any]) -> None:
        if self.quiet:
            return
        wide = sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit()
        console = Console(width=None if wide else PIPE_WIDTH)
        for part in render(agg, run_id, meta):
            console.print(part)
            console.print()


COMMANDS = [report]
