"""`runs`, `status`, `report` on damaged stores: the damaged run is named, the others listed, nothing written."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from moecluster.cli import main
from moecluster.head.store import RunStore


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for name in ("good", "empty", "junk", "badrow"):
        (root / name).mkdir(parents=True)
    with RunStore(root / "good") as store:
        store.set_meta(sweep="s", state="finished")
    with RunStore(root / "badrow"):
        pass
    with sqlite3.connect(root / "badrow" / "results.sqlite") as conn:
        conn.execute("INSERT INTO results VALUES ('t1', 'p1', 'moe', 'ok', 1.0, 1, '{not json')")
    (root / "empty" / "results.sqlite").write_bytes(b"")
    (root / "junk" / "results.sqlite").write_bytes(b"random bytes, not SQLite" * 200)
    return root


def test_runs_lists_the_good_and_marks_the_damaged(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "runs", "--runs-dir", str(runs), "--json")
    assert code == 0
    states = {row["run"]: row["state"] for row in json.loads(out)}
    assert states.pop("badrow") != "damaged"  # its counts are readable; status/report name the bad record
    assert states == {"good": "finished", "empty": "damaged", "junk": "damaged"}
    assert (runs / "empty" / "results.sqlite").stat().st_size == 0


@pytest.mark.parametrize("command", ["status", "report"])
@pytest.mark.parametrize("run_id, why", [("empty", "missing or empty"), ("junk", "not a readable run store"),
                                         ("badrow", "the record of task 't1' is damaged")])
def test_damaged_run_is_one_line(command: str, run_id: str, why: str, runs: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, command, run_id, "--runs-dir", str(runs))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"moecluster: error: run {run_id!r} is damaged:") and why in err
    assert (runs / "empty" / "results.sqlite").stat().st_size == 0
