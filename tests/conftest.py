"""For every test: device locks (agents/node/device_lock.py) in a directory of this session's own,
so tests never wait for, or hold up, real runs of this user on the machine. Set before any Ray
instance or CLI process starts, which inherit it."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _session_lock_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ.setdefault("MOECLUSTER_LOCK_DIR", str(tmp_path_factory.mktemp("device-locks")))
