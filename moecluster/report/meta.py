"""What a run directory says about itself besides its results: the sweep file and the environment.

`environment.json` (see `head.environment`) is nested: the head's facts, its versions,
its GPUs, the git revision, the Ray cluster's nodes. The report prints it as one readable line
of `key value` pairs: the facts a reader compares between runs, not the JSON.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SWEEP_FILES = ("sweep.yaml", "sweep.yml", "sweep.json")
ENVIRONMENT_FILE = "environment.json"
VERSIONS = (("torch", "torch"), ("cuda", "CUDA"), ("driver", "driver"), ("moecluster", "moecluster"), ("ray", "Ray"))


def _gpus(gpus: Any) -> str | None:
    """"2× NVIDIA H100 80GB HBM3" from a list of {name: ...}; None without GPUs."""
    if not isinstance(gpus, list) or not gpus:
        return None
    names = Counter(str(g.get("name", "?")) if isinstance(g, dict) else str(g) for g in gpus)
    return ", ".join(f"{n}× {name}" for name, n in sorted(names.items()))


def _section(d: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """`d[key]` when it is a mapping, else an empty one (a section not recorded)."""
    value = d.get(key)
    return value if isinstance(value, Mapping) else {}


def environment_pairs(env: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The environment as (key, value) pairs in reading order, leaving out what was not recorded."""
    head = _section(env, "head")
    versions = _section(head, "versions")
    git = _section(env, "git")
    cluster = _section(env, "cluster")
    pairs: list[tuple[str, Any]] = [("host", head.get("host")), ("python", head.get("python"))]
    pairs += [(label, versions.get(key)) for key, label in VERSIONS]
    if git.get("revision"):
        pairs.append(("git", f"{str(git['revision'])[:12]}{' (uncommitted changes)' if git.get('dirty') else ''}"))
    pairs.append(("GPUs", _gpus(head.get("gpus")) or head.get("gpus_unavailable_reason")))
    nodes = cluster.get("nodes")
    if isinstance(nodes, list):
        pairs.append(("cluster nodes", len(nodes)))
    pairs.append(("collected", env.get("collected_at")))
    return [(k, str(v)) for k, v in pairs if v not in (None, "")]


def environment_line(env: Mapping[str, Any]) -> str:
    """"host h1 · python 3.11.7 · torch 2.4.0 · ...": the environment as one line."""
    return " · ".join(f"{k} {v}" for k, v in environment_pairs(env))


def run_meta(run_dir: Path) -> dict[str, Any]:
    """The run directory, its sweep file's name and its environment in one line (or why it is unreadable)."""
    meta: dict[str, Any] = {"run directory": str(run_dir)}
    sweep = next((run_dir / n for n in SWEEP_FILES if (run_dir / n).exists()), None)
    if sweep is not None:
        meta["sweep"] = sweep.name
    env = run_dir / ENVIRONMENT_FILE
    if env.exists():
        try:
            doc = json.loads(env.read_text())
        except (OSError, ValueError) as exc:
            meta["environment"] = f"unreadable ({exc})"
        else:
            meta["environment"] = environment_line(doc) if isinstance(doc, dict) else "unreadable (not an object)"
    return meta
