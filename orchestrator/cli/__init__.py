"""The `moecluster` command line: one click group; each subcommand lives in its own module.

Usage errors (bad options, bad input files) end with one line on stderr naming the culprit
and exit code 2; nothing is started.
"""
from __future__ import annotations

import importlib
import sys

import click

from moecluster.agents.extras import MissingExtra

from .errors import InputError


# command name -> module of this package defining it (in its COMMANDS list). Modules are
# imported only when their command runs, so `moecluster agent` never loads torch or pandas.
COMMAND_MODULES = {
    "agent": "agent", "bench": "bench", "dashboards": "dashboards", "estimate": "estimate", "report": "report",
    "runs": "submit", "status": "submit", "submit": "submit",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"{__name__}.{module_name}")
        return next(c for c in module.COMMANDS if c.name == cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="moecluster")
def cli() -> None:
    """moecluster: is a Mixture-of-Experts model more energy-efficient than a dense one?

    Measure matched dense/MoE pairs (throughput, GPU energy from NVML's hardware counter,
    roofline fraction) on one machine (`bench`) or a Ray cluster (`submit`), watch them live
    (`agent` + Prometheus), and read what the numbers mean (`report`, `estimate`).
    """


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
    except MissingExtra as exc:  # an optional dependency this command needs is not installed
        click.echo(f"moecluster: error: {exc}", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
