"""The run use case without the CLI: plan, execute on a local Ray instance, interruption."""
from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from moecluster.head.run import RunInterrupted, RunOptions, execute, plan_new, plan_resume
from moecluster.head.store import RunStore
from moecluster.head.sweep import PairPlan

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# two pairs of a tiny model, one short window each, on the CPU, no energy meter
SWEEP = ("name: usecase\nreplicates: 1\n"
         "models: [{name: tiny, num_experts: 4, expert_hidden_dim: 32, expert_num_layers: 1, top_k: 2}]\n"
         "impl: sorted\nseed: [0, 1]\nbatch_size: 32\nduration_s: 0.2\nwarmup_s: 0.05\nrepeats: 1\n"
         "device: cpu\nmeter: none\n")
OPTIONS = RunOptions(num_cpus=1, num_gpus=0, agents=False)


class View:
    """Records what the run says; `stop_after` stored results, raises KeyboardInterrupt (a Ctrl-C)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.lines: list[str] = []
        self.task_ids: list[str] = []
        self.stop_after = stop_after

    def notice(self, line: str) -> None:
        self.lines.append(line)

    def warning(self, line: str) -> None:
        self.lines.append(f"warning: {line}")

    def pair_started(self, pair: PairPlan, node: str, attempt: int) -> None:
        return None

    def pair_retried(self, pair: PairPlan, attempt: int, reason: str) -> None:
        self.lines.append(f"retried {pair.pair_id}")

    def stored(self, result: Any, written: bool) -> None:
        self.task_ids.append(result.spec.task_id)
        if self.stop_after is not None and len(self.task_ids) >= self.stop_after:
            raise KeyboardInterrupt

    @contextmanager
    def sweep_progress(self, pairs: Sequence[PairPlan], slots: int, name: str) -> Iterator["View"]:
        yield self


def test_a_run_is_planned_executed_and_recorded_without_the_cli(tmp_path: Path) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP)
    view = View()
    outcome = execute(plan_new(sweep, {}, tmp_path / "runs", "u", max_tasks=100), OPTIONS, view)
    assert outcome.state == "finished" and outcome.counts == {"ok": 4, "failed": 0}
    assert outcome.totals == {"planned": 4, "ok": 4, "failed": 0, "missing": 0}
    assert sorted(view.task_ids) == sorted(t.task_id for t in plan_new(sweep, {}, tmp_path / "x", "u", 100).plan.tasks)
    assert view.lines[0].startswith("run u: 4 tasks in 2 pairs on 1 node(s)")
    assert not any(line.startswith("warning") for line in view.lines)  # a local instance has the settings


def test_an_interrupted_run_is_marked_and_resumes_what_is_missing(tmp_path: Path) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP)
    root = tmp_path / "runs"
    with pytest.raises(RunInterrupted) as info:
        execute(plan_new(sweep, {}, root, "i", max_tasks=100), OPTIONS, View(stop_after=1))
    assert info.value.signum == signal.SIGINT and info.value.run_id == "i"
    with RunStore(root / "i", read_only=True) as store:
        assert store.meta()["state"] == "interrupted" and store.counts()["ok"] >= 1
    rest = plan_resume(root, "i")
    assert 0 < rest.tasks < 4
    outcome = execute(rest, OPTIONS, View())
    assert outcome.state == "finished" and outcome.totals["ok"] == 4
