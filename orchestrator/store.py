"""The result store: one SQLite file per run, one row per finished task.

Each result is written in its own transaction the moment it arrives, so a killed head
loses nothing that finished. A task is stored once: a later record for the same task
replaces a failed one (a retry on resume) but never an `ok` one.

Beside the results, the store keeps the run's plan (every task the sweep expanded to, with
its estimated seconds), so `status` and `--resume` know what is missing, and a few run
facts (`meta`: state, host and pid of the submitting head, times).
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Iterator

from moecluster.agents.records import TaskResult, TaskSpec

STORE_NAME = "results.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    task_id     TEXT PRIMARY KEY,
    pair_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    finished_at REAL NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 1,
    record      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plan (
    task_id     TEXT PRIMARY KEY,
    pair_id     TEXT NOT NULL,
    position    INTEGER NOT NULL,
    estimated_s REAL NOT NULL,
    spec        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class RunStore:
    """The SQLite store of one run directory (`runs/<run-id>/results.sqlite`)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / STORE_NAME
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)

    # -- results ---------------------------------------------------------------------------
    def add(self, result: TaskResult, attempts: int = 1) -> bool:
        """Store `result`; True if it was written (False: an `ok` row for the task exists).

        `attempts` is how many times the task was started (Ray retries after a lost node).
        """
        with self._conn:
            cur = self._conn.execute(
                "INSERT INTO results (task_id, pair_id, kind, status, finished_at, attempts, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(task_id) DO UPDATE SET status=excluded.status,"
                " finished_at=excluded.finished_at, attempts=excluded.attempts, record=excluded.record"
                " WHERE results.status != 'ok'",
                (result.spec.task_id, result.spec.pair_id, result.spec.kind, result.status,
                 result.finished_at, attempts, result.to_json()),
            )
            return cur.rowcount > 0

    def results(self) -> list[TaskResult]:
        return list(self._iter("SELECT record FROM results ORDER BY finished_at"))

    def _iter(self, sql: str) -> Iterator[TaskResult]:
        for (record,) in self._conn.execute(sql):
            yield TaskResult.from_json(record)

    def task_status(self) -> dict[str, str]:
        """task_id -> status of every stored task."""
        return dict(self._conn.execute("SELECT task_id, status FROM results"))

    def attempts(self) -> dict[str, int]:
        """task_id -> how many times the stored run of the task was started."""
        return dict(self._conn.execute("SELECT task_id, attempts FROM results"))

    # -- plan ------------------------------------------------------------------------------
    def set_plan(self, tasks: Iterable[tuple[TaskSpec, float]]) -> None:
        """Record planned tasks with their estimated seconds, after those already planned
        (a task already in the plan keeps its place)."""
        with self._conn:
            (start,) = self._conn.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM plan").fetchone()
            rows = [(spec.task_id, spec.pair_id, start + i, est, json.dumps(spec.to_dict(), sort_keys=True))
                    for i, (spec, est) in enumerate(tasks)]
            self._conn.executemany(
                "INSERT OR IGNORE INTO plan (task_id, pair_id, position, estimated_s, spec)"
                " VALUES (?, ?, ?, ?, ?)", rows)

    def planned(self) -> list[tuple[TaskSpec, float]]:
        """The planned tasks in sweep order, with their estimated seconds."""
        rows = self._conn.execute("SELECT spec, estimated_s FROM plan ORDER BY position")
        return [(TaskSpec.from_dict(json.loads(spec)), est) for spec, est in rows]

    def counts(self) -> dict[str, int]:
        """Tasks planned, stored `ok`, stored `failed`, and missing (planned, not stored)."""
        (planned,) = self._conn.execute("SELECT COUNT(*) FROM plan").fetchone()
        by_status = dict(self._conn.execute("SELECT status, COUNT(*) FROM results GROUP BY status"))
        (missing,) = self._conn.execute(
            "SELECT COUNT(*) FROM plan WHERE task_id NOT IN (SELECT task_id FROM results)").fetchone()
        return {"planned": planned, "ok": by_status.get("ok", 0), "failed": by_status.get("failed", 0),
                "missing": missing}

    # -- run facts -------------------------------------------------------------------------
    def set_meta(self, **values: Any) -> None:
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                   [(k, json.dumps(v)) for k, v in values.items()])

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._conn.execute("SELECT key, value FROM meta")}

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
