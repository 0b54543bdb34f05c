"""Gangs are refused, in one line, where the node side of expert parallelism is missing."""
from __future__ import annotations

import pytest

from moecluster.node import capability


def test_a_missing_module_or_name_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capability, "NEEDED", {"moecluster.node.no_such_module": ("run",)})
    problem = capability.gang_problem()
    assert problem is not None and "moecluster.node.no_such_module" in problem and "\n" not in problem
    monkeypatch.setattr(capability, "NEEDED", {"moecluster.spec.records": ("no_such_name",)})
    assert capability.gang_problem() == ("the node side of expert parallelism lacks no_such_name in"
                                         " moecluster.spec.records")
