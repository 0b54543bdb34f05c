"""For every test session: the machine-wide state moecluster and Ray keep, in a directory of this
session's own, so tests neither see nor disturb other runs on the machine (a real `moecluster
submit`, another test session) and a user's own settings do not change what tests see.

What is shared otherwise, and how it is moved here:
- `/tmp/moecluster-<uid>/` (the running-submit registry of `head.local_submits`, device
  locks, task labels) and `/tmp/moecluster-idle` follow `tempfile.gettempdir()`; Ray's
  `/tmp/ray` (sessions, the address of "the" local cluster) follows `$TMPDIR` unless
  `$RAY_TMPDIR` is set: so `$TMPDIR` (and `tempfile.tempdir`, which caches it) point here.
  The directory is short (`/tmp/mct-XXXXXXXX`): Ray's socket paths under it must stay within
  the 107 characters of a Unix socket name.
- `~/.ray/auth_token`, which a local Ray instance creates and reads: `$RAY_AUTH_TOKEN_PATH`
  names a fresh token here instead.
- The variables a user may have set that change where runs go or what they join
  (`$MOECLUSTER_LOCK_DIR`, `_STATE_DIR`, `_RUNS_DIR` are set to directories here; the rest are
  removed).
Set before any Ray instance or CLI process starts, which inherit it; pytest's own `tmp_path`
directories stay where pytest keeps them. The directory is removed when the session ends.

Two test doubles are loaded here under names of their own, so tests in any folder import them:
the synthetic-results builders (tests/report/aggregate/synthetic.py) as `moecluster_synthetic`, used by
the aggregate, estimate, report and CLI tests, and the fake-GPU Ray cluster
(tests/head/schedule/fakecluster.py) as `moecluster_fakecluster`.
"""
from __future__ import annotations

import importlib.util
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from moecluster.workloads.serve.tiny import TinyModel, write_tiny_models



def _load(name: str, relative: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_load("moecluster_synthetic", "report/aggregate/synthetic.py")
_load("moecluster_fakecluster", "head/schedule/fakecluster.py")

# moecluster's own directories, set to subdirectories of the session's directory
STATE_DIRS = {"MOECLUSTER_LOCK_DIR": "device-locks", "MOECLUSTER_STATE_DIR": "task-labels",
              "MOECLUSTER_RUNS_DIR": "runs"}
# set by a user, these would make tests wait longer, join another cluster, write elsewhere or
# send a real token; tests that need one set it themselves
REMOVED = ("MOECLUSTER_DEVICE_WAIT_S", "MOECLUSTER_PROMETHEUS_URL", "GRAFANA_TOKEN", "RAY_ADDRESS", "RAY_TMPDIR",
           "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")


@pytest.fixture(scope="session", autouse=True)
def _own_machine_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp_path_factory.getbasetemp()  # pytest's directories: fixed before $TMPDIR moves
    # under /tmp, not a long $TMPDIR: Ray's socket paths below it must stay under 107 characters
    root = Path(tempfile.mkdtemp(prefix="mct-", dir="/tmp"))
    token = root / "ray-auth-token"
    token.write_text(secrets.token_hex(16))
    token.chmod(0o600)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(root))
        patch.setattr(tempfile, "tempdir", str(root))
        patch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
        for name, sub in STATE_DIRS.items():
            patch.setenv(name, str(root / sub))
        for name in REMOVED:
            patch.delenv(name, raising=False)
        yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_served_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyModel, TinyModel]:
    """The tiny served MoE and dense models (`workloads.serve.tiny`), written once per session:
    random weights and a BPE tokenizer trained in-process, nothing downloaded."""
    pytest.importorskip("transformers")
    return write_tiny_models(tmp_path_factory.mktemp("served-models"))
