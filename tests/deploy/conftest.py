"""Fixtures for the deployment tests (helpers in deploy_helpers.py)."""
from __future__ import annotations

import shutil
from typing import Any, Iterator

import pytest

from deploy_helpers import AgentProcess


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("Debian's prometheus is not installed (scripts/test.sh installs it: "
                    "apt-get install --no-install-recommends prometheus)")
    return path


@pytest.fixture
def agent_process() -> Iterator[Any]:
    started: list[AgentProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> AgentProcess:
        p = AgentProcess(*args, env=env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
