"""What `submit`, `runs` and `status` print: the plan table, the live progress, run tables.

Tables go to stdout; the progress bar and one line per stored task go to stderr, so
`moecluster status RUN --json | jq` and logs of a long sweep both stay clean.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task, \
    TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from moecluster.spec.records import TaskResult, TaskSpec
from moecluster.head.items import item_names
from moecluster.head.sweep import PairPlan, Plan
from moecluster.workloads.registry import workload


PIPE_WIDTH = 160  # columns of the tables when the stream is not a terminal and COLUMNS is not set


def console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr): the terminal's width, else $COLUMNS, else `PIPE_WIDTH`."""
    wide = (sys.stderr if stderr else sys.stdout).isatty() or os.environ.get("COLUMNS", "").isdigit()
    return Console(stderr=stderr, width=None if wide else PIPE_WIDTH)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _shape(spec: TaskSpec) -> str:
    return workload(spec.workload).describe(spec)


def gpus_needed(pair: PairPlan, spec: TaskSpec) -> str:
    n = pair.gpus if spec.kind == "moe" else 1
    if spec.device == "cuda":
        return str(n)
    return f"{n} fake" if spec.meter == "fake" else "0 (cpu)"


def plan_table(plan: Plan, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("pair", "kind", "impl", "shape", "params total", "active / token", "GPUs", "est. time"):
        t.add_column(col, justify="right" if col in ("params total", "active / token", "GPUs", "est. time")
                     else "left")
    for pair in plan.pairs:
        for i, spec in enumerate(pair.tasks):
            impl = spec.impl if spec.kind == "moe" else f"match {spec.match}"
            t.add_row(pair.pair_id if i == 0 else "", spec.kind, impl, _shape(spec), f"{pair.params_total[i]:,}",
                      f"{pair.params_active[i]:,}", gpus_needed(pair, spec), duration(pair.estimated_s[i]))
        t.add_section()
    return t


def plan_summary(plan: Plan) -> str:
    slot_s = plan.slot_s
    lines = [f"{len(plan.pairs)} pairs, {len(plan.tasks)} tasks; estimated {duration(slot_s)} on one slot"
             f" (a GPU, or a CPU task), {duration(slot_s / 8)} on eight"]
    lines += [f"skipped {s}" for s in plan.skipped]
    return "\n".join(lines)


def inferences_per_j(result: TaskResult) -> str:
    """`12.34 inferences/J (source)` (tokens/J for an LLM), or why energy is unavailable: never a made-up
    number."""
    v = result.inferences_per_j
    if v is None:
        return f"energy unavailable ({result.energy_unavailable_reason or 'not measured'})"
    return f"{v:,.2f} {item_names([result.spec.workload])[1]}/J ({result.energy_source})"


def result_line(result: TaskResult) -> str:
    if result.status != "ok":
        return f"[red]✗ {result.spec.task_id}[/red] failed: {escape(result.error or 'no error recorded')}"
    where = ", ".join(f"{g.node}/{g.index} {g.name}" for g in result.gpus) or result.node
    rate = result.inferences_per_s
    rate_s = "n/a" if rate is None else f"{rate:,.0f}"
    many = item_names([result.spec.workload])[1]
    return (f"[green]✓[/green] {result.spec.task_id}  {rate_s} {many}/s  {inferences_per_j(result)}"
            f"  on {where}{_device_note(result)}")


def _device_note(result: TaskResult) -> str:
    """How the task held its device, where another run was in the way (device locks)."""
    if result.device_access == "waited":
        return f"  [yellow](waited {duration(result.device_wait_s)} while another run used its device)[/yellow]"
    if result.device_access == "unlocked":
        return "  [yellow](device not locked: another run may have shared it)[/yellow]"
    return ""


class _Eta(ProgressColumn):
    def render(self, task: Task) -> Text:
        eta = task.fields.get("eta_s")
        return Text(f"ETA {duration(eta)}" if eta is not None else "ETA …", style="progress.remaining")


class SweepProgress:
    """The `Events` sink of the scheduler: a rich progress bar and one line per stored task.

    The ETA is the estimated seconds of the pairs not yet finished (less what running pairs
    have done), spread over the cluster's parallel slots, scaled by how the finished pairs'
    real times compared with their estimates.
    """

    def __init__(self, pairs: Sequence[PairPlan], slots: int, name: str) -> None:
        self.pairs = {p.pair_id: p for p in pairs}
        self.total = sum(len(p.tasks) for p in pairs)
        self.slots = max(slots, 1)
        self._left = {p.pair_id: len(p.tasks) for p in pairs}
        self._started: dict[str, float] = {}
        self._est_done = 0.0
        self._real_done = 0.0
        self.console = console(stderr=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("tasks"), TimeElapsedColumn(), _Eta(),
                                 TextColumn("{task.fields[last]}"), console=self.console, transient=False)
        self.task = self.progress.add_task(name, total=self.total, last="", eta_s=self._eta())

    def __enter__(self) -> "SweepProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _eta(self) -> float:
        now = time.time()
        remaining = 0.0
        for pid, left in self._left.items():
            if left:
                est = self.pairs[pid].total_estimated_s * self.pairs[pid].gpus
                remaining += max(est - (now - self._started[pid]) if pid in self._started else est, 0.0)
        scale = min(max(self._real_done / self._est_done, 0.25), 4.0) if self._est_done else 1.0
        return remaining * scale / self.slots

    def pair_started(self, pair: PairPlan, node: str, attempt: int) -> None:
        self._started[pair.pair_id] = time.time()
        if attempt > 1:
            self.progress.console.print(f"[yellow]↻ {pair.pair_id}[/yellow] restarted on {node} (attempt {attempt})",
                                        highlight=False, soft_wrap=True)

    def pair_retried(self, pair: PairPlan, attempt: int, reason: str) -> None:
        self._started.pop(pair.pair_id, None)
        self.progress.console.print(f"[yellow]↻ {pair.pair_id}[/yellow] attempt {attempt} lost ({escape(reason)});"
                                    " first in the queue again", highlight=False, soft_wrap=True)

    def stored(self, result: TaskResult, written: bool) -> None:
        pid = result.spec.pair_id
        if pid in self._left:
            self._left[pid] -= 1
            if self._left[pid] == 0:
                pair = self.pairs[pid]
                self._est_done += pair.total_estimated_s
                self._real_done += time.time() - self._started.get(pid, time.time())
        self.progress.console.print(result_line(result), highlight=False)
        last = f"last: {inferences_per_j(result)}" if result.status == "ok" else "last: failed"
        self.progress.update(self.task, advance=1, last=last, eta_s=self._eta())


class CliRunView:
    """The `RunView` of `head.run.execute` on the terminal: notices and warnings on
    stderr, the sweep as a `SweepProgress`."""

    def __init__(self) -> None:
        self._err = console(stderr=True)

    def notice(self, line: str) -> None:
        self._err.print(line, highlight=False, markup=False)

    def warning(self, line: str) -> None:
        self._err.print(f"moecluster: warning: {line}", highlight=False, markup=False, soft_wrap=True)

    def sweep_progress(self, pairs: Sequence[PairPlan], slots: int, name: str) -> SweepProgress:
        return SweepProgress(pairs, slots, name)


# -- runs and status ---------------------------------------------------------------------
def runs_table(rows: list[dict[str, Any]], root: str) -> Table:
    t = Table(title=f"runs under {root}", title_justify="left")
    for col in ("run", "sweep", "created", "state", "ok", "failed", "missing", "planned"):
        t.add_column(col, justify="right" if col in ("ok", "failed", "missing", "planned") else "left")
    for r in rows:
        t.add_row(r["run"], r["sweep"], r["created"], r["state"], str(r["ok"]), str(r["failed"]),
                  str(r["missing"]), str(r["planned"]))
    return t


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclass
class _Footnotes:
    """Texts said once under a table, marked ¹ ² ... in its cells."""

    texts: list[str] = field(default_factory=list)

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return str(self.texts.index(text) + 1).translate(_SUPERSCRIPT)

    def caption(self) -> str | None:
        # plain text: a hint like "pip install 'moecluster[llm]'" is no rich markup
        return "\n".join(f"{str(i).translate(_SUPERSCRIPT)} {escape(t)}" for i, t in enumerate(self.texts, 1)) or None


def _where(result: TaskResult) -> str:
    """"node-a · GPU 0, 1 (NVIDIA H100 80GB HBM3)", or "node-a · no GPU (cpu)": the node, then its GPUs."""
    if not result.gpus:
        return f"{result.node} · no GPU ({result.spec.device})"
    names = ", ".join(sorted({g.name for g in result.gpus}))
    return f"{result.node} · GPU {', '.join(str(g.index) for g in result.gpus)} ({names})"


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else "no error recorded"


def _row(spec: TaskSpec, pair: str, r: TaskResult | None, notes: _Footnotes) -> list[str]:
    """One task's cells: pair, label, status, where it ran, inferences/s, inferences/J, energy source."""
    if r is None:
        return [pair, spec.label(), "[dim]missing[/dim]", "", "", "", ""]
    if r.status != "ok":
        mark = notes.mark(f"{spec.task_id}: {_first_line(r.error)}")
        return [pair, spec.label(), f"[red]failed[/red]{mark}", _where(r), "", "", ""]
    rate, eff = r.inferences_per_s, r.inferences_per_j
    why = r.energy_unavailable_reason or "no reason recorded"
    energy = r.energy_source or f"n/a{notes.mark(f'energy unavailable: {why}')}"
    return [pair, spec.label(), "[green]ok[/green]", _where(r), "n/a" if rate is None else f"{rate:,.0f}",
            "n/a" if eff is None else f"{eff:,.2f}", energy]


@dataclass(frozen=True)
class FittedTable:
    """A table whose `whole` columns keep their full width while the others share what is left of
    the width it is drawn at, wrapping or folding their cells; nothing is ever cut off."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    whole: frozenset[str]
    right: frozenset[str]
    caption: str | None = None

    def widths(self, width: int) -> list[int] | None:
        """Each column's width (None: every column fits as it is)."""
        natural = [max([len(Text.from_markup(r[i]).plain) for r in self.rows] + [len(c)])
                   for i, c in enumerate(self.columns)]
        room = width - (3 * len(self.columns) + 1)  # borders and padding
        if sum(natural) <= room:
            return None
        fixed = sum(n for c, n in zip(self.columns, natural) if c in self.whole)
        flexible = sum(n for c, n in zip(self.columns, natural) if c not in self.whole)
        share = max(room - fixed, 0) / flexible if flexible else 0.0
        return [n if c in self.whole else max(int(n * share), 4) for c, n in zip(self.columns, natural)]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        widths = self.widths(options.max_width)
        t = Table(title=self.title, title_justify="left", caption=self.caption, caption_justify="left")
        for i, col in enumerate(self.columns):
            t.add_column(col, justify="right" if col in self.right else "left", overflow="fold",
                         width=widths[i] if widths else None)
        for row in self.rows:
            t.add_row(*row)
        yield t


def status_table(run_id: str, planned: list[TaskSpec], results: dict[str, TaskResult],
                 attempts: dict[str, int]) -> FittedTable:
    """Every planned task: its pair, short label (moe/sorted, dense/total), status, node and GPUs,
    inferences/s, inferences/J, energy source, and its tries where any task needed more than one.

    Why energy is missing and why a task failed are said once each, as footnotes. In a narrow
    terminal the pair, node and energy source wrap; labels, states and figures stay whole."""
    notes = _Footnotes()
    u = item_names(spec.workload for spec in planned)[2]
    columns = ("pair", "task", "status", "node · GPU", f"{u}/s", f"{u}/J", "energy")
    retried = any(attempts.get(spec.task_id, 1) > 1 for spec in planned)
    rows: list[tuple[str, ...]] = []
    previous = None
    for spec in planned:
        row = _row(spec, spec.pair_id if spec.pair_id != previous else "", results.get(spec.task_id), notes)
        rows.append((*row, str(attempts.get(spec.task_id, 1))) if retried else tuple(row))
        previous = spec.pair_id
    return FittedTable(f"run {run_id}", (*columns, "tries") if retried else columns, tuple(rows),
                       whole=frozenset({"task", "status", f"{u}/s", f"{u}/J", "tries"}),
                       right=frozenset({f"{u}/s", f"{u}/J", "tries"}), caption=notes.caption())
