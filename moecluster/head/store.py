"""The result store: one SQLite file per run, one row per finished task.

Each result is written in its own transaction the moment it arrives, so a killed head
loses nothing that finished. A task is stored once: a later record for the same task
replaces a failed one (a retry on resume) but never an `ok` one.

Beside the results, the store keeps the run's plan (every task the sweep expanded to, with
its estimated seconds), so `status` and `--resume` know what is missing, a few run
facts (`meta`: state, host and pid of the submitting head, times), and every attempt the head
handed to Ray (`pair_attempts`: when, and when and why it was lost), on the head's clock.

A result that cannot be written (a full disk, an I/O error) is not lost: it is kept as a JSON
file in `<run dir>/pending/`, else in a private directory under the temporary directory (often
another filesystem), and `write_error` says what failed; `--resume` stores the kept results
(`adopt_pending`) before it plans what is missing. The store is created 0600 (its `-wal`/`-shm`
take its mode).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from moecluster.node.private_dir import UnsafeDirectory, private_dir
from moecluster.spec.records import TaskResult, TaskSpec

from moecluster.head.rundir import write_private

STORE_NAME = "results.sqlite"
PENDING_DIR = "pending"

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

# A task is stored once: a later record replaces a failed one, never an `ok` one.
_UPSERT = ("INSERT INTO results (task_id, pair_id, kind, status, finished_at, attempts, record)"
           " VALUES (?, ?, ?, ?, ?, ?, ?)"
           " ON CONFLICT(task_id) DO UPDATE SET status=excluded.status,"
           " finished_at=excluded.finished_at, attempts=excluded.attempts, record=excluded.record"
           " WHERE results.status != 'ok'")


def _row(result: TaskResult, attempts: int) -> tuple[Any, ...]:
    return (result.spec.task_id, result.spec.pair_id, result.spec.kind, result.status, result.finished_at,
            attempts, result.to_json())


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


class StoreWriteFailed(OSError):
    """The store cannot be written (a full disk, an I/O error, a read-only filesystem); the message
    names the store and the error. Results that could not be written are kept (see the module)."""


def pending_dirs(run_dir: Path) -> list[Path]:
    """Where results that could not be stored are kept, in the order tried: `<run dir>/pending`,
    then `<tmp>/moecluster-<uid>/pending/<run name>-<hash of its path>` (often another filesystem)."""
    run_dir = Path(run_dir).absolute()
    key = hashlib.sha256(str(run_dir).encode()).hexdigest()[:12]
    spill = Path(tempfile.gettempdir()) / f"moecluster-{os.getuid()}" / PENDING_DIR / f"{run_dir.name}-{key}"
    return [run_dir / PENDING_DIR, spill]


def _pending_name(task_id: str) -> str:
    return hashlib.sha256(task_id.encode()).hexdigest()[:24] + ".json"


def keep_pending(run_dir: Path, result: TaskResult, attempts: int) -> Path | None:
    """Keep `result` as a 0600 JSON file in the first of `pending_dirs` that takes it whole; its
    path, or None when none could."""
    data = json.dumps({"attempts": attempts, "record": json.loads(result.to_json())})
    for i, directory in enumerate(pending_dirs(run_dir)):
        try:
            if i == 0:
                directory.mkdir(mode=0o700, exist_ok=True)
            else:
                private_dir(directory, what="pending results directory")
            path = directory / _pending_name(result.spec.task_id)
            tmp = directory / f".{path.name}.tmp"
            write_private(tmp, data)  # whole or not at all, then under its name
            os.replace(tmp, path)
            return path
        except (OSError, UnsafeDirectory):
            continue
    return None


def pending_results(run_dir: Path) -> list[tuple[Path, TaskResult, int]]:
    """The results kept beside the store of `run_dir` (file, result, attempts); unreadable files are skipped."""
    out = []
    for directory in pending_dirs(run_dir):
        try:
            files = sorted(directory.glob("*.json"))
        except OSError:
            continue
        for path in files:
            try:
                raw = json.loads(path.read_text())
                out.append((path, TaskResult.from_json(json.dumps(raw["record"])), int(raw.get("attempts", 1))))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return out


@contextmanager
def _snapshot(path: Path) -> Iterator[Path]:
    """A private temporary copy of the store `path` and its `-wal`, for reading a WAL that has no
    `-shm` beside it (a writer that crashed) without creating one there."""
    with tempfile.TemporaryDirectory(prefix="moecluster-store-") as tmp:
        copy = Path(tmp) / STORE_NAME
        shutil.copyfile(path, copy)
        shutil.copyfile(f"{path}-wal", f"{copy}-wal")
        yield copy


class RunStore:
    """The SQLite store of one run directory (`runs/<run-id>/results.sqlite`).

    `read_only=True` (runs, status, report) never creates, repairs or rewrites a store (a
    zero-byte file stays zero bytes, and no `-wal`/`-shm` is left beside it), works on a read-only
    copy, and a damaged store raises `StoreDamaged` instead of a traceback. How it opens:
    without a `-wal` beside it, every commit is in the file: SQLite's `immutable=1` (no locks, no
    files); with a `-wal` and `-shm` (a writer at work, or one killed): `mode=ro`, which reads
    what the writer committed; with a `-wal` alone: a private copy of the two.
    """

    def __init__(self, run_dir: Path, *, read_only: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STORE_NAME
        self.read_only = read_only
        self.write_error: str | None = None  # why a result could not be stored (it was kept pending)
        self.kept: list[Path] = []  # where results that could not be stored were kept
        self.unkept: list[str] = []  # task ids of results that could be kept nowhere
        self._stack = ExitStack()  # a private copy read instead of the store, removed on close
        if not read_only:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                os.close(fd)
                self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.executescript(_SCHEMA)
            except (OSError, sqlite3.OperationalError) as exc:
                raise StoreWriteFailed(f"{self.path}: cannot open the store for writing ({_why(exc)})") from None
            return
        if not self.path.is_file() or self.path.stat().st_size == 0:
            raise StoreDamaged(f"{self.path}: missing or empty (0 bytes)")
        try:
            self._conn = self._open_read_only()
            for table in ("results", "plan", "meta"):
                self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise StoreDamaged(f"{self.path}: not a readable run store ({exc})") from None

    def _open_read_only(self) -> sqlite3.Connection:
        wal, shm = Path(f"{self.path}-wal"), Path(f"{self.path}-shm")
        if not wal.exists():
            uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
        elif shm.exists():
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
        else:
            uri = f"{self._stack.enter_context(_snapshot(self.path)).as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)

    def _read(self, sql: str) -> list[tuple[Any, ...]]:
        """All rows of `sql`; StoreDamaged naming the file when SQLite cannot read them."""
        try:
            return self._conn.execute(sql).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreDamaged(f"{self.path}: not a readable run store ({exc})") from None

    def _write(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        """Run one write in its own transaction; `StoreWriteFailed` naming the store when it fails."""
        try:
            with self._conn:
                return self._conn.execute(sql, tuple(params))
        except sqlite3.OperationalError as exc:
            raise StoreWriteFailed(f"{self.path}: cannot write ({_why(exc)})") from None

    # -- results ---------------------------------------------------------------------------
    def add(self, result: TaskResult, attempts: int = 1) -> bool:
        """Store `result`; True if it was written (False: an `ok` row for the task exists, or it
        could not be written and was kept pending: then `write_error` says why).

        `attempts` is how many times the task was started (Ray retries after a lost node).
        """
        try:
            cur = self._write(_UPSERT, _row(result, attempts))
        except StoreWriteFailed as exc:
            self.write_error = str(exc)
            kept = keep_pending(self.run_dir, result, attempts)
            if kept is None:
                self.unkept.append(result.spec.task_id)
            else:
                self.kept.append(kept)
            return False
        return cur.rowcount > 0

    def adopt_pending(self) -> list[TaskResult]:
        """Store the results kept pending (see the module), removing their files; those stored.
        One that cannot be stored stays where it is (`StoreWriteFailed`)."""
        adopted = []
        for path, result, attempts in pending_results(self.run_dir):
            if self._write(_UPSERT, _row(result, attempts)).rowcount > 0:
                adopted.append(result)
            path.unlink(missing_ok=True)
        return adopted

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
        cur = self._write("INSERT INTO attempts (pair_id, attempt, submitted_at) VALUES (?, ?, ?)",
                          (pair_id, attempt, submitted_at))
        row = cur.lastrowid
        assert row is not None  # every INSERT sets it
        return row

    def attempt_lost(self, row: int, lost_at: float, reason: str) -> None:
        """Record that the attempt of `row` (from `attempt_submitted`) was lost at `lost_at` for `reason`."""
        self._write("UPDATE attempts SET lost_at = ?, lost_reason = ? WHERE id = ?", (lost_at, reason, row))

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
        try:
            with self._conn:
                (start,) = self._conn.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM plan").fetchone()
                rows = [(spec.task_id, spec.pair_id, start + i, est, json.dumps(spec.to_dict(), sort_keys=True))
                        for i, (spec, est) in enumerate(tasks)]
                self._conn.executemany(
                    "INSERT OR IGNORE INTO plan (task_id, pair_id, position, estimated_s, spec)"
                    " VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.OperationalError as exc:
            raise StoreWriteFailed(f"{self.path}: cannot write ({_why(exc)})") from None

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
        try:
            with self._conn:
                self._conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                       [(k, json.dumps(v)) for k, v in values.items()])
        except sqlite3.OperationalError as exc:
            if self.read_only:
                raise
            raise StoreWriteFailed(f"{self.path}: cannot write ({_why(exc)})") from None

    def meta(self) -> dict[str, Any]:
        rows = self._read("SELECT key, value FROM meta")
        try:
            return {k: json.loads(v) for k, v in rows}
        except ValueError as exc:
            raise StoreDamaged(f"{self.path}: the run facts (meta) are damaged ({exc})") from None

    def close(self) -> None:
        if hasattr(self, "_conn"):
            self._conn.close()
        self._stack.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _why(exc: BaseException) -> str:
    """SQLite's or the OS's words for a failed write (`database or disk is full`)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
