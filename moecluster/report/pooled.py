"""Whether runs may be pooled as replicates of one another (`moecluster report RUN_A RUN_B ...`).

Runs of one sweep on other machines or days are replicates like those of one run, as long as they
measured the same thing with the same code: the same resolved sweep (`sweep.yaml`: every key, every
default filled in) and the same code revision (`environment.json`'s git revision and whether it had
uncommitted changes). `difference` names the first thing that differs; runs that ran with
uncommitted changes at one revision compare equal (nothing recorded tells them apart), and
`caveat` says so.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from moecluster.report.meta import ENVIRONMENT_FILE

SWEEP_FILE = "sweep.yaml"  # `rundir.SWEEP_FILE`: the resolved sweep
SHOWN_CHARS = 40  # a differing value is quoted up to this long


@dataclass(frozen=True)
class RunIdentity:
    """What a run measured and with which code, as its directory records them."""

    run_id: str
    sweep: Mapping[str, Any] | None  # the resolved sweep; None where the run has none (or it is unreadable)
    code: str  # "<revision>", "<revision> (uncommitted changes)" or "unrecorded"

    @property
    def dirty(self) -> bool:
        return self.code.endswith("(uncommitted changes)")


def _yaml(path: Path) -> Mapping[str, Any] | None:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return doc if isinstance(doc, dict) else None


def identity(run_id: str, run_dir: Path) -> RunIdentity:
    """The sweep and code revision `run_dir` records."""
    env = _yaml(run_dir / ENVIRONMENT_FILE) or {}  # JSON is YAML
    section = env.get("git")
    git: Mapping[str, Any] = section if isinstance(section, dict) else {}
    revision = str(git.get("revision") or "")
    code = f"{revision[:12]}{' (uncommitted changes)' if git.get('dirty') else ''}" if revision else "unrecorded"
    return RunIdentity(run_id, _yaml(run_dir / SWEEP_FILE), code)


def _shown(value: Any) -> str:
    text = "absent" if value is None else yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("\n...").strip()
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"


def _sweep_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    for key in dict.fromkeys([*a, *b]):
        if a.get(key) != b.get(key):
            return f"sweep key {key}: {_shown(a.get(key))} vs {_shown(b.get(key))}"
    return None


def difference(runs: Sequence[RunIdentity]) -> str | None:
    """What differs between the first run and another, in one line naming both runs; None when all measured
    the same sweep with the same code."""
    first = runs[0]
    for other in runs[1:]:
        pair = f"runs {first.run_id} and {other.run_id}"
        if first.sweep is None or other.sweep is None:
            missing = first.run_id if first.sweep is None else other.run_id
            return f"{pair}: run {missing} has no readable {SWEEP_FILE}, so its sweep cannot be compared"
        what = _sweep_difference(first.sweep, other.sweep)
        if what is None and first.code != other.code:
            what = f"code revision {first.code} vs {other.code}"
        if what is not None:
            return f"{pair} differ ({what})"
    return None


def caveat(runs: Sequence[RunIdentity]) -> str | None:
    """A one-line warning where runs pooled as equal may still differ (uncommitted changes), else None."""
    dirty = [r.run_id for r in runs if r.dirty or r.code == "unrecorded"]
    if not dirty:
        return None
    return (f"runs {', '.join(dirty)} ran with uncommitted changes or no recorded revision: the code they ran"
            " cannot be shown to be the same")
