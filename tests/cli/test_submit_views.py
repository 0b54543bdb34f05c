"""What `moecluster status` prints: short task labels, node and GPU apart, reasons said once, at 80 columns."""
from __future__ import annotations

from rich.console import Console

import moecluster_synthetic as syn
from moecluster.spec.records import TaskResult
from moecluster.cli.submit_views import status_table


def _render(results: list[TaskResult], attempts: dict[str, int], width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(status_table("demo", [r.spec for r in results], {r.spec.task_id: r for r in results}, attempts))
    return console.export_text().splitlines()


RESULTS = (syn.preset_pair("large", 95.35, 57.37, moe_rate=15_762.55, dense_rate=17_151.69)
           + syn.preset_pair("small", None, None, match="active")
           + [syn.task("xxl-oom", "xxl-oom", "moe", rate=1.0, eff=1.0, total=1, active=1, status="failed")])


def test_labels_stay_whole_and_nothing_passes_80_columns() -> None:
    lines = _render(RESULTS, {}, 80)
    assert max(len(line) for line in lines) <= 80
    labels = [cells[2].strip() for cells in (line.split("│") for line in lines) if len(cells) > 3]
    assert [lab for lab in labels if lab] == ["dense/total", "moe/sorted", "dense/active", "moe/sorted", "moe/sorted"]


def test_node_and_gpu_are_named_apart_and_reasons_said_once() -> None:
    text = "\n".join(_render(RESULTS, {}, 160))
    assert "node-a · GPU 0 (Fake GPU)" in text and "node-a · no GPU (cuda)" in text
    assert text.count("device cpu: no GPU energy counter") == 1
    assert "¹ energy unavailable: device cpu: no GPU energy counter" in text
    assert "² xxl-oom: RuntimeError: CUDA out of memory" in text
    assert "17,152" in text and "15,763" in text  # figures with thousands separators
    assert "tries" not in text


def test_tries_appear_when_a_task_needed_more_than_one() -> None:
    text = "\n".join(_render(RESULTS, {"xxl-oom": 3}, 160))
    assert "tries" in text and "│     3 │" in text.replace("┃", "│")


def test_an_error_with_brackets_is_printed_whole() -> None:
    """A node's hint names the extra in brackets; rich must not read `[llm]` as markup."""
    from dataclasses import replace

    from moecluster.cli.submit_views import result_line

    hint = "workload llm needs transformers (pip install 'moecluster[llm]')"
    failed = replace(syn.task("llm-moe", "llm", "moe", rate=1.0, eff=1.0, total=1, active=1, status="failed"),
                     error=f"ValueError: {hint}")
    assert hint in " ".join(" ".join(_render([failed], {}, 160)).split())  # the caption wraps at the table's width
    console = Console(width=200, record=True, color_system=None)
    console.print(result_line(failed))
    assert hint in console.export_text()
