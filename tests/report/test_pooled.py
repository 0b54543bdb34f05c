"""Which runs `report A B` pools as replicates, and the one line naming what differs where it refuses."""
from __future__ import annotations

import json
from pathlib import Path

from moecluster.report.pooled import caveat, difference, identity


def run(root: Path, name: str, sweep: str, revision: str | None = "abc", dirty: bool = False) -> Path:
    d = root / name
    d.mkdir()
    (d / "sweep.yaml").write_text(sweep)
    if revision is not None:
        (d / "environment.json").write_text(json.dumps({"git": {"revision": revision, "dirty": dirty}}))
    return d


SWEEP = "name: s\nmodels: [{preset: small}]\nduration_s: 1.0\nreplicates: 3\n"


def test_same_sweep_and_revision_pool(tmp_path: Path) -> None:
    ids = [identity(n, run(tmp_path, n, SWEEP)) for n in ("a", "b")]
    assert difference(ids) is None and caveat(ids) is None


def test_a_differing_sweep_key_or_revision_is_named(tmp_path: Path) -> None:
    a = identity("a", run(tmp_path, "a", SWEEP))
    b = identity("b", run(tmp_path, "b", SWEEP.replace("duration_s: 1.0", "duration_s: 2.0")))
    c = identity("c", run(tmp_path, "c", SWEEP, revision="def"))
    d = identity("d", run(tmp_path, "d", SWEEP.replace("replicates: 3\n", "")))
    assert difference([a, b]) == "runs a and b differ (sweep key duration_s: 1.0 vs 2.0)"
    assert difference([a, c]) == "runs a and c differ (code revision abc vs def)"
    assert difference([a, d]) == "runs a and d differ (sweep key replicates: 3 vs absent)"


def test_uncommitted_changes_pool_with_a_caveat(tmp_path: Path) -> None:
    ids = [identity(n, run(tmp_path, n, SWEEP, dirty=True)) for n in ("a", "b")]
    assert difference(ids) is None
    assert "cannot be shown to be the same" in (caveat(ids) or "")
    mixed = [identity("x", run(tmp_path, "x", SWEEP)), identity("y", run(tmp_path, "y", SWEEP, dirty=True))]
    assert difference(mixed) == "runs x and y differ (code revision abc vs abc (uncommitted changes))"
