"""`moecluster --help` and `moecluster agent` load no heavy library: the root command lists its
subcommands without importing them, and the agent needs neither pandas, scipy, torch nor Ray."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from moecluster.cli import COMMANDS, cli, source_help

MOECLUSTER = str(Path(sys.executable).parent / "moecluster")
HEAVY = ("pandas", "scipy", "torch", "ray", "numpy", "transformers")


def imported_modules(importtime_stderr: str) -> set[str]:
    """The modules `python -X importtime` reported importing."""
    return {m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", importtime_stderr, re.M)}


@pytest.mark.parametrize("args", [["--help"], ["agent", "--help"]])
def test_help_imports_no_heavy_library(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", MOECLUSTER, *args], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    modules = imported_modules(done.stderr)
    assert "moecluster.cli" in modules  # the report is read
    assert not {m.split(".")[0] for m in modules} & set(HEAVY), sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_root_help_lists_every_command_with_its_own_short_help() -> None:
    """The lines read from the sources are what each command, once imported, says of itself."""
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
        assert click.Command(name, help=source_help(name)).get_short_help_str(80) == command.get_short_help_str(80)
