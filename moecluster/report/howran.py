"""How a task ran, in brief: the form its model took and how clearly that form won its choice, its
drift over the windows, its idle reading, and whether it had its devices to itself.

The node records the form chosen by measurement (`TaskResult.form`: `layout`, `kernel`, `graph`
and the candidates' timings; `TaskResult.choice`: the margin over the runner-up against the noise
measured while choosing, `workloads.race`), how much the figures drifted from the first window to the last
(`TaskResult.drift`, last / first − 1) and how idle power was obtained. The tables show the short
part and hand longer explanations back as footnotes; the exports keep every value.
"""
from __future__ import annotations

from collections.abc import Mapping

from moecluster.spec.records import ChoiceMargin, TaskResult

from moecluster.report import fmt

FORM_KEYS = ("layout", "kernel", "graph")
DRIFT_NAMES = {"inferences_per_s": "inf/s", "inferences_per_j": "inf/J"}


def form_text(form: Mapping[str, str]) -> tuple[str, list[str]]:
    """("sorted · bmm · eager", ["graph eager: data-dependent shapes"]): the chosen layout, kernel and
    graph, each value cut at its first ": ", with the full value as a note where it was cut."""
    parts: list[str] = []
    notes: list[str] = []
    for key in FORM_KEYS:
        value = form.get(key)
        if not value:
            continue
        head, sep, _ = value.partition(": ")
        parts.append(head)
        if sep:
            notes.append(f"{key} {value}")
    return (" · ".join(parts) if parts else "not recorded"), notes


def choice_text(choice: ChoiceMargin | None) -> tuple[str, list[str]]:
    """("4.2 % > 1.1 %", []): the chosen form's lead over the runner-up and the noise it beat; ("within noise",
    [the whole story]) where the tie-break order chose; ("only one", []), ("screened 35.0 %", [...]) where no
    race ran, or n/a in records written before margins were."""
    if choice is None:
        return "n/a", []
    if choice.runner_up is None or choice.margin is None:
        return "only one", []
    if choice.noise is None:
        return f"screened {fmt.pct(choice.margin)}", [choice.describe()]
    if choice.within_noise:
        return "within noise", [choice.describe()]
    return f"{fmt.pct(choice.margin)} > {fmt.pct(choice.noise)}", []


def drift_text(drift: Mapping[str, float], item: str = "inf") -> str:
    """"inf/s −1.2 %, inf/J +0.3 %" (last window over first − 1; "tok/s" where the items are tokens),
    or n/a when not recorded."""
    if not drift:
        return "n/a"
    order = [k for k in DRIFT_NAMES if k in drift] + sorted(k for k in drift if k not in DRIFT_NAMES)
    return ", ".join(f"{DRIFT_NAMES.get(k, k).replace('inf/', f'{item}/')} {fmt.signed_pct(drift[k])}"
                     for k in order)


def idle_text(result: TaskResult) -> str:
    """"40.0 W, settled in 12 s", "40.0 W", or n/a."""
    if result.idle_power_w is None:
        return "n/a"
    settled = f", settled in {fmt.seconds(result.idle_settle_s)}" if result.idle_settle_s is not None else ""
    return f"{result.idle_power_w:.1f} W{settled}"


def device_text(result: TaskResult) -> str:
    """"own", "waited 42 s" (another run had the device), "unlocked" (it may have been shared), or n/a."""
    if result.device_access == "waited":
        return f"waited {fmt.seconds(result.device_wait_s)}"
    return {"exclusive": "own", "unlocked": "unlocked"}.get(result.device_access, "n/a")
