"""Do a run's 95 % intervals cover a re-measurement? Coverage of one run's figures by another's.

    python benchmarks/calibration.py RUN_A [RUN_A2 ...] RUN_B [--runs-dir DIR] [--out FILE.md]

RUN_A and RUN_B measured the same tasks independently (two `submit`s of one sweep, on other
processes, days or machines). Several A runs are pooled as `moecluster report A1 A2` pools them (a
task's figures over the GPUs they ran on): do intervals from two GPUs hold a third?
For every task both measured with the same shape and setting, and
every MoE/dense pair, it counts how often B's point estimate falls inside A's 95 % interval (and
A's inside B's), per kind of figure: a task's inferences/J and inferences/s, and a pair's MoE/dense
ratio of inferences/J. A re-measurement has noise of its own: two independent estimates of equal
spread fall inside each other's 95 % interval about 83 % of the time, so an interval meant to hold
a re-run has to cover more than the spread of one process's windows. Figures without an interval
are counted apart.
The tool's own `report` computes the figures (`moecluster.report.aggregate`): what is checked
is what is published.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from moecluster.spec.records import TaskSpec
from moecluster.report.aggregate import Aggregate, Estimate, aggregate
from moecluster.head.store import RunStore

# what a task measured is the same task in both runs when these agree (run bookkeeping and how long
# each window ran do not change what is estimated)
NOT_IDENTITY = frozenset({"run_id", "reverse_order", "duration_s", "warmup_s", "repeats", "meter", "sample_power",
                          "preset", "model_name"})
FIGURES = ("task inferences/J", "task inferences/s", "MoE/dense inferences/J")


@dataclass(frozen=True)
class Check:
    """One figure measured in both runs."""

    figure: str
    key: str
    a: Estimate
    b: Estimate

    @property
    def has_intervals(self) -> bool:
        return self.a.has_ci and self.b.has_ci

    def covers(self, interval: Estimate, point: Estimate) -> bool:
        assert interval.lo is not None and interval.hi is not None
        return interval.lo <= point.mean <= interval.hi

    @property
    def overlap(self) -> bool:
        assert self.a.lo is not None and self.a.hi is not None and self.b.lo is not None and self.b.hi is not None
        return self.a.lo <= self.b.hi and self.b.lo <= self.a.hi


def identity(spec: TaskSpec) -> tuple[tuple[str, object], ...]:
    """What makes two tasks the same measurement (shape, setting, implementation)."""
    d = spec.to_dict()
    return tuple(sorted((k, str(v)) for k, v in d.items() if k not in NOT_IDENTITY))


def load(runs_dir: Path, *runs: str) -> Aggregate:
    """The runs' figures as `moecluster report RUN ...` computes them, their stores opened read-only."""
    results = []
    for run in runs:
        with RunStore(runs_dir / run, read_only=True) as store:
            results.extend(store.results())
    return aggregate(results)


def checks(a: Aggregate, b: Aggregate) -> list[Check]:
    """Every figure both runs measured for the same task or pair."""
    out: list[Check] = []
    b_tasks = {identity(s.spec): s for s in b.tasks}
    for s in a.tasks:
        t = b_tasks.get(identity(s.spec))
        if t is None:
            continue
        for figure, name in (("task inferences/J", "inferences_per_j"), ("task inferences/s", "inferences_per_s")):
            ea, eb = getattr(s, name), getattr(t, name)
            if ea is not None and eb is not None:
                out.append(Check(figure, s.task_id, ea, eb))
    b_pairs = {(identity(p.moe.spec), identity(p.dense.spec)): p for p in b.pairs}
    for p in a.pairs:
        q = b_pairs.get((identity(p.moe.spec), identity(p.dense.spec)))
        if q is not None and p.inferences_per_j is not None and q.inferences_per_j is not None:
            out.append(Check("MoE/dense inferences/J", f"{p.moe.task_id} / {p.dense.task_id}",
                             p.inferences_per_j, q.inferences_per_j))
    return out


def table(found: Sequence[Check], a_name: str, b_name: str) -> str:
    """Coverage per kind of figure, as a Markdown table."""
    lines = [f"| figure | both measured | with intervals | {b_name} inside {a_name}'s 95 % CI |"
             f" {a_name} inside {b_name}'s | intervals overlap |", "|---|---:|---:|---:|---:|---:|"]
    for figure in FIGURES:
        of = [c for c in found if c.figure == figure]
        if not of:
            continue
        ci = [c for c in of if c.has_intervals]
        lines.append(f"| {figure} | {len(of)} | {len(ci)} | {_share(c.covers(c.a, c.b) for c in ci)} |"
                     f" {_share(c.covers(c.b, c.a) for c in ci)} | {_share(c.overlap for c in ci)} |")
    return "\n".join(lines)


def worst(found: Sequence[Check], most: int = 5) -> str:
    """The re-measurements farthest outside the first run's interval, in its half-widths."""
    def distance(c: Check) -> float:
        assert c.a.lo is not None and c.a.hi is not None
        half = (c.a.hi - c.a.lo) / 2 or float("inf")
        return abs(c.b.mean - (c.a.lo + c.a.hi) / 2) / half
    far = sorted((c for c in found if c.has_intervals and not c.covers(c.a, c.b)), key=distance, reverse=True)
    return "\n".join(f"- {c.figure} `{c.key}`: {c.a.mean:.4g} [{c.a.lo:.4g}, {c.a.hi:.4g}] then {c.b.mean:.4g}"
                     f" [{c.b.lo:.4g}, {c.b.hi:.4g}] ({distance(c):.1f} half-widths away)" for c in far[:most])


def _share(hits: Iterable[bool]) -> str:
    values = list(hits)
    return f"{sum(values)}/{len(values)} ({100 * sum(values) / len(values):.0f} %)" if values else "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", nargs="+", help="the run(s) whose intervals are checked, pooled when several")
    parser.add_argument("run_b", help="the independent re-measurement")
    parser.add_argument("--runs-dir", type=Path, default=Path("benchmarks/results/runs"))
    parser.add_argument("--out", type=Path, help="write the Markdown here as well")
    args = parser.parse_args()
    found = checks(load(args.runs_dir, *args.run_a), load(args.runs_dir, args.run_b))
    a_name = " + ".join(args.run_a)
    if not found:
        raise SystemExit(f"calibration: {a_name} and {args.run_b} measured no task in common")
    text = (f"## {a_name} → {args.run_b}\n\n{table(found, 'A', 'B')}\n\n"
            f"Farthest outside A's interval:\n\n{worst(found) or '- none'}\n")
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
