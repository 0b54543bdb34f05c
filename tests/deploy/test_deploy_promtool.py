"""deploy/prometheus/prometheus.yml as shipped, on a fresh machine set up as deploy/ says.

The machine is a temporary root: the tmpfiles.d lines of deploy/systemd/moecluster-tmpfiles.conf
are applied under it (as `systemd-tmpfiles --create` would, without needing root or the
`moecluster` user), and the config's absolute paths are moved under it. Then the real `promtool
check config` must pass without a warning, and a real Prometheus must start without an error.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from deploy_helpers import Prometheus

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
TMPFILES = ROOT / "deploy" / "systemd" / "moecluster-tmpfiles.conf"
pytestmark = pytest.mark.timeout(120)


def _apply_tmpfiles(conf: Path, root: Path) -> list[Path]:
    """Create the `d` and `f` entries of a tmpfiles.d file under `root`; returns the paths."""
    made = []
    for line in conf.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        kind, path, mode, _user, _group, _age, *arg = line.split()
        target = root / path.lstrip("/")
        if kind == "d":
            target.mkdir(parents=True, exist_ok=True)
        elif kind == "f":
            if not target.exists():
                target.write_text("" if arg in ([], ["-"]) else " ".join(arg))
        else:
            raise AssertionError(f"{conf}: unexpected tmpfiles type {kind!r}")
        target.chmod(int(mode, 8))
        made.append(target)
    return made


def _fresh_machine(tmp: Path) -> Path:
    """A copy of deploy/prometheus/ whose absolute paths point into a set-up temporary root."""
    root = tmp / "root"
    made = _apply_tmpfiles(TMPFILES, root)
    assert any(p.name == "prometheus_targets.json" for p in made), "the setup does not create the targets file"
    config_dir = tmp / "prometheus"
    shutil.copytree(PROM_DIR, config_dir)
    config = config_dir / "prometheus.yml"
    text = config.read_text()
    absolute = re.findall(r"^\s*- (/\S+)$", text, flags=re.MULTILINE)
    assert absolute, "expected the runs directory's targets file in prometheus.yml"
    for path in absolute:
        text = text.replace(path, str(root / path.lstrip("/")))
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian's prometheus package has it; scripts/test.sh installs it)")
    return path


def test_promtool_accepts_the_config_on_a_fresh_machine_without_warnings(promtool: str, tmp_path: Path) -> None:
    config = _fresh_machine(tmp_path)
    out = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "WARNING" not in text and "FAILED" not in text, text
    assert "is valid prometheus config file syntax" in text


def test_promtool_warns_about_the_targets_file_without_the_setup(promtool: str, tmp_path: Path) -> None:
    """The check above is not vacuous: without the tmpfiles step the same config draws the warning."""
    config_dir = tmp_path / "prometheus"
    shutil.copytree(PROM_DIR, config_dir)
    config = config_dir / "prometheus.yml"
    config.write_text(config.read_text().replace("/var/lib/moecluster", str(tmp_path / "nothing")))
    out = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert "prometheus_targets.json" in out.stdout and "does not exist" in out.stdout, out.stdout


@pytest.mark.slow
def test_prometheus_starts_on_a_fresh_machine_without_errors(prometheus_bin: str, tmp_path: Path) -> None:
    config = _fresh_machine(tmp_path)
    prom = Prometheus(config, tmp_path / "data")
    try:
        prom.wait_ready()
        time.sleep(1.0)  # file discovery reads its files right after start
    finally:
        prom.stop()
    log = prom.log_path.read_text()
    assert "level=error" not in log, log
