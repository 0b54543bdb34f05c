"""The session's own machine state (tests/conftest.py): every machine-wide place moecluster and
Ray keep state resolves inside it, in this process and in a child process (a CLI run, a Ray
node), so a test's submit never sees another run's registration, locks, labels or Ray session."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def places() -> dict[str, str]:
    """Where this process would keep each kind of machine-wide state."""
    from ray._common.utils import get_default_ray_temp_dir
    from ray._private.authentication.authentication_token_setup import _get_default_token_path

    from moecluster.node.agent.task_labels import default_state_dir
    from moecluster.measure.meters.idle import IdleCache
    from moecluster.node.device_lock import default_lock_dir
    from moecluster.head.local_submits import default_dir
    from moecluster.head.rundir import runs_root

    return {"submit registry": str(default_dir()), "device locks": str(default_lock_dir()),
            "task labels": str(default_state_dir()), "idle cache": str(IdleCache().directory),
            "runs": str(runs_root().resolve()), "ray sessions": get_default_ray_temp_dir(),
            "ray auth token": os.environ.get("RAY_AUTH_TOKEN_PATH", str(_get_default_token_path()))}


def test_machine_wide_state_is_the_sessions_own(_own_machine_state: Path) -> None:
    child = subprocess.run([sys.executable, __file__], capture_output=True, text=True, check=True)
    in_child = json.loads(child.stdout)
    assert in_child == places()
    outside = {what: path for what, path in in_child.items() if not Path(path).is_relative_to(_own_machine_state)}
    assert outside == {}


if __name__ == "__main__":
    print(json.dumps(places()))
