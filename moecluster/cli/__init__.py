"""The `moecluster` command line: one click group; each subcommand lives in its own module.

Usage errors (bad options, bad input files) end with one line on stderr naming the culprit
and exit code 2; nothing is started.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

import click

from moecluster.spec.extras import MissingExtra

from moecluster.cli.errors import InputError


# command name -> (module of this package defining it in its COMMANDS list, the function it
# decorates). Modules are imported only when their command runs; the root `--help` reads each
# command's one-line help from its function's docstring in the source, so neither it nor
# `moecluster agent` loads pandas, scipy, torch or Ray.
COMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("agent", "agent"), "bench": ("bench", "bench"), "dashboards": ("dashboards", "dashboards"),
    "estimate": ("estimate", "estimate_cmd"), "refine": ("refine", "refine"), "report": ("report", "report"),
    "runs": ("submit", "runs"),
    "status": ("submit", "status"), "submit": ("submit", "submit"),
}


def source_help(cmd_name: str) -> str:
    """The docstring of the function defining `cmd_name`, read from its module's source without
    importing it (what click shows as the command's help)."""
    module, function = COMMANDS[cmd_name]
    spec = importlib.util.find_spec(f"{__name__}.{module}")
    if spec is None or spec.origin is None:
        return ""
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    node = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function), None)
    return (ast.get_docstring(node) or "") if node is not None else ""


class LazyGroup(click.Group):
    """A group whose subcommands' modules are imported only when one of them runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"{__name__}.{COMMANDS[cmd_name][0]}")
        return next(c for c in module.COMMANDS if c.name == cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their one-line help, read from their sources (importing none of them)."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, click.Command(name, help=source_help(name)).get_short_help_str(limit))
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="moecluster")
def cli() -> None:
    """moecluster: is a Mixture-of-Experts model more energy-efficient than a dense one?

    Measure matched dense/MoE pairs (throughput, GPU energy from NVML's hardware counter,
    roofline fraction) on one machine (`bench`) or a Ray cluster (`submit`), watch them live
    (`agent` + Prometheus), and read what the numbers mean (`report`, `estimate`).
    """


# An error line: whole up to this length (a bound, its reason and a hint fit); longer, its head
# and tail are kept (the culprit is named first, the fix last) and the middle is cut, so that an
# option's value of a megabyte (click quotes it whole in "invalid choice" messages) is not echoed.
MAX_ERROR_CHARS = 600


def _one_line(message: str) -> str:
    """`message` on one line, control characters escaped; over `MAX_ERROR_CHARS`, its middle cut."""
    # imported here, on the error path only: the sweep package loads pydantic
    from moecluster.head.sweep.shown import clip

    flat = " ".join(message.split())
    if len(flat) <= MAX_ERROR_CHARS:
        return clip(flat, MAX_ERROR_CHARS)
    keep = MAX_ERROR_CHARS // 2
    cut = len(flat) - 2 * keep
    return f"{clip(flat[:keep], keep)} … ({cut:,} chars cut) … {clip(flat[-keep:], keep)}"


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
        click.echo(f"moecluster: error: {_one_line(message)}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"moecluster: error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except MissingExtra as exc:  # an optional dependency this command needs is not installed
        click.echo(f"moecluster: error: {exc}", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
