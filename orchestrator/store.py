"""The result store: one SQLite file per run, one row per finished task.

Each result is written in its own transaction the moment it arrives, so a killed head
loses nothing that finished. A task is stored once: a later record for the same task
replaces a failed one (a retry on resume) but never an `ok` one.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterator

from moecluster.agents.records import TaskResult

STORE_NAME = "results.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    task_id     TEXT PRIMARY KEY,
    pair_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    finished_at REAL NOT NULL,
    record      TEXT NOT NULL
)
"""


class RunStore:
    """The SQLite store of one run directory (`runs/<run-id>/results.sqlite`)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / STORE_NAME
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(_SCHEMA)

    def add(self, result: TaskResult) -> bool:
        """Store `result`; True if it was written (False: an `ok` row for the task exists)."""
        with self._conn:
            cur = self._conn.execute(
                "INSERT INTO results (task_id, pair_id, kind, status, finished_at, record)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(task_id) DO UPDATE SET status=excluded.status,"
                " finished_at=excluded.finished_at, record=excluded.record"
                " WHERE results.status != 'ok'",
                (result.spec.task_id, result.spec.pair_id, result.spec.kind, result.status,
                 result.finished_at, result.to_json()),
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

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
