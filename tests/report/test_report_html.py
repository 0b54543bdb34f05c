"""The HTML page: self-contained, with its figures and tables, rendered by headless Chromium."""
from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import moecluster_synthetic as syn
from moecluster.report.aggregate import aggregate
from moecluster.report.html import page, write_html
from moecluster.report.plots import pairs_figure

PNG = re.compile(r'<img alt="([a-z]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium_args(profile: Path) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={profile}"]


@pytest.fixture(scope="module")
def html_text() -> str:
    return page(aggregate(syn.demo_results()), "demo", {"run directory": "/runs/demo"})


def test_page_embeds_every_figure_as_png(html_text: str) -> None:
    figures = dict(PNG.findall(html_text))
    assert set(figures) == {"efficiency", "pairs", "roofline", "ep"}
    for name, b64 in figures.items():
        data = base64.b64decode(b64)
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        from PIL import Image  # matplotlib's own dependency

        w, h = Image.open(io.BytesIO(data)).size
        assert w > 400 and h > 200, name


def test_page_is_self_contained_and_has_the_tables(html_text: str) -> None:
    assert not re.search(r'(src|href)="(?!data:)', html_text)  # nothing fetched from anywhere
    assert "<script" not in html_text
    captions = re.findall(r"<caption>(.*?)</caption>", html_text)
    for title in ("Break-even", "MoE beside its dense twin", "Tasks: throughput and energy", "Tasks: how each ran",
                  "Seed 000", "Measured vs roofline", "Expert parallelism", "Failed tasks"):
        assert any(c.startswith(title) for c in captions), title
    assert "MoE overtakes dense at 112M parameters" in html_text
    assert "unavailable: device cpu: no GPU energy counter" in html_text
    assert "cluster-wide: not measured: no Prometheus URL given" in html_text


def test_footnotes_are_said_once_under_their_table(html_text: str) -> None:
    pairs = html_text.split("<caption>MoE beside its dense twin")[1].split("</table>")[1].split("<table>")[0]
    notes = re.findall(r'<p class="note">(.*?)</p>', pairs)
    assert any(n.startswith("† the 95 % CI of the ratio contains 1") for n in notes)
    assert [n for n in notes if "no GPU energy counter" in n] == ["² unavailable: device cpu: no GPU energy counter"]
    assert "bootstrap of each size" in html_text and "carried through" in html_text  # the method, named


def test_figure_2_draws_no_power_where_none_was_measured_and_slants_its_ticks() -> None:
    no_energy = aggregate(syn.preset_pair("large", None, None) + syn.preset_pair("small", None, None))
    fig = pairs_figure(no_energy)
    assert fig is not None
    throughput, power = fig.axes
    assert len(throughput.patches) == 4 and len(power.patches) == 0  # bars for inf/s only: never one at 0 W
    assert [t.get_text() for t in power.texts] == ["no energy data"]
    assert all(label.get_rotation() == 30 for label in throughput.get_xticklabels())
    mixed = pairs_figure(aggregate(syn.preset_pair("large", None, None) + syn.preset_pair("small", 700.0, 5000.0)))
    assert mixed is not None
    _, power = mixed.axes
    assert len(power.patches) == 2 and [t.get_text() for t in power.texts] == ["no energy data"]
    import matplotlib.pyplot as plt

    plt.close("all")


def test_absent_figures_say_why() -> None:
    text = page(aggregate(syn.preset_pair("large", None, None)), "x", {})
    assert "Figure 1 absent: no pair has energy readings on both sides." in text
    assert "Figure 4 absent: this run has no task with an expert-parallel degree above 1." in text


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (scripts/test.sh installs it)")
def test_chromium_renders_the_page(tmp_path: Path) -> None:
    path = write_html(aggregate(syn.demo_results()), "demo", {}, tmp_path / "html")
    browser = _chromium()
    assert browser is not None
    dom = subprocess.run([browser, *_chromium_args(tmp_path / "profile-dom"), "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert len(re.findall(r"<img ", dom.stdout)) == 4
    assert len(re.findall(r"<table>", dom.stdout)) >= 6
    shot = tmp_path / "page.png"
    proc = subprocess.run([browser, *_chromium_args(tmp_path / "profile-shot"), "--window-size=1280,2400",
                           f"--screenshot={shot}", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    from PIL import Image

    img = Image.open(shot).convert("L")
    assert img.size == (1280, 2400)
    # the first figure is drawn: its region holds dark lines and text, not a blank page
    figure = img.crop((100, 350, 1180, 1000))
    dark = sum(figure.histogram()[:128])
    assert dark > 2000


def test_every_embedded_figure_is_also_written_beside_the_page(tmp_path: Path) -> None:
    path = write_html(aggregate(syn.demo_results()), "demo", {}, tmp_path / "html")
    pngs = sorted(p.name for p in path.parent.glob("figure-*.png"))
    assert len(pngs) == path.read_text().count("data:image/png;base64,")
    assert pngs and all((path.parent / p).read_bytes().startswith(b"\x89PNG") for p in pngs)
