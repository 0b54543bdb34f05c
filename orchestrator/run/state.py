"""The state of a run as its store records it: `running`, `finished`, `incomplete`, `interrupted`."""
from __future__ import annotations

import os
import socket
from typing import Any


def run_state(meta: dict[str, Any]) -> str:
    """`running`, unless the head that ran it is gone (same host, dead pid): then `interrupted`."""
    state = str(meta.get("state", "unknown"))
    if state == "running" and meta.get("host") == socket.gethostname():
        try:
            os.kill(int(meta.get("pid", 0)), 0)
        except (ProcessLookupError, ValueError):
            return "interrupted"
        except PermissionError:
            pass
    return state
