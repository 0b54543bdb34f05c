"""A click float option that refuses `inf` and `nan`.

`click.FloatRange` accepts `inf` (it is above any minimum) and `nan` (no comparison fails), so
`bench --duration inf` used to run forever with no output. Every float option of the CLI uses
this type instead, so a non-finite value is one line naming the option and exit code 2.
"""
from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloatRange(click.FloatRange):
    """`click.FloatRange` that also rejects non-finite values (`inf`, `-inf`, `nan`)."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Convert like `FloatRange`, then fail on a value that is not a finite number."""
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number
