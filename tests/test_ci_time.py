"""benchmarks/ci_time.py: the time breakdown of a real (tiny) pytest run and its step file."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = {
    "tests/a/test_one.py": ("import time, pytest\n\n"
                            "@pytest.mark.slow\ndef test_waits():\n    time.sleep(0.6)\n\n"
                            "class TestGroup:\n    def test_quick(self):\n        pass\n"),
    "tests/b/c/test_two.py": ("import pytest\n\n@pytest.mark.parametrize('n', [1, 2])\ndef test_p(n):\n"
                              "    assert n\n\ndef test_skipped():\n    pytest.skip('no server')\n"),
}


def test_breakdown_groups_a_real_runs_tests_by_step_marker_directory_and_file(tmp_path: Path) -> None:
    for name, text in TESTS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    junit = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"],
                   cwd=tmp_path, check=True, capture_output=True)
    steps = tmp_path / "steps.txt"
    steps.write_text("install-torch 90.5\nruff 2\nmypy 7.5\npytest 300\n")
    out = tmp_path / "ci_time.md"
    argv = [sys.executable, str(ROOT / "benchmarks" / "ci_time.py"), "--steps", str(steps), "--junit", str(junit),
            "--root", str(tmp_path)]
    subprocess.run([*argv, "--site-packages", str(tmp_path / "tests"), "--out", str(out)], check=True)
    page = out.read_text()
    assert "| install-torch | 90 | 23 % |" in page and "| **total** | **400** |  |" in page
    assert "## pytest: 5 tests (4 passed, 1 skipped)" in page
    assert "| `slow` (real servers, Ray clusters) | 1 |" in page and "| the others (`-m 'not slow'`) | 4 |" in page
    assert "| `tests/a/` | 2 |" in page and "| `tests/b/c/test_two.py` | 3 |" in page
    slowest = page.split("slowest tests")[1].splitlines()[4]
    assert slowest.startswith("| `tests/a/test_one.py::test_waits` |") and slowest.endswith("| yes |")
    assert "`tests/a/test_one.py::TestGroup::test_quick`" in page
    assert "## The installed packages:" in page and "| `a` |" in page

    # the tests timed apart from the installs: the pytest step is the JUnit session's
    session = subprocess.run([*argv, "--pytest-from-junit"], check=True, capture_output=True, text=True).stdout
    pytest_rows = [line for line in session.splitlines() if line.startswith("| pytest |")]
    assert len(pytest_rows) == 1 and "| pytest | 300 |" not in session and "| ruff | 2 |" in session
