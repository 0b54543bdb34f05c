"""`moecluster report` and `status`: bad run ids and unwritable output paths are one line, exit 2."""
from __future__ import annotations

from pathlib import Path

import pytest

from moecluster.cli import main
from moecluster.head.store import RunStore


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0), capsys.readouterr().err


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    (root / "r1").mkdir(parents=True)
    with RunStore(root / "r1"):
        pass
    return root


@pytest.mark.parametrize("command", [["report"], ["status"], ["submit", "--resume"]])
@pytest.mark.parametrize("run_id", ["../r1", "/etc", "r1/../r1", "a\\b"])
def test_run_ids_are_checked_on_every_lookup(command: list[str], run_id: str, runs: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, err = in_process(capsys, *command, run_id, "--runs-dir", str(runs / "r1"))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"moecluster: error: run {run_id!r}: not a run id")


@pytest.mark.parametrize("args, culprit", [
    (["--format", "csv", "--out", "/dev/null/x"], "--out /dev/null/x: cannot create the directory"),
    (["--html", "/proc/1/nope"], "--html /proc/1/nope: cannot create the directory"),
])
def test_unwritable_output_is_one_line(args: list[str], culprit: str, runs: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, err = in_process(capsys, "report", "r1", "--runs-dir", str(runs), *args)
    assert code == 2 and err.count("\n") == 1 and culprit in err
