"""Bad user input, as the head's use cases raise it and the CLI prints it.

It lives outside `cli/` so that the use cases (the run directory, the sweep loader's callers) can
refuse input without importing the CLI; the CLI turns it into one line and exit code 2.
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad user input (option, sweep file, shape, run id). The message names the culprit."""
