"""Every repository path the README and the pages under docs/ cite exists and is tracked by git, so a
reader (or a clone) finds it; every relative link between those pages lands on a tracked file.

A citation is a path in inline code, in a fenced code block or in a link target that starts with one of the
repository's own folders (`benchmarks/`, `examples/`, `docs/`, ...). Placeholders (`runs/<run-id>/`, globs)
are not paths and are left out. A link target of a page is resolved from that page's folder (`../benchmarks/`
from docs/results/). A folder counts as tracked when git tracks a file under it.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FOLDERS = ("benchmarks", "deploy", "docs", "examples", "moecluster", "scripts", "tests")
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
_PATH = re.compile(r"(?:\./)?(?:%s)/[\w.\-/]*" % "|".join(FOLDERS))
_PLACEHOLDER = re.compile(r"[<>*{}$]")
_FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
_INLINE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def cited_paths(markdown: str) -> list[str]:
    """The repository paths `markdown` cites, in order of first appearance, without duplicates."""
    spans = [m.group(0) for m in _FENCE.finditer(markdown)]
    prose = _FENCE.sub("", markdown)
    spans += _INLINE.findall(prose) + [target.split("#")[0] for target in _LINK.findall(prose)]
    found: dict[str, None] = {}
    for span in spans:
        for token in span.split():
            if _PLACEHOLDER.search(token):
                continue
            match = _PATH.match(token.strip("'\"(),;:"))
            if match:
                found[match.group(0).removeprefix("./").rstrip(".,;:")] = None
    return list(found)


@cache
def tracked_files() -> frozenset[str]:
    """`git ls-files` of the repository; skips the calling test outside a git checkout."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot tell tracked files")
    done = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"not a git checkout ({done.stderr.strip()}): cannot tell tracked files")
    return frozenset(done.stdout.split("\0")) - {""}


def _relative(page: Path, target: str) -> str | None:
    """A relative link target of `page` as a path from the repository root; None for URLs and anchors."""
    target = target.split("#")[0]
    if not target or ":" in target:
        return None
    return (page.parent / target).resolve().relative_to(ROOT).as_posix()


CITED = list(dict.fromkeys(path for page in PAGES for path in cited_paths(page.read_text(encoding="utf-8"))))
LINKED = sorted({(page.relative_to(ROOT).as_posix(), rel) for page in PAGES
                 for target in _LINK.findall(_FENCE.sub("", page.read_text(encoding="utf-8")))
                 if (rel := _relative(page, target)) is not None})


def test_the_readme_cites_repository_paths() -> None:
    assert README.exists()
    assert CITED, "the README cites no repository path: the citation pattern no longer matches it"


def test_citations_are_found_in_code_spans_blocks_and_links() -> None:
    text = ("Run `bash scripts/test.sh`, see [the plot](benchmarks/results/a.png#top) and `runs/<run-id>/`, "
            "`benchmarks/results/runs/<run>/x`, `examples/*.yaml`.\n"
            "```bash\nmoecluster submit ./examples/quickstart.yaml --set duration_s=5\n```\n")
    assert cited_paths(text) == ["examples/quickstart.yaml", "scripts/test.sh", "benchmarks/results/a.png"]


@pytest.mark.parametrize("path", CITED)
def test_cited_path_exists_and_is_tracked(path: str) -> None:
    assert (ROOT / path).exists(), f"README or docs/ cite {path}, which does not exist"
    tracked = tracked_files()
    folder = path.rstrip("/") + "/"
    assert path in tracked or any(f.startswith(folder) for f in tracked), \
        f"README or docs/ cite {path}, which git does not track (ignored or never added?)"


def test_the_docs_pages_are_linked_from_the_readme() -> None:
    linked = {rel for page, rel in LINKED if page == "README.md"}
    pages = {p.relative_to(ROOT).as_posix() for p in PAGES[1:]}
    assert pages and pages <= linked, f"docs pages the README does not link: {sorted(pages - linked)}"


@pytest.mark.parametrize(("page", "path"), LINKED)
def test_relative_links_land_on_tracked_files(page: str, path: str) -> None:
    tracked = tracked_files()
    assert path in tracked or any(f.startswith(path.rstrip("/") + "/") for f in tracked), \
        f"{page} links {path}, which git does not track"


def setup_torch_command() -> str:
    """The `pip install torch...` step of the README's set-up one-liner."""
    block = _FENCE.search(README.read_text(encoding="utf-8"))
    assert block is not None
    steps = [s.strip() for s in block.group(0).split("&&")]
    return next(s for s in steps if s.startswith("pip install torch"))


@pytest.mark.parametrize("driver", [False, True])
def test_the_setup_one_liner_takes_the_cpu_build_without_a_gpu_driver(driver: bool, tmp_path: Path) -> None:
    """Without `nvidia-smi` the one-liner adds PyTorch's CPU index (whose +cpu build pip prefers);
    with it, PyPI's CUDA build; and it pins the torch that scripts/test.sh pins."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if driver:  # a stand-in for the driver's tool: only its presence is looked at
        (bin_dir / "nvidia-smi").write_text("#!/bin/sh\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    command = setup_torch_command()
    done = subprocess.run([bash, "-c", f"echo {command}"], capture_output=True, text=True, check=True,
                          env={"PATH": str(bin_dir)})  # echo and command are builtins
    args = done.stdout.split()
    assert ("https://download.pytorch.org/whl/cpu" in args) is not driver, args
    assert "--index-url" not in args  # an extra index: PyPI still serves every other package
    pin = re.search(r"torch==[\w.]+", (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8"))
    assert pin is not None and pin.group(0) in args
