"""The one error type the CLI turns into a one-line message and exit code 2."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from moecluster.orchestrator.sweep import SweepError


class InputError(ValueError):
    """Bad user input (option, sweep file, shape). The message names the culprit."""


def sweep_refused(exc: SweepError) -> InputError:
    """Every problem of a refused sweep on its own line: all but the last printed here, the last
    returned as the InputError that ends the command (so the count of lines is the count of problems)."""
    *before, last = exc.report_lines()
    for line in before:
        click.echo(f"moecluster: error: {line}", err=True)
    return InputError(last)
