"""The one error type the CLI turns into a one-line message and exit code 2."""


class InputError(ValueError):
    """Bad user input (option, sweep file, shape). The message names the culprit."""
