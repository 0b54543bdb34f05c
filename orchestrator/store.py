"""The result store: one SQLite file per run, one row per finished task.

Each result is written in its own transaction the moment it arrives, so a killed head
loses nothing that finished. A task is stored once: a later record for the same task
replaces a failed one (a retry on resume) but never an `ok` one.

Beside the results, the store keeps the run's plan (every task the sweep expanded to, with
its estimated seconds), so `status` and `--resume` know what is missing, a few run
facts (`meta`: state, host and pid of the submitting head, times), and every attempt the head
handed to Ray (`pair_attempts`: when, and when and why it was lost), on the head's clock.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

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
CREATE TABLE IF NOT EXISTS attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id      TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    submitted_at REAL NOT NULL,
    lost_at      REAL,
    lost_reason  TEXT
);
"""


@dataclass(frozen=True)
class PairAttempt:
    """One attempt of a pair as the head saw it (times on the head's clock, seconds since the
    epoch): handed to Ray at `submitted_at`; if it was lost (process or node gone, wrong GPU),
    when the head noticed and why: at `lost_at` the pair went back to the front of the queue,
    unless its retries were spent. A resumed run numbers its attempts from 1 again."""

    pair_id: str
    attempt: int
    submitted_at: float
    lost_at: float | None = None
    lost_reason: str | None = None


class StoreDamaged(ValueError):
    """A store that cannot be read: not SQLite, truncated, without its tables, or a bad record.

    The message names the file (and the task, for a bad record), so the CLI can name the
    damaged run in one line while the other runs stay readable.
    """


class RunStore:
    """The SQLite store of one run directory (`runs/<run-id>/results.sqlite`).

    `read_only=True` (runs, status, report) opens the file with SQLite's `mode=ro`: a reader
    never creates, repairs or rewrites a store (a zero-byte file stays zero bytes), and a damaged
    one raises `StoreDamaged` instead of a traceback.
    """

    def __init__(self, run_dir: Path, *, read_only: bool = False) -> None:
        self.path = Path(run_dir) / STORE_NAME
        self.read_only = read_only
        if not read_only:
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
            return
        if not self.path.is_file() or self.path.stat().st_size == 0:
            raise StoreDamaged(f"{self.path}: missing or empty (0 bytes)")
        try:
            self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                         isolation_level=None, timeout=30)
            for table in ("results", "plan", "meta"):
                self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        except sqlite3.Error as exc:
            raise StoreDamaged(f"{self.path}: not a readable run store ({exc})") from None

    def _read(self, sql: str) -> list[tuple[Any, ...]]:
        """All rows of `sql`; StoreDamaged naming the file when SQLite cannot read them."""
        try:
            return self._conn.execute(sql).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreDamaged(f"{self.path}: not a readable run store ({exc})") from None

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
        """Every stored result, oldest first; StoreDamaged naming the task of a bad record."""
        out = []
        for task_id, record in self._read("SELECT task_id, record FROM results ORDER BY finished_at"):
            try:
                out.append(TaskResult.from_json(record))
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreDamaged(f"{self.path}: the record of task {task_id!r} is damaged ({exc})") from None
        return out

    def task_status(self) -> dict[str, str]:
        """task_id -> status of every stored task."""
        return {k: v for k, v in self._read("SELECT task_id, status FROM results")}

    def attempts(self) -> dict[str, int]:
        """task_id -> how many times the stored run of the task was started."""
        return {k: v for k, v in self._read("SELECT task_id, attempts FROM results")}

    # -- attempts ----------------------------------------------------------------------------
    def attempt_submitted(self, pair_id: str, attempt: int, submitted_at: float) -> int:
        """Record that attempt `attempt` of `pair_id` was handed to Ray; returns its row for `attempt_lost`."""
        with self._conn:
            cur = self._conn.execute("INSERT INTO attempts (pair_id, attempt, submitted_at) VALUES (?, ?, ?)",
                                     (pair_id, attempt, submitted_at))
            row = cur.lastrowid
        assert row is not None  # every INSERT sets it
        return row

    def attempt_lost(self, row: int, lost_at: float, reason: str) -> None:
        """Record that the attempt of `row` (from `attempt_submitted`) was lost at `lost_at` for `reason`."""
        with self._conn:
            self._conn.execute("UPDATE attempts SET lost_at = ?, lost_reason = ? WHERE id = ?", (lost_at, reason, row))

    def pair_attempts(self) -> list[PairAttempt]:
        """Every attempt handed to Ray, in the order the head handed them out (none in a store
        written before attempts were recorded)."""
        if not self._read("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'attempts'"):
            return []
        return [PairAttempt(*row) for row in self._read(
            "SELECT pair_id, attempt, submitted_at, lost_at, lost_reason FROM attempts ORDER BY id")]

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
        out = []
        for task_id, spec, est in self._read("SELECT task_id, spec, estimated_s FROM plan ORDER BY position"):
            try:
                out.append((TaskSpec.from_dict(json.loads(spec)), est))
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreDamaged(f"{self.path}: the plan of task {task_id!r} is damaged ({exc})") from None
        return out

    def counts(self) -> dict[str, int]:
        """Tasks planned, stored `ok`, stored `failed`, and missing (planned, not stored)."""
        ((planned,),) = self._read("SELECT COUNT(*) FROM plan")
        by_status = {k: v for k, v in self._read("SELECT status, COUNT(*) FROM results GROUP BY status")}
        ((missing,),) = self._read("SELECT COUNT(*) FROM plan WHERE task_id NOT IN (SELECT task_id FROM results)")
        return {"planned": planned, "ok": by_status.get("ok", 0), "failed": by_status.get("failed", 0),
                "missing": missing}

    # -- run facts -------------------------------------------------------------------------
    def set_meta(self, **values: Any) -> None:
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                   [(k, json.dumps(v)) for k, v in values.items()])

    def meta(self) -> dict[str, Any]:
        rows = self._read("SELECT key, value FROM meta")
        try:
            return {k: json.loads(v) for k, v in rows}
        except ValueError as exc:
            raise StoreDamaged(f"{self.path}: the run facts (meta) are damaged ({exc})") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
