"""The state of a run as its store records it: `running`, `finished`, `incomplete`, `interrupted`."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from moecluster.head import rundir


def run_state(meta: dict[str, Any], run_dir: Path | None = None) -> str:
    """The recorded state, corrected by who holds the run: with `run_dir` and its lock file, a
    run is `running` exactly while a head holds its lock, and a recorded `running` that no one
    holds is `interrupted` (its head is gone, e.g. killed, or stopped by a full disk before it
    could say so). Without a lock file (a run made before runs were locked): `running`, unless
    the head that ran it is gone (same host, dead pid)."""
    state = str(meta.get("state", "unknown"))
    if run_dir is not None and rundir.has_lock_file(run_dir):
        if rundir.lock_holder(run_dir) is not None:
            return "running"
        return "interrupted" if state == "running" else state
    if state == "running" and meta.get("host") == socket.gethostname():
        try:
            os.kill(int(meta.get("pid", 0)), 0)
        except (ProcessLookupError, ValueError):
            return "interrupted"
        except PermissionError:
            pass
    return state
