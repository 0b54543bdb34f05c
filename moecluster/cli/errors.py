"""The CLI's side of `head.errors.InputError`: a refused sweep's problems, one line each."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from moecluster.head.errors import InputError

if TYPE_CHECKING:
    from moecluster.head.sweep import SweepError

__all__ = ["InputError", "sweep_refused"]


def sweep_refused(exc: SweepError) -> InputError:
    """Every problem of a refused sweep on its own line: all but the last printed here, the last
    returned as the InputError that ends the command (so the count of lines is the count of problems)."""
    *before, last = exc.report_lines()
    for line in before:
        click.echo(f"moecluster: error: {line}", err=True)
    return InputError(last)
