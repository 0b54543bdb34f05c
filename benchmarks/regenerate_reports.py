"""Regenerate every committed report from its committed store with the current code, as it was made.

    python benchmarks/regenerate_reports.py [NAME ...]

Each `benchmarks/results/runs/<run>/report/` is rewritten in the formats it holds now (CSV where it
has CSV files, JSON where it has `report.json`, the HTML page where it has `html/`, the terminal
text at 160 columns where it has `report.txt`), and so are `benchmarks/results/llm_h100/report/`
(the `llm-h100` run's) and the pooled report of the two calibration runs. A change of the report
code is followed by this script, so that no committed report shows what the code no longer says.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "runs"
# report folders kept apart from their run's folder, and reports pooling runs: folder -> runs
ELSEWHERE = {RESULTS / "llm_h100" / "report": ("llm-h100",),
             RUNS / "calibration-h100-a" / "report-pooled": ("calibration-h100-a", "calibration-h100-b")}


def targets() -> dict[Path, tuple[str, ...]]:
    """Every committed report folder and the runs it reports."""
    found = {run / "report": (run.name,) for run in sorted(RUNS.iterdir()) if (run / "report").is_dir()}
    return {**found, **ELSEWHERE}


def regenerate(folder: Path, runs_reported: tuple[str, ...]) -> None:
    """`moecluster report` of the runs into `folder`, in the formats the folder holds."""
    formats = [f for f, there in (("csv", any(folder.glob("*.csv"))), ("json", (folder / "report.json").exists()))
               if there]
    # run from the repository root with relative paths: the report names its run directory as given
    runs, out = RUNS.relative_to(ROOT), folder.relative_to(ROOT)
    args = ["moecluster", "report", *runs_reported, "--runs-dir", str(runs), "--quiet"]
    if formats:
        args += ["--format", *formats, "--out", str(out)]
    if (folder / "html").is_dir():
        args += ["--html", str(out / "html")]
    subprocess.run(args, check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
    if (folder / "report.txt").exists():
        text = subprocess.run(["moecluster", "report", *runs_reported, "--runs-dir", str(runs)], check=True, cwd=ROOT,
                              capture_output=True, text=True, env={**os.environ, "COLUMNS": "160"}).stdout
        (folder / "report.txt").write_text(text)
    print(f"regenerated {out} from {' + '.join(runs_reported)}")


def main(names: list[str]) -> None:
    for folder, runs_reported in targets().items():
        if not names or set(runs_reported) & set(names):
            regenerate(folder, runs_reported)


if __name__ == "__main__":
    main(sys.argv[1:])
