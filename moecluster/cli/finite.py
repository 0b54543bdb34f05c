"""Click number types that refuse what no command can use: `inf`, `nan`, values beyond a bound,
quantities Ray cannot hold, and number arguments too long to quote.

`click.FloatRange` accepts `inf` (it is above any minimum) and `nan` (no comparison fails), so
`bench --duration inf` used to run forever with no output; `--cpus-per-task 1e-300` passed to Ray
ended in a traceback. Every number option of the CLI uses these types instead, so a bad value is
one line naming the option and exit code 2, quoting at most `MAX_SHOWN_CHARS` of what was given.
"""
from __future__ import annotations

import math
from typing import Any

import click

# Ray divides a resource into units of 1e-4 (`ray._private.ray_constants.MIN_RESOURCE_GRANULARITY`; a
# test keeps them equal): a smaller positive quantity cannot be asked for.
RAY_RESOURCE_GRANULARITY = 1e-4
# A number argument longer than this is no number any option takes (and is not echoed in full).
MAX_NUMBER_CHARS = 40


def _too_long(value: Any, kind: click.ParamType, param: click.Parameter | None, ctx: click.Context | None) -> None:
    """Fail, quoting the value cut, when a number argument is longer than `MAX_NUMBER_CHARS`."""
    if isinstance(value, str) and len(value) > MAX_NUMBER_CHARS:
        from moecluster.head.sweep.shown import shown  # only on this failure path: the sweep is heavy

        kind.fail(f"{shown(value)} is not a number of at most {MAX_NUMBER_CHARS} characters.", param, ctx)


class FiniteFloatRange(click.FloatRange):
    """`click.FloatRange` that also rejects non-finite values (`inf`, `-inf`, `nan`) and overlong text."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Convert like `FloatRange`, then fail on a value that is not a finite number."""
        _too_long(value, self, param, ctx)
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):  # before the range, which would name the bound instead
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


class BoundedInt(click.IntRange):
    """`click.IntRange` that refuses an overlong argument before converting or echoing it."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        _too_long(value, self, param, ctx)
        return super().convert(value, param, ctx)


class RayQuantity(FiniteFloatRange):
    """A resource quantity for Ray: 0 (hold none) or from Ray's granularity up to `max`."""

    name = "resource quantity"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if 0 < number < RAY_RESOURCE_GRANULARITY:
            self.fail(f"{number:g} is below {RAY_RESOURCE_GRANULARITY:g}, the smallest quantity Ray can hold"
                      " (give 0 to hold none).", param, ctx)
        return number


class BoundedText(click.ParamType):
    """A name (a preset, an architecture): text of at most `max_chars`, so that a refusal quoting
    it stays one short line."""

    name = "text"

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and len(value) > self.max_chars:
            from moecluster.head.sweep.shown import shown

            self.fail(f"{shown(value)} is longer than {self.max_chars} characters.", param, ctx)
        return value
