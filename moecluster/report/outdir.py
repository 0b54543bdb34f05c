"""Check an output directory option before any work, so a bad one is one line, not a traceback."""
from __future__ import annotations

from pathlib import Path

from moecluster.head.errors import InputError


def writable_dir(path: Path, option: str) -> Path:
    """Create `path` (and parents) if needed; InputError naming `option` and the path otherwise.

    `report --out /dev/null/x` or `--html /proc/1/nope` used to fail with a traceback after the
    tables were printed; checked first, the report either writes everything or starts nothing.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot create the directory: {exc.strerror or exc}") from None
    if not path.is_dir():
        raise InputError(f"{option} {path}: not a directory")
    return path
