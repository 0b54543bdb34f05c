"""The `moecluster` command line: one click group; each subcommand lives in its own module.

Usage errors (bad options, bad input files) end with one line on stderr naming the culprit
and exit code 2; nothing is started.
"""
from __future__ import annotations

import sys

import click

from .errors import InputError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="moecluster")
def cli() -> None:
    """moecluster: is a Mixture-of-Experts model more energy-efficient than a dense one?

    Measure matched dense/MoE pairs (throughput, GPU energy from NVML's hardware counter,
    roofline fraction) on one machine (`bench`) or a Ray cluster (`submit`).
    """


def _register() -> None:
    from . import bench

    cli.add_command(bench.bench)
    for module_name in ("submit", "report", "estimate", "agent"):
        try:
            module = __import__(f"{__name__}.{module_name}", fromlist=["COMMANDS"])
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module_name}":
                raise
            continue
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors, exit code 2 for bad input."""
    try:
        rv = cli.main(args=argv, prog_name="moecluster", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("moecluster: aborted", err=True)
        sys.exit(130)
    except (click.UsageError, InputError) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"moecluster: error: {' '.join(message.split())}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"moecluster: error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)
