"""How a task ran, in brief: form, drift, idle and device access as the tables show them."""
from __future__ import annotations

from dataclasses import replace

import moecluster_synthetic as syn
from moecluster.report.howran import device_text, drift_text, form_text, idle_text


def test_form_keeps_the_short_part_and_hands_back_the_reason() -> None:
    form = {"layout": "sorted", "kernel": "bmm", "graph": "eager: data-dependent shapes", "candidates": "bmm 1.2 ms"}
    assert form_text(form) == ("sorted · bmm · eager", ["graph eager: data-dependent shapes"])
    assert form_text({"graph": "captured"}) == ("captured", [])
    assert form_text({}) == ("not recorded", [])


def test_drift_is_signed_percent_per_figure() -> None:
    assert drift_text({"inferences_per_j": 0.003, "inferences_per_s": -0.012}) == "inf/s −1.2 %, inf/J +0.3 %"
    assert drift_text({}) == "n/a"


def test_idle_says_how_long_it_took_to_settle() -> None:
    r = syn.task("t", "p", "dense", rate=1000.0, eff=5.0, total=10, active=10, idle_w=41.25)
    assert idle_text(r) == "41.2 W"
    assert idle_text(replace(r, idle_settle_s=12.0)) == "41.2 W, settled in 12 s"
    assert idle_text(replace(r, idle_power_w=None)) == "n/a"


def test_device_says_whether_the_task_had_it_to_itself() -> None:
    r = syn.task("t", "p", "dense", rate=1000.0, eff=5.0, total=10, active=10)
    assert device_text(r) == "n/a"  # recorded before device locks
    assert device_text(replace(r, device_access="exclusive")) == "own"
    assert device_text(replace(r, device_access="waited", device_wait_s=42.0)) == "waited 42 s"
    assert device_text(replace(r, device_access="unlocked")) == "unlocked"


def test_a_form_with_brackets_reaches_the_terminal_as_written() -> None:
    from rich.console import Console

    from moecluster.report.tables import TableData
    from moecluster.report.terminal import FittedTable

    data = TableData(title="forms", columns=["task", "form"], text_columns=(1,))
    data.add_row("xxl dense/total", "addmm [in,out] · captured")
    console = Console(width=120, record=True)
    console.print(FittedTable(data))
    assert "addmm [in,out] · captured" in console.export_text()


def test_the_margin_reads_as_a_lead_over_the_noise_or_says_the_tie_break_chose() -> None:
    from moecluster.spec.records import ChoiceMargin
    from moecluster.report.howran import choice_text

    clear = ChoiceMargin(chosen="a graph", runner_up="b graph", margin=0.042, noise=0.011, measured_noise=0.011,
                         floor=0.01, rounds=20)
    assert choice_text(clear) == ("4.2 % > 1.1 %", [])
    tie = replace(clear, chosen="b graph", runner_up="a graph", margin=-0.006, tied=("b graph", "a graph"))
    assert choice_text(tie) == ("within noise", ["b graph and a graph within noise (0.6 % < 1.1 %): chose b graph"
                                                 " by tie-break order (20 rounds)"])
    screened = ChoiceMargin(chosen="a eager", runner_up="b eager", margin=0.8, floor=0.01)
    assert choice_text(screened) == ("screened 80.0 %", ["a eager ahead of b eager by 80.0 % at screening (one"
                                                         " median each; not raced)"])
    assert choice_text(ChoiceMargin(chosen="naive eager")) == ("only one", [])
    assert choice_text(None) == ("n/a", [])
