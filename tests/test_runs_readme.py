"""benchmarks/results/runs/README.md names every committed run whose records carry a run id other than its
folder's, and no other; no store is committed with a -wal or -shm file beside it."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from moecluster.head.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "benchmarks" / "results" / "runs"


def test_the_readme_lists_the_runs_whose_records_carry_another_id() -> None:
    differs: dict[str, set[str]] = {}
    for folder in sorted(p for p in RUNS.iterdir() if (p / "results.sqlite").exists()):
        with RunStore(folder, read_only=True) as store:
            ids = {r.spec.run_id for r in store.results()}
        if ids != {folder.name}:
            differs[folder.name] = ids
    listed = {m.group(1): {m.group(2)} for m in re.finditer(r"^\| `([^`]+)` \| `([^`]+)` \|",
                                                          (RUNS / "README.md").read_text(), re.M)}
    assert differs and listed == differs


def test_no_store_is_committed_with_a_write_ahead_log() -> None:
    tracked = subprocess.run(["git", "ls-files", str(RUNS)], capture_output=True, text=True, cwd=ROOT,
                             check=True).stdout.split()
    assert tracked and not [f for f in tracked if f.endswith(("-wal", "-shm"))]
