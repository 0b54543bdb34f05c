"""`moecluster dashboards`: the Grafana dashboards as JSON, pushed to a Grafana, and the head's
results exporter that the Sweep and Results dashboards read."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from moecluster.cli.errors import InputError
from moecluster.cli.finite import FiniteFloatRange
from moecluster.report.outdir import writable_dir


@click.group("dashboards")
def dashboards() -> None:
    """Grafana dashboards (Cluster, Sweep (live), Results) as code.

    `export DIR` writes their JSON (for Grafana's file provisioning or its import page),
    `push --url URL` uploads them with their Prometheus datasource, and `serve-results` exports
    the finished results and run progress they show (run it on the head, beside the runs).
    """


@dashboards.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export_cmd(directory: Path) -> None:
    """Write the dashboards' JSON into DIRECTORY (one <uid>.json each)."""
    from moecluster.report.dashboards.export import export

    writable_dir(directory, "DIRECTORY")
    for path in export(directory):
        click.echo(str(path))


@dashboards.command("push")
@click.option("--url", required=True, metavar="URL", help="Grafana's base URL, e.g. http://head:3000.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File holding a Grafana service account token (one line). Default: $GRAFANA_TOKEN; neither:"
                   " anonymous access. The token is never taken from the command line.")
@click.option("--prometheus-url", default=None, metavar="URL",
              help="Where Grafana's server reaches Prometheus, for the datasource.  [default: http://localhost:9090]")
@click.option("--scrape-interval", default=None, metavar="DURATION",
              help="Prometheus' scrape interval (the datasource's timeInterval, for $__rate_interval).  [default: 15s]")
@click.option("--no-datasource", is_flag=True,
              help="Leave datasources alone (the dashboards' `datasource` variable picks an existing Prometheus).")
@click.option("--timeout", "timeout_s", type=FiniteFloatRange(min=0.1), default=15.0, show_default=True,
              help="Seconds to wait for each request.")
def push_cmd(url: str, token_file: Path | None, prometheus_url: str | None, scrape_interval: str | None,
             no_datasource: bool, timeout_s: float) -> None:
    """Upload the dashboards (and the Prometheus datasource they default to) to the Grafana at URL."""
    from moecluster.report.dashboards.datasource import (
        DEFAULT_PROMETHEUS_URL,
        DEFAULT_SCRAPE_INTERVAL,
        prometheus_datasource,
    )
    from moecluster.report.dashboards.export import build_all
    from moecluster.report.dashboards.push import Grafana, GrafanaError, TokenError, check_url, push, read_token, \
        token_file_is_private

    if no_datasource and (prometheus_url or scrape_interval):
        raise InputError("--prometheus-url and --scrape-interval describe the datasource: drop --no-datasource")
    try:
        check_url(url)
        if prometheus_url is not None:
            check_url(prometheus_url, "--prometheus-url")
        token = read_token(token_file)
    except (ValueError, TokenError) as exc:
        raise InputError(str(exc)) from None
    if token_file is not None and not token_file_is_private(token_file):
        click.echo(f"moecluster: warning: --token-file {token_file} is readable by other users (chmod 600 it)",
                   err=True)
    datasource = None if no_datasource else prometheus_datasource(prometheus_url or DEFAULT_PROMETHEUS_URL,
                                                                  scrape_interval or DEFAULT_SCRAPE_INTERVAL)
    dashboards_json = build_all()
    try:
        report = push(Grafana(url, token, timeout_s=timeout_s), dashboards_json, datasource=datasource)
    except GrafanaError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Grafana {report.grafana_version} at {url.rstrip('/')}")
    for line in report.lines:
        click.echo(f"  {line}")


@dashboards.command("serve-results")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Root of the run directories (default: $MOECLUSTER_RUNS_DIR, else ./runs).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (Prometheus on the head reaches loopback; 0.0.0.0 to serve others).")
@click.option("--port", type=click.IntRange(0, 65535), default=9401, show_default=True,
              help="TCP port of /metrics (0: any free port).")
@click.option("--max-runs", type=click.IntRange(min=0), default=20, show_default=True,
              help="Export the most recent runs only (0: every run).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info", show_default=True)
def serve_results_cmd(runs_dir: Path | None, host: str, port: int, max_runs: int, log_level: str) -> None:
    """Serve finished results and run progress at /metrics, for the Sweep and Results dashboards.

    Per run: its state and tasks planned/ok/failed/missing; per finished task, pair and
    expert-parallel task: the report's figures with their 95 % intervals. Read-only (the stores
    are opened read-only); stops cleanly on SIGTERM.
    """
    from moecluster.head import rundir
    from moecluster.report.results_exporter import ResultsExporterConfig, serve

    config = ResultsExporterConfig(runs_dir=rundir.runs_root(runs_dir), host=host, port=port,
                                   max_runs=max_runs or None)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s moecluster-results %(levelname)s %(message)s")
    try:
        serve(config)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


COMMANDS = [dashboards]
