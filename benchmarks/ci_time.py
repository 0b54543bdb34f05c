"""Where the test command's time goes: a Markdown breakdown of one measured `scripts/test.sh` run.

Inputs, both written by a run of the test command:
- `--steps`: one `<step> <seconds>` line per step (install, ruff, mypy, pytest), which
  scripts/test.sh appends to the file named by `$CI_TIMES`;
- `--junit`: pytest's JUnit XML (`--junitxml`), whose per-test times (setup, call and teardown
  together, so a module's shared Ray cluster counts on its first test) are grouped here by
  directory, by file and by the `slow` marker (the marked tests listed by
  `pytest --collect-only -m slow`, run here).
With `--site-packages`, the largest installed packages too (what the install step spends on).
With `--pytest-from-junit`, the `pytest` step is the JUnit report's session time: for steps
measured apart from the tests (`scripts/test.sh --collect-only` on a fresh clone times the
installs, ruff and mypy; a separate `pytest --junitxml` run the tests).

    CI_TIMES=/tmp/steps.txt bash scripts/test.sh --junitxml=/tmp/junit.xml
    python benchmarks/ci_time.py --steps /tmp/steps.txt --junit /tmp/junit.xml \\
        --site-packages .venv/lib/python3.11/site-packages --out benchmarks/results/ci_time.md
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """One test of the JUnit report: its file (relative to the repository), node id and outcome."""

    file: str
    nodeid: str
    seconds: float
    outcome: str  # passed, failed, error or skipped


def read_steps(path: Path) -> list[tuple[str, float]]:
    """The `<step> <seconds>` lines, in order (a step measured twice counts twice)."""
    steps = []
    for line in path.read_text().splitlines():
        if line.strip():
            name, seconds = line.rsplit(maxsplit=1)
            steps.append((name, float(seconds)))
    return steps


def read_junit(path: Path, root: Path = ROOT) -> tuple[list[Case], float]:
    """The tests of a pytest JUnit report of a run in `root`, and the session's wall seconds
    (collection included)."""
    report = ET.parse(path).getroot()
    suites = [report] if report.tag == "testsuite" else list(report.iter("testsuite"))
    cases = []
    for case in report.iter("testcase"):
        module, cls = _split_classname(case.get("classname", ""), root)
        file = module.replace(".", "/") + ".py"
        nodeid = "::".join(p for p in (file, cls, case.get("name", "")) if p)
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        cases.append(Case(file, nodeid, float(case.get("time", 0)), {"failure": "failed"}.get(outcome, outcome)))
    return cases, sum(float(s.get("time", 0)) for s in suites)


def _split_classname(classname: str, root: Path) -> tuple[str, str]:
    """`tests.a.test_b.TestC` -> (`tests.a.test_b`, `TestC`): the module is the longest prefix
    that names a file of the repository."""
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        if (root / Path(*parts[:i])).with_suffix(".py").is_file():
            return ".".join(parts[:i]), ".".join(parts[i:])
    return classname, ""


def slow_nodeids(root: Path = ROOT) -> set[str]:
    """The node ids of the tests marked `slow`, as pytest collects them in `root`."""
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "slow", "-p", "no:cacheprovider"]
    out = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False).stdout
    return {line.strip() for line in out.splitlines() if "::" in line}


def package_sizes(site_packages: Path, top: int) -> tuple[list[tuple[str, int]], int]:
    """The `top` largest entries of `site_packages` (bytes, their files' sizes), and the total."""
    sizes = []
    for entry in site_packages.iterdir():
        files = [entry] if entry.is_file() else (p for p in entry.rglob("*") if p.is_file() and not p.is_symlink())
        sizes.append((entry.name, sum(p.stat().st_size for p in files)))
    sizes.sort(key=lambda s: s[1], reverse=True)
    return sizes[:top], sum(s for _, s in sizes)


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole > 0 else "-"


def _grouped(cases: list[Case], key: str) -> list[tuple[str, int, float]]:
    groups: dict[str, list[float]] = defaultdict(list)
    for c in cases:
        groups[key_of(c, key)].append(c.seconds)
    return sorted(((k, len(v), sum(v)) for k, v in groups.items()), key=lambda g: g[2], reverse=True)


def key_of(case: Case, key: str) -> str:
    """The group of `case`: its file (`file`) or its directory (`dir`, at most two levels below tests/)."""
    if key == "file":
        return case.file
    return "/".join(Path(case.file).parent.parts[:3]) + "/"


def render(steps: list[tuple[str, float]], cases: list[Case], session_s: float, slow: set[str],
           sizes: tuple[list[tuple[str, int]], int] | None, top: int, machine: str) -> str:
    """The Markdown page."""
    total_s = sum(s for _, s in steps)
    tests_s = sum(c.seconds for c in cases)
    outcomes: dict[str, int] = defaultdict(int)
    for c in cases:
        outcomes[c.outcome] += 1
    out = ["# Where the test command's time goes", "",
           f"Generated by `benchmarks/ci_time.py` from one run of `scripts/test.sh` on {machine}.",
           "Wall seconds; on a shared or slower machine all figures grow, the shares less so.", "",
           "## Steps", ""]
    out += _table(["step", "seconds", "share"], [(n, f"{s:.0f}", _share(s, total_s)) for n, s in steps]
                  + [("**total**", f"**{total_s:.0f}**", "")])
    out += ["", f"## pytest: {len(cases)} tests ({', '.join(f'{n} {k}' for k, n in sorted(outcomes.items()))})", "",
            f"Session {session_s:.0f} s: the tests' own {tests_s:.0f} s (setup, call, teardown) and"
            f" {max(session_s - tests_s, 0):.0f} s of collection (imports of torch, Ray, Triton) and reporting.", "",
            "### By marker", ""]
    marked = [c for c in cases if c.nodeid in slow]
    rest = [c for c in cases if c.nodeid not in slow]
    out += _table(["tests", "count", "seconds", "share"],
                  [("`slow` (real servers, Ray clusters)", len(marked), f"{sum(c.seconds for c in marked):.0f}",
                    _share(sum(c.seconds for c in marked), tests_s)),
                   ("the others (`-m 'not slow'`)", len(rest), f"{sum(c.seconds for c in rest):.0f}",
                    _share(sum(c.seconds for c in rest), tests_s))])
    out += ["", "### By directory", ""]
    out += _table(["directory", "tests", "seconds", "share"],
                  [(f"`{k}`", n, f"{s:.0f}", _share(s, tests_s)) for k, n, s in _grouped(cases, "dir")])
    out += ["", f"### The {top} slowest files", ""]
    out += _table(["file", "tests", "seconds", "share"],
                  [(f"`{k}`", n, f"{s:.0f}", _share(s, tests_s)) for k, n, s in _grouped(cases, "file")[:top]])
    out += ["", f"### The {top} slowest tests", ""]
    slowest = sorted(cases, key=lambda c: c.seconds, reverse=True)[:top]
    out += _table(["test", "seconds", "slow"], [(f"`{c.nodeid}`", f"{c.seconds:.1f}", "yes" if c.nodeid in slow else "")
                                               for c in slowest])
    if sizes is not None:
        biggest, total_b = sizes
        out += ["", f"## The installed packages: {total_b / 2**30:.1f} GiB", ""]
        out += _table(["package", "MiB", "share"],
                      [(f"`{n}`", f"{b / 2**20:.0f}", _share(b, total_b)) for n, b in biggest])
    return "\n".join(out) + "\n"


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=Path, required=True, help="the step times ($CI_TIMES of scripts/test.sh)")
    parser.add_argument("--junit", type=Path, required=True, help="pytest's --junitxml report of the same run")
    parser.add_argument("--site-packages", type=Path, help="the venv's site-packages, for the package sizes")
    parser.add_argument("--pytest-from-junit", action="store_true",
                        help="take the pytest step's seconds from the JUnit report's session time")
    parser.add_argument("--machine", default=None, help="how to name the machine (default: cores and CPU model)")
    parser.add_argument("--root", type=Path, default=ROOT, help="where the tests ran (default: this repository)")
    parser.add_argument("--top", type=int, default=25, help="how many files, tests and packages to list")
    parser.add_argument("--out", type=Path, help="write here (default: stdout)")
    args = parser.parse_args(argv)
    cases, session_s = read_junit(args.junit, args.root)
    sizes = package_sizes(args.site_packages, args.top) if args.site_packages else None
    steps = read_steps(args.steps)
    if args.pytest_from_junit:
        steps = [s for s in steps if s[0] != "pytest"] + [("pytest", session_s)]
    page = render(steps, cases, session_s, slow_nodeids(args.root), sizes, args.top,
                  args.machine or machine_line())
    if args.out:
        args.out.write_text(page)
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
