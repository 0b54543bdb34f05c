"""The run store: one row per task, never overwriting an ok result; the plan; run facts."""
from __future__ import annotations

from pathlib import Path

from moecluster.spec.records import TaskResult, TaskSpec, Window
from moecluster.head.store import RunStore


def spec(task_id: str, kind: str = "moe") -> TaskSpec:
    return TaskSpec(task_id=task_id, pair_id="p1", kind=kind, impl="sorted" if kind == "moe" else "dense",  # type: ignore[arg-type]
                    model={"hidden_dim": 8, "num_layers": 1})


def result(task_id: str, status: str, finished_at: float, inferences: int = 10) -> TaskResult:
    windows = (Window(inferences=inferences, duration_s=1.0, energy_j=5.0),) if status == "ok" else ()
    return TaskResult(spec=spec(task_id), status=status, error=None if status == "ok" else "boom",  # type: ignore[arg-type]
                      windows=windows, energy_source="fake-power-model" if status == "ok" else None,
                      energy_unavailable_reason=None if status == "ok" else "failed", finished_at=finished_at)


def test_failed_is_replaced_but_ok_is_kept(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        assert store.add(result("a", "failed", 1.0))
        assert store.add(result("a", "ok", 2.0, inferences=7), attempts=2)
        assert not store.add(result("a", "ok", 3.0, inferences=99))
        assert not store.add(result("a", "failed", 4.0))
        (only,) = store.results()
        assert only.status == "ok" and only.windows[0].inferences == 7
        assert store.task_status() == {"a": "ok"} and store.attempts() == {"a": 2}


def test_results_survive_reopening_and_round_trip(tmp_path: Path) -> None:
    original = result("b", "ok", 5.0)
    with RunStore(tmp_path) as store:
        store.add(original)
    with RunStore(tmp_path) as store:
        assert store.results() == [original]


def test_plan_counts_and_meta(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        store.set_plan([(spec("a"), 10.0), (spec("b", "dense"), 12.5), (spec("c"), 1.0)])
        store.set_plan([(spec("z"), 1.0)])  # a resume never replaces the plan's order
        assert [(s.task_id, est) for s, est in store.planned()] == [("a", 10.0), ("b", 12.5), ("c", 1.0), ("z", 1.0)]
        store.add(result("a", "ok", 1.0))
        store.add(result("b", "failed", 2.0))
        assert store.counts() == {"planned": 4, "ok": 1, "failed": 1, "missing": 2}
        store.set_meta(state="running", pid=123)
        store.set_meta(state="finished")
        assert store.meta() == {"state": "finished", "pid": 123}


def test_read_only_never_writes_and_names_a_damaged_store(tmp_path: Path) -> None:
    import sqlite3

    import pytest

    from moecluster.head.store import StoreDamaged

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "results.sqlite").write_bytes(b"")
    with pytest.raises(StoreDamaged, match="empty"):
        RunStore(empty, read_only=True)
    assert (empty / "results.sqlite").stat().st_size == 0

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "results.sqlite").write_bytes(b"\x13\x37" * 4096)
    with pytest.raises(StoreDamaged, match="not a readable run store"):
        RunStore(junk, read_only=True)

    with RunStore(tmp_path) as store:
        store.add(result("good", "ok", 1.0))
        store.add(result("bad", "ok", 2.0))
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:
        conn.execute("UPDATE results SET record = '{not json' WHERE task_id = 'bad'")
    with RunStore(tmp_path, read_only=True) as store:
        assert store.task_status() == {"good": "ok", "bad": "ok"}
        with pytest.raises(StoreDamaged, match="record of task 'bad' is damaged"):
            store.results()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.set_meta(state="x")


def test_attempts_in_the_order_handed_out_with_their_losses(tmp_path: Path) -> None:
    import sqlite3

    from moecluster.head.store import PairAttempt

    with RunStore(tmp_path) as store:
        first = store.attempt_submitted("p1", 1, 10.0)
        store.attempt_submitted("p2", 1, 10.5)
        store.attempt_lost(first, 12.0, "NodeDiedError: gone")
        store.attempt_submitted("p1", 2, 12.5)
        store.attempt_submitted("p1", 1, 20.0)  # a resume numbers from 1 again
    with RunStore(tmp_path, read_only=True) as store:
        assert store.pair_attempts() == [PairAttempt("p1", 1, 10.0, 12.0, "NodeDiedError: gone"),
                                         PairAttempt("p2", 1, 10.5), PairAttempt("p1", 2, 12.5),
                                         PairAttempt("p1", 1, 20.0)]
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:
        conn.execute("DROP TABLE attempts")  # as written before attempts were recorded
    with RunStore(tmp_path, read_only=True) as store:
        assert store.pair_attempts() == []
